"""`RunRecord`: the callback through which a child run tells the process that started it where
it wrote (its log and checkpoint folders) and what it measured (its final metrics and the number
of images each evaluation saw), as one JSON file written when the run ends.

The metrics are `trainer.callback_metrics` at the end of the run: the last value logged for each
name, the same number TensorBoard holds for the run's last epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lit_vision.callbacks.evaluated_images import EvaluatedImages
from lit_vision.utils.files import atomic_write_text


def _as_number(value) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, (int, float)):
        return float(value)
    return None


class RunRecord(EvaluatedImages):
    """Writes `path` (JSON) when fit / validate / test ends: stage, log_dir, checkpoint_dir,
    epoch, global_step, metrics and images (per evaluation stage, summed over ranks)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    # --------------------------------------------------------------- the record
    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, "fit")

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "validate":
            self._write(trainer, "validate")

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer, "test")

    def _write(self, trainer, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        folders = [cb.dirpath for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
        metrics = {name: _as_number(value) for name, value in trainer.callback_metrics.items()}
        record = {
            "stage": stage,
            "log_dir": os.path.abspath(trainer.log_dir) if trainer.logger is not None and trainer.log_dir else None,
            "checkpoint_dir": os.path.abspath(folders[0]) if folders else None,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "metrics": {name: value for name, value in sorted(metrics.items()) if value is not None},
            "images": {name: n for name, n in self.images.items() if n},
        }
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(record, indent=2) + "\n")
