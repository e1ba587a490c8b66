"""Shared fixtures: a tiny generated MiniPlaces stand-in, a tiny run config, and a CLI runner.

Tests run the CLI in-process (`lit_vision.cli.main`) from a temporary working directory, so
logs/ and checkpoints/ land in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lit_vision.cli import main
from lit_vision.data.standin import generate_standin

TINY_CLASSES = 4


@pytest.fixture(scope="session")
def standin_dir(tmp_path_factory) -> Path:
    """4 classes × 16 train, 4 × 4 val, 6 test images of 128×128 (generated once per session)."""
    root = tmp_path_factory.mktemp("data") / "standin"
    return generate_standin(root, num_classes=TINY_CLASSES, train_per_class=16, val_per_class=4, test_images=6)


@pytest.fixture(scope="session")
def tiny_config(standin_dir, tmp_path_factory) -> Path:
    """A complete run config: SimpleNet, 32-px crops, 1 epoch, CPU, no workers."""
    config = {
        "experiment": "tiny",
        "seed_everything": 0,
        "model": {
            "class_path": "lit_vision.models.SimpleNet",
            "init_args": {"optimizer": "adamw", "lr": 2e-3, "warmup_epochs": 0},  # num_classes: the data's
        },
        "data": {
            "data_dir": str(standin_dir),
            "num_classes": TINY_CLASSES,
            "batch_size": 16,
            "num_workers": 0,
            "resize_size": 36,
            "crop_size": 32,
            "pin_memory": False,
        },
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
    }
    path = tmp_path_factory.mktemp("configs") / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def run_cli(tmp_path, monkeypatch):
    """`run_cli("fit", "--config", ...)` runs lit-vision in-process inside tmp_path and
    returns the LightningCLI exit code (0, or the SystemExit code)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> int:
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            return int(exit_.code or 0)
        return 0

    return run


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors run faster on one thread (two threads on 2 busy cores stall on each
    other), and results do not depend on the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
