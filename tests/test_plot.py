"""`lit-vision plot`: curves of a real tiny run, drawn from its TensorBoard event files."""

from __future__ import annotations

import pytest
from PIL import Image

# Every plot test draws a run that a CLI fit has just written.
pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_run(run_cli, tiny_config, tmp_path):
    """Two epochs of the tiny config; returns the run's log folder."""
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_epochs", "2") == 0
    (run,) = sorted((tmp_path / "logs" / "tiny").glob("version_*"))
    return run


def assert_png(path) -> None:
    assert path.is_file()
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 300


def test_plot_one_run_and_overlay(tiny_run, run_cli, tmp_path, capsys):
    assert run_cli("plot", tiny_run) == 0
    assert_png(tiny_run / "curves.png")
    assert run_cli("plot", tiny_run, tiny_run, "--overlay", "--out", tmp_path / "figs" / "both.png") == 0
    assert_png(tmp_path / "figs" / "both.png")
    # A parent folder: every run below it, one PNG each, into --out as a folder.
    assert run_cli("plot", tmp_path / "logs", "--out", tmp_path / "each") == 0
    assert_png(tmp_path / "each" / "tiny-version_0.png")


def test_evaluation_runs_stay_out_of_the_training_plots(tiny_run, tiny_config, run_cli, tmp_path, capsys):
    """validate/predict log under logs/<experiment>/eval/: plotting the experiment draws its
    training runs only; plotting eval/ draws the validate run and skips the predict run, which
    logs no scalars."""
    checkpoint = tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt"
    assert run_cli("predict", "--config", tiny_config, "--ckpt_path", checkpoint) == 0
    assert run_cli("validate", "--config", tiny_config, "--ckpt_path", checkpoint) == 0
    capsys.readouterr()
    assert run_cli("plot", tmp_path / "logs" / "tiny", "--out", tmp_path / "training") == 0
    assert "skipping" not in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "training").iterdir()) == ["tiny-version_0.png"]
    assert run_cli("plot", tmp_path / "logs" / "tiny" / "eval", "--out", tmp_path / "eval") == 0
    assert "skipping" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["eval-version_1.png"]


def test_scalars_the_figure_needs_are_logged(tiny_run):
    from lit_vision.cli.plot import by_epoch, load_scalars

    scalars = load_scalars(tiny_run)
    for tag in ("train/loss", "train/loss_epoch", "val/loss", "train/top1", "val/top1", "train/top5", "val/top5"):
        assert tag in scalars, tag
    assert any(tag.startswith("lr-") for tag in scalars)
    epochs, _ = by_epoch(scalars["val/top1"], scalars)
    assert epochs == [1, 2]


def test_folder_without_event_files_is_a_clear_error(run_cli, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_cli("plot", tmp_path / "empty") == 2
    assert "holds no TensorBoard event files" in capsys.readouterr().err
    assert run_cli("plot", tmp_path / "missing") == 2
    assert "is not a folder" in capsys.readouterr().err
