"""The command line end to end: fit writes logs and checkpoints, validate reproduces the
logged metric from the checkpoint, predict writes a submission, and bad setups fail clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lit_vision.cli import build_cli

pytestmark = pytest.mark.slow


def test_help_and_print_config_work(tiny_config):
    for args in (["--help"], ["fit", "--help"]):
        result = subprocess.run([sys.executable, "-m", "lit_vision", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "lit_vision", "fit", "--config", str(tiny_config), "--print_config"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "class_path: lit_vision.models.SimpleNet" in result.stdout and "num_classes: 4" in result.stdout


def test_fit_then_validate_reproduces_val_top1_then_predict(tiny_config, run_cli, tmp_path):
    fit = build_cli(["fit", "--config", str(tiny_config), "--trainer.max_epochs", "2"])
    logged = fit.trainer.callback_metrics["val/top1"].item()
    for name in ("val/top1", "val/top5", "val/loss", "train/loss", "train/top1", "train/top5"):
        assert name in fit.trainer.callback_metrics, name
    last = tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt"
    assert last.is_file()
    assert list((tmp_path / "checkpoints" / "tiny" / "version_0").glob("best-*.ckpt"))
    assert list((tmp_path / "logs" / "tiny" / "version_0").glob("events.out.tfevents.*"))
    # A checkpoint alone rebuilds the model, with plain-typed hyperparameters.
    checkpoint = torch.load(last, weights_only=True, map_location="cpu")
    assert checkpoint["hyper_parameters"]["num_classes"] == 4

    validate = build_cli(["validate", "--config", str(tiny_config), "--ckpt_path", str(last)])
    assert validate.trainer.callback_metrics["val/top1"].item() == pytest.approx(logged, abs=1e-6)

    assert run_cli("predict", "--config", tiny_config, "--ckpt_path", last) == 0
    submission = next((tmp_path / "logs" / "tiny" / "eval").glob("version_*/submission.txt"))
    lines = submission.read_text().splitlines()
    assert len(lines) == 6
    path, *classes = lines[0].split()
    assert path == "test/00000001.jpg" and len(classes) == 4  # top-5 capped at 4 classes
    assert all(0 <= int(c) < 4 for c in classes) and len(set(classes)) == 4


def test_seed_everything_gives_identical_first_losses(tiny_config, run_cli):
    losses = []
    for seed in ("7", "7", "8"):
        cli = build_cli(["fit", "--config", str(tiny_config), "--seed_everything", seed,
                         "--trainer.max_steps", "3", "--trainer.logger", "false",
                         "--trainer.enable_checkpointing", "false"])  # fmt: skip
        losses.append(cli.trainer.callback_metrics["train/loss"].item())
    assert losses[0] == losses[1]
    assert losses[2] != losses[0]  # the seed matters: the equality above is not vacuous


def test_bad_model_argument_is_a_clear_error(tiny_config, capsys, run_cli):
    code = run_cli("fit", "--config", tiny_config, "--model.init_args.lr", "-1")
    assert code == 2
    error = capsys.readouterr().err
    assert "model.lr must be positive, got -1.0" in error and "Traceback" not in error


def test_class_count_mismatch_is_a_clear_error(tiny_config, capsys, run_cli):
    code = run_cli("fit", "--config", tiny_config, "--model.init_args.num_classes", "7")
    assert code == 2
    error = capsys.readouterr().err
    assert "7 output classes but the data has 4" in error and "Traceback" not in error


def test_missing_data_dir_is_a_clear_error(tiny_config, capsys, run_cli, tmp_path):
    code = run_cli("fit", "--config", tiny_config, "--data.data_dir", tmp_path / "absent")
    assert code == 2
    error = capsys.readouterr().err
    assert "absent is missing. Looked for: class per folder" in error and "Traceback" not in error


STANDIN_FLAGS = (
    "--data.standin", "true", "--data.standin_train_per_class", "4", "--data.standin_val_per_class", "2",
    "--data.standin_test_images", "2", "--trainer.fast_dev_run", "true",
)  # fmt: skip


def test_standin_is_generated_into_its_own_folder_and_announced(tiny_config, run_cli, tmp_path, capsys):
    code = run_cli("fit", "--config", tiny_config, "--data.data_dir", "data/standin", *STANDIN_FLAGS)
    assert code == 0
    assert len((tmp_path / "data" / "standin" / "train.txt").read_text().splitlines()) == 16
    err = capsys.readouterr().err
    # One line: what, where, how many.
    assert "lit-vision: generating a stand-in dataset into data/standin: 26 128-px JPEGs" in err
    assert run_cli("fit", "--config", tiny_config, "--data.data_dir", "data/standin", *STANDIN_FLAGS) == 0
    assert "generating" not in capsys.readouterr().err  # reused, silently


def test_standin_into_a_mistyped_folder_is_refused(tiny_config, run_cli, tmp_path, capsys):
    code = run_cli("fit", "--config", tiny_config, "--data.data_dir", tmp_path / "typo", *STANDIN_FLAGS)
    assert code == 2
    err = capsys.readouterr().err
    assert f"data.data_dir {tmp_path / 'typo'} does not exist" in err and "data.standin: false" in err
    assert "generating" not in err and not (tmp_path / "typo").exists()
    assert not list(tmp_path.glob(".typo*"))  # no staging left either
    # A folder the user created for it is theirs to fill.
    (tmp_path / "made").mkdir()
    assert run_cli("fit", "--config", tiny_config, "--data.data_dir", tmp_path / "made", *STANDIN_FLAGS) == 0
    assert len((tmp_path / "made" / "train.txt").read_text().splitlines()) == 16


def test_a_seeded_fit_gives_the_same_metrics_whether_or_not_it_checked_its_data(
    tiny_config, standin_dir, run_cli, tmp_path
):
    """The first fit over a fresh copy runs the pre-flight image check (no stamp yet), the
    second skips it; with workers, whose base seed comes from torch's global generator. Both
    must log the very same numbers."""
    import shutil

    from lit_vision.cli.plot import load_scalars

    copy = tmp_path / "fresh_copy"
    shutil.copytree(standin_dir, copy, ignore=shutil.ignore_patterns("cache"))
    flags = ("--data.data_dir", copy, "--data.num_workers", "1", "--trainer.max_epochs", "2")
    assert run_cli("fit", "--config", tiny_config, *flags) == 0
    assert list((copy / "cache").glob("verified-train-*"))  # the check ran and left its stamp
    assert run_cli("fit", "--config", tiny_config, *flags) == 0
    first, second = (load_scalars(tmp_path / "logs" / "tiny" / f"version_{n}") for n in (0, 1))
    assert {"train/loss", "val/top1"} <= set(first)
    assert first == second


NOISE = (
    "_pytree",  # Lightning 2.6 on torch 2.14: a deprecation that is not the user's
    "Be aware that when using `ckpt_path`",  # evaluation has no checkpoint callbacks, by design
    "The dirpath has changed",  # a resumed fit writes into a new version folder, by design
    "Total Flops",  # counted only with an example_input_array: always 0 here
    "Tip:",  # litlogger / litmodels advertising
    "LightningCLI's args parameter",  # export builds the CLI from Python on purpose
    "Skipping setting a default `ModelSummary`",
)


def test_commands_print_no_known_noise_and_say_where_their_logs_went(
    tiny_config, run_cli, tmp_path, capsys, caplog, monkeypatch
):
    """fit, a resumed fit, validate and export, with every warning shown (not pytest's filters)
    and every log record kept: none of the messages that are not about the user's run; the
    model summary is still there, without a FLOPs column of zeros."""
    import logging
    import warnings

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(sys, "argv", ["lit-vision"])  # as from a shell: main() reads its arguments itself
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli("fit", "--config", tiny_config, "--trainer.enable_model_summary", "true") == 0
        assert run_cli("fit", "--config", tiny_config, "--trainer.max_epochs", "2", "--ckpt_path", "last") == 0
        assert run_cli("validate", "--config", tiny_config, "--ckpt_path", "last") == 0
        assert "validate done: logs in logs/tiny/eval/version_0." in capsys.readouterr().err
        export = ["export", "--config", str(tiny_config), "--ckpt_path", "checkpoints/tiny/version_1/last.ckpt",
                  "--format", "torchscript"]  # fmt: skip
        monkeypatch.setattr(sys, "argv", ["lit-vision", *export])
        assert run_cli(*export) == 0
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Trainable params" in logged and "FLOPs" not in logged
    shown = [str(w.message) for w in caught] + [logged, capsys.readouterr().err]
    for noise in NOISE:
        assert not [text for text in shown if noise in text], noise
