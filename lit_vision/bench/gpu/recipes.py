"""`bench gpu`: an architecture built as its recipe in configs/ builds it (batch size and model
arguments), for every section that trains one. ResNet18 starts from random weights: nothing can
be downloaded on a machine without internet access."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import lit_vision
import lit_vision.models
from lit_vision.cli.config_files import CONFIG_SUFFIXES, config_file, read_config
from lit_vision.errors import LitVisionError

CONFIG_DIR = Path(lit_vision.__file__).resolve().parent.parent / "configs"


def recipe(arch: str) -> tuple[int, dict]:
    """(batch size, model init_args) of the recipe in configs/ for `arch`: the file named after
    it if there is one, else the first whose model is `arch`. (256, {}) when none is readable."""
    try:
        candidates = sorted(CONFIG_DIR.glob("*.yaml"), key=lambda p: (p.stem != arch.lower(), p.name))

        def section(config: dict, key: str, recipe_file: Path) -> dict:
            # A recipe names a shared piece by its path (`data: data/miniplaces.yaml`) or inlines it.
            value = config.get(key) or {}
            if isinstance(value, str) and value.endswith(CONFIG_SUFFIXES):
                piece = config_file(value, recipe_file.parent)
                if piece is None:
                    raise LitVisionError(f"{recipe_file} names {key}: {value}, which is not a file beside it or here")
                value = read_config(piece) or {}
            return {"class_path": value} if isinstance(value, str) else value

        for path in candidates:
            config = read_config(path) or {}
            model = section(config, "model", path)
            if str(model.get("class_path", "")).rsplit(".", 1)[-1] == arch:
                batch = int(section(config, "data", path).get("batch_size", 256))
                return batch, dict(model.get("init_args") or {})
    except Exception as error:  # noqa: BLE001 — fall back to defaults, said in the row
        print(f"   could not read a recipe for {arch}: {error}", flush=True)
    return 256, {}


def build_module(arch: str, args: argparse.Namespace, num_classes: int, **options) -> tuple[torch.nn.Module, int]:
    """The architecture's LightningModule as its recipe builds it (on the CPU) and its batch size."""
    batch, init_args = recipe(arch)
    init_args.update(num_classes=num_classes, **options)
    if "weights" in init_args:
        init_args["weights"] = "none"
    if "img_size" in init_args:
        init_args["img_size"] = args.image_size
    init_args.pop("freeze_backbone_epochs", None)
    module = getattr(lit_vision.models, arch)(**init_args)
    return module, args.batch_size or batch


def robust_recipe() -> tuple[dict, dict]:
    """configs/simplenet_robust.yaml's model init_args and AdversarialTraining init_args."""
    config = read_config(CONFIG_DIR / "simplenet_robust.yaml")
    model = dict(config["model"].get("init_args") or {})
    (training,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("AdversarialTraining")]
    return model, dict(training["init_args"])
