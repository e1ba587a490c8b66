"""What the command line tells a user who has not found the right words yet: leading options
(`--config FILE`) without a subcommand list every subcommand of the table, not only
Lightning's four; fit / validate / test's help mentions `--seeds`, which is read before
LightningCLI parses and so has no entry among Lightning's own options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lit_vision.cli import main, subcommands


@pytest.fixture(autouse=True)
def command_line(tmp_path, monkeypatch):
    """Run inside tmp_path with a bare sys.argv (as `lit-vision` itself would: LightningCLI
    warns when pytest's own arguments sit beside the ones given to `main`)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lit-vision"])


@pytest.mark.parametrize("leading", [["--config", "{config}"], ["--print_config"]])
def test_options_without_a_subcommand_list_every_subcommand(leading, tmp_path, capsys):
    config = tmp_path / "x.yaml"
    config.write_text("trainer:\n  max_epochs: 1\n")
    with pytest.raises(SystemExit) as stop:
        main([arg.format(config=config) for arg in leading])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "a subcommand is expected" in err
    every = [*subcommands.LIGHTNING_SUBCOMMANDS, *subcommands.COMMANDS]
    assert {"export", "plot", "optimize", "tune"} <= set(every)
    assert f"one of {', '.join(every)} " in err


def test_options_without_a_subcommand_are_answered_before_lightning_loads(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text("trainer:\n  max_epochs: 1\n")
    probe = (
        "import sys\nfrom lit_vision.cli import main\n"
        f"try:\n    main(['--config', {str(config)!r}])\nexcept SystemExit as stop:\n    code = stop.code\n"
        "print(code, 'lightning' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "a subcommand is expected" in done.stderr


@pytest.mark.parametrize("name", ["fit", "validate", "test"])
def test_help_of_a_repeatable_subcommand_mentions_seeds(name, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--seeds 0,1,2: run this command once per seed" in out


def test_predict_help_does_not_offer_seeds(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["predict", "--help"])
    assert stop.value.code == 0
    assert "--seeds" not in capsys.readouterr().out
