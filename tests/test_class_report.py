"""The per-class report (`ClassReport`): its numbers add up to the module's logged top-1, its
pictures are real and reach TensorBoard, it stays out of `fit`, it works through the CLI with the
stand-in's category names, and 2-process DDP gives the single-process numbers."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from lit_vision.callbacks.class_report import (
    ClassReport,
    classes_of_pairs,
    most_confused_pairs,
)
from lit_vision.errors import LitVisionError
from lit_vision.models import SimpleNet

# The report is checked on real validate/test runs of a fitted model.
pytestmark = pytest.mark.slow

PICTURES = ("confusion_matrix", "confused_pairs", "hardest_images")
NAMES = ["abbey", "beach", "canyon", "desert"]


def tiny_data(n: int = 24) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % 4
    return DataLoader(TensorDataset(images, labels), batch_size=8)


def tiny_model() -> SimpleNet:
    torch.manual_seed(0)
    return SimpleNet(num_classes=4)


def evaluate(tmp_path: Path, stage: str = "validate", **report_args) -> tuple[L.Trainer, ClassReport]:
    report = ClassReport(class_names=NAMES, **report_args)
    trainer = L.Trainer(
        accelerator="cpu", logger=TensorBoardLogger(tmp_path, name="run"), callbacks=[report],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    getattr(trainer, stage)(tiny_model(), tiny_data(), verbose=False)
    return trainer, report


def assert_real_picture(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5_000, path
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert min(pixels.shape[:2]) > 100 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, path


@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> tuple[L.Trainer, ClassReport]:
    """One validate run with the report (drawing is the slow part, so tests share it)."""
    return evaluate(tmp_path_factory.mktemp("report"), "validate", num_hardest=5, examples_per_pair=2)


def read_rows(log_dir: Path) -> list[dict]:
    with open(log_dir / "class_report.csv") as handle:
        return list(csv.DictReader(handle))


def test_per_class_numbers_add_up_to_the_logged_top1(validated):
    trainer, _ = validated
    logged = trainer.callback_metrics["val/top1"].item()
    log_dir = Path(trainer.log_dir)
    rows = read_rows(log_dir)
    assert [row["name"] for row in rows] == NAMES
    assert sum(int(row["images"]) for row in rows) == 24
    weighted = sum(int(row["images"]) * float(row["top1"]) for row in rows) / 24
    assert weighted == pytest.approx(logged, abs=1e-6)
    saved = json.loads((log_dir / "class_report.json").read_text())
    assert saved["top1"] == pytest.approx(logged, abs=1e-6) and saved["stage"] == "val"
    errors = sum(int(row["images"]) - int(row["correct"]) for row in rows)
    pairs = saved["most_confused_pairs"]
    assert pairs and all(p["true"] != p["predicted"] for p in pairs) and sum(p["images"] for p in pairs) <= errors


def test_pictures_are_written_and_go_to_tensorboard(validated):
    trainer, _ = validated
    for name in PICTURES:
        assert_real_picture(Path(trainer.log_dir) / f"{name}.png")
    events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert {f"val/{name}" for name in PICTURES} <= set(events.Tags()["images"])


def test_hardest_images_are_the_surest_mistakes(validated):
    _, report = validated
    confidence = report.hardest["confidence"]
    assert confidence.shape[0] == 5 and torch.all(confidence[:-1] >= confidence[1:])
    assert all(len(examples) <= 2 for examples in report.pair_examples.values())


def test_test_stage_reports_too(tmp_path):
    trainer, _ = evaluate(tmp_path, "test", num_pairs=0, num_hardest=0)
    rows = read_rows(Path(trainer.log_dir))
    weighted = sum(int(row["images"]) * float(row["top1"]) for row in rows) / 24
    assert weighted == pytest.approx(trainer.callback_metrics["test/top1"].item(), abs=1e-6)
    assert_real_picture(Path(trainer.log_dir) / "confusion_matrix.png")


def test_no_report_inside_fit(tmp_path):
    report = ClassReport()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=TensorBoardLogger(tmp_path, name="run"), callbacks=[report],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(tiny_model(), tiny_data(), tiny_data())
    assert report.report is None and not list(Path(trainer.log_dir).glob("class_report.*"))


def test_most_confused_pairs_and_their_classes():
    counts = torch.tensor([[5, 3, 0, 1], [0, 6, 0, 0], [0, 2, 4, 2], [4, 0, 0, 2]])
    assert most_confused_pairs(counts, 3) == [(3, 0), (0, 1), (2, 1)]  # 4 images, then 3; 2/8 beats 2/8 by index
    assert classes_of_pairs(most_confused_pairs(counts, 10), 3) == [0, 1, 3]


def test_bad_argument_names_itself():
    with pytest.raises(LitVisionError, match="ClassReport matrix_classes must be >= 2, got 1"):
        ClassReport(matrix_classes=1)


@pytest.mark.slow
def test_validate_through_the_cli_with_category_names(tiny_config, run_cli, tmp_path, standin_dir):
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_epochs", "1") == 0
    last = next((tmp_path / "checkpoints").rglob("last.ckpt"))
    config = Path(__file__).parents[1] / "configs" / "class_report.yaml"
    assert run_cli("validate", "--config", tiny_config, "--config", config, "--ckpt_path", last) == 0
    report = next((tmp_path / "logs").rglob("class_report.json"))
    saved = json.loads(report.read_text())
    categories = [
        line.split()[0].strip("/").split("/", 1)[-1]
        for line in (standin_dir / "categories.txt").read_text().splitlines()
    ]
    assert [row["name"] for row in saved["classes"]] == categories
    assert saved["images"] == 16
    for name in ("confusion_matrix", "hardest_images"):
        assert_real_picture(report.parent / f"{name}.png")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_two_process_ddp_gives_the_single_process_numbers(tiny_config, run_cli, tmp_path):
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_epochs", "1") == 0
    last = next((tmp_path / "checkpoints").rglob("last.ckpt"))
    reports = {}
    for devices, strategy in ((1, "auto"), (2, "ddp_spawn")):
        experiment = f"report{devices}"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "MASTER_PORT": str(port), "MASTER_ADDR": "127.0.0.1"}
        command = [sys.executable, "-m", "lit_vision", "validate", "--config", str(tiny_config),
                   "--experiment", experiment, "--ckpt_path", str(last), "--trainer.devices", str(devices),
                   "--trainer.strategy", strategy, "--trainer.callbacks+=ClassReport",
                   "--data.batch_size", "4"]  # fmt: skip
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        written = list((tmp_path / "logs" / experiment).rglob("class_report.json"))
        assert len(written) == 1  # rank 0 alone writes
        reports[devices] = json.loads(written[0].read_text())
    assert reports[2]["images"] == reports[1]["images"] == 16
    assert reports[2]["classes"] == reports[1]["classes"]
    assert reports[2]["most_confused_pairs"] == reports[1]["most_confused_pairs"]
