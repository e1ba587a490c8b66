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


PLACES365_CATEGORIES = ["/a/airfield", "/a/apartment_building/outdoor", "/b/bamboo_forest", "/c/campsite"]


def write_places365(standin: Path, root: Path) -> Path:
    """The stand-in's images in Places365-Standard's layout (categories_places365.txt, a
    leading-slash train list over data_256/<category>/, a flat val list over val_256/,
    test_256/), one two-level category name among them."""
    import shutil

    root.mkdir(parents=True)
    (root / "categories_places365.txt").write_text(
        "".join(f"{name} {i}\n" for i, name in enumerate(PLACES365_CATEGORIES))
    )
    train_lines, val_lines = [], []
    for line in (standin / "train.txt").read_text().splitlines():
        relative, label = line.split()
        name = f"{PLACES365_CATEGORIES[int(label)]}/{len(train_lines) + 1:08d}.jpg"
        (root / "data_256" / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(standin / "images" / relative, root / "data_256" / name.lstrip("/"))
        train_lines.append(f"{name} {label}\n")
    (root / "val_256").mkdir()
    for line in (standin / "val.txt").read_text().splitlines():
        relative, label = line.split()
        name = f"Places365_val_{len(val_lines) + 1:08d}.jpg"
        shutil.copy(standin / "images" / relative, root / "val_256" / name)
        val_lines.append(f"{name} {label}\n")
    (root / "test_256").mkdir()
    for i, image in enumerate(sorted((standin / "images" / "test").iterdir()), start=1):
        shutil.copy(image, root / "test_256" / f"Places365_test_{i:08d}.jpg")
    (root / "places365_train_standard.txt").write_text("".join(train_lines))
    (root / "places365_val.txt").write_text("".join(val_lines))
    return root


@pytest.fixture(scope="session")
def places365_dir(standin_dir, tmp_path_factory) -> Path:
    """The tiny stand-in (4 classes, 64 train, 16 val, 6 test) in Places365-Standard's layout."""
    return write_places365(standin_dir, tmp_path_factory.mktemp("data") / "places365")
