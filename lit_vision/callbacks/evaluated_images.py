"""`EvaluatedImages`: how many images the last validation and test saw, summed over ranks.

An accuracy is a proportion of images, so its 95% interval needs the count: the console's closing
lines of `validate` and `test` (and the seed summaries of `lit_vision.studies`) read it here. The
count is of the labels the evaluation really saw (after `limit_*_batches`, a resume or a subset),
not the size of the split.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback


class EvaluatedImages(Callback):
    """`images[stage]`: images of the last finished `val` / `test` pass (the sanity check excluded)."""

    def __init__(self) -> None:
        self.images: dict[str, int] = {"val": 0, "test": 0}
        self._counting: dict[str, int] = {}

    def _start(self, stage: str) -> None:
        self._counting[stage] = 0

    def _count(self, stage: str, batch) -> None:
        labels = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
        if isinstance(labels, torch.Tensor):
            self._counting[stage] = self._counting.get(stage, 0) + int(labels.shape[0])

    def _finish(self, trainer, stage: str) -> None:
        if trainer.sanity_checking:
            return
        count = torch.tensor(self._counting.get(stage, 0), dtype=torch.long)
        # Each rank sees its share of the images; the metrics are synced over all of them.
        self.images[stage] = int(trainer.strategy.reduce(count, reduce_op="sum"))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start("val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._count("val", batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, "val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start("test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._count("test", batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, "test")
