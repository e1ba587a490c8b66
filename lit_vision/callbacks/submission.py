"""Writes `lit-vision predict` output in the MiniPlaces challenge format:
one line per test image, `test/00000001.jpg c1 c2 c3 c4 c5`, most likely class first."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from lit_vision.utils.files import atomic_write_text


class SubmissionWriter(BasePredictionWriter):
    def __init__(self, output_path: str | None = None) -> None:
        """
        Args:
            output_path: where to write the file; default `<run log dir>/submission.txt`.
        """
        super().__init__(write_interval="epoch")
        self.output_path = output_path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if not predictions:
            return
        indices = torch.cat([p["index"] for p in predictions])
        top5 = torch.cat([p["top5"] for p in predictions])
        if trainer.world_size > 1:
            # Each rank predicted a shard; the distributed sampler may have padded with
            # repeats, which the de-duplication by index below removes.
            indices = pl_module.all_gather(indices).flatten(0, 1)
            top5 = pl_module.all_gather(top5).flatten(0, 1)
        if not trainer.is_global_zero:
            return
        paths = trainer.datamodule.test_paths
        order = {}
        for index, classes in zip(indices.tolist(), top5.tolist()):
            order[index] = classes
        path = Path(self.output_path or Path(trainer.log_dir or ".") / "submission.txt")
        lines = [f"{paths[i]} {' '.join(map(str, order[i]))}" for i in sorted(order)]
        atomic_write_text(path, "\n".join(lines) + "\n")
        rank_zero_info(f"Wrote predictions for {len(lines)} images to {path}")
