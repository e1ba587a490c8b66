"""Writes `lit-vision predict` output in the MiniPlaces challenge format:
one line per test image, `test/00000001.jpg c1 c2 c3 c4 c5`, most likely class first.
When `ImagePredictions` predicts a folder of the user's images instead, it writes nothing."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from lit_vision.utils.files import atomic_write_text


def gather_predictions(trainer, pl_module, predictions: list[dict], keys: list[str]) -> dict[int, list]:
    """{item index: [value of each key, as lists]} over every rank's `predict_step` outputs
    (call it on every rank; only rank 0's result is complete)."""
    indices = torch.cat([p["index"] for p in predictions])
    values = [torch.cat([p[key] for p in predictions]) for key in keys]
    if trainer.world_size > 1:
        # Each rank predicted a shard; the distributed sampler may have padded with
        # repeats, which the de-duplication by index below removes.
        indices = pl_module.all_gather(indices).flatten(0, 1)
        values = [pl_module.all_gather(v).flatten(0, 1) for v in values]
    by_index = {}
    for i, index in enumerate(indices.tolist()):
        by_index[index] = [v[i].tolist() for v in values]
    return by_index


class SubmissionWriter(BasePredictionWriter):
    def __init__(self, output_path: str | None = None) -> None:
        """
        Args:
            output_path: where to write the file; default `<run log dir>/submission.txt`.
        """
        super().__init__(write_interval="epoch")
        self.output_path = output_path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        from lit_vision.callbacks.image_predictions import (
            ImagePredictions,  # it imports this module
        )

        if not predictions or any(isinstance(c, ImagePredictions) for c in trainer.callbacks):
            return
        order = gather_predictions(trainer, pl_module, predictions, ["top5"])
        if not trainer.is_global_zero:
            return
        paths = trainer.datamodule.test_paths
        path = Path(self.output_path or Path(trainer.log_dir or ".") / "submission.txt")
        lines = [f"{paths[i]} {' '.join(map(str, order[i][0]))}" for i in sorted(order)]
        atomic_write_text(path, "\n".join(lines) + "\n")
        rank_zero_info(f"Wrote predictions for {len(lines)} images to {path}")
