"""The subcommand table: `lit-vision --help` and the unknown-subcommand error name every
subcommand, a new entry is all it takes to add one, a missing optional dependency says which
extra installs it, and the help and errors answer without importing Lightning."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lit_vision.cli import main, subcommands
from lit_vision.cli.subcommands import Command


def every_name() -> list[str]:
    return [*subcommands.LIGHTNING_SUBCOMMANDS, *subcommands.COMMANDS]


def test_help_lists_every_subcommand(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for name in every_name():
        assert f"\n  {name} " in out, name
    assert {"fit", "validate", "test", "predict", "export", "plot", "optimize"} <= set(every_name())


def test_an_unknown_subcommand_lists_every_one_and_the_closest(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["exprt", "--format", "onnx"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unknown subcommand 'exprt' (did you mean export?)" in err
    assert all(name in err for name in every_name())


@pytest.mark.parametrize(
    "argv, wrong",
    [
        (["--config", "x.yaml", "fitt"], "fitt"),
        (["-c", "x.yaml", "--print_config", "exprt"], "exprt"),
        (["--config=x.yaml", "vaildate", "--trainer.max_epochs", "1"], "vaildate"),
    ],
)
def test_a_wrong_subcommand_after_leading_options_lists_every_one(argv, wrong, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"unknown subcommand {wrong!r}" in err
    assert all(name in err for name in every_name())


def test_options_before_a_package_subcommand_say_where_they_go(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--config", "x.yaml", "export", "--format", "onnx"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "'export' takes its options after its name: lit-vision export [options]" in err


def test_the_word_after_leading_options_is_the_subcommand():
    after = subcommands.subcommand_after_options
    assert after(["--config", "fit.yaml", "fit", "--trainer.max_epochs", "1"]) == "fit"
    assert after(["-c", "a.yaml", "--config=b.yaml", "--print_config", "test"]) == "test"
    assert after(["--config", "a.yaml"]) is None


def test_one_table_entry_adds_a_subcommand(tmp_path, monkeypatch, capsys):
    (tmp_path / "greet_command.py").write_text("def main(argv):\n    print('hello', *argv)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(subcommands.COMMANDS, "greet", Command("greet_command", "say hello"))
    main(["--help"])
    assert "  greet " in capsys.readouterr().out
    main(["greet", "a", "b"])
    assert capsys.readouterr().out == "hello a b\n"


def test_a_missing_optional_package_names_its_extra(tmp_path, monkeypatch, capsys):
    (tmp_path / "needs_absent.py").write_text("import absent_package_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        subcommands.COMMANDS, "study", Command("needs_absent", "run a study", needs="absent_package_xyz", extra="tune")
    )
    with pytest.raises(SystemExit) as stop:
        main(["study"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "lit-vision study needs absent_package_xyz" in err and "pip install 'lit-vision[tune]'" in err


def test_help_and_errors_load_no_lightning():
    # Lightning takes seconds to import: the help and a mistyped subcommand must not wait for it.
    code = (
        "import sys\nfrom lit_vision.cli import main\n"
        "for argv in (['--help'], ['fitt'], ['--config', 'x.yaml', 'fitt']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torch')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
