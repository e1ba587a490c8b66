"""The CLI's default checkpoints: the best by val/top1, and `last.ckpt` for resuming.

`last.ckpt` is written every `every_n_train_steps` optimiser steps and at the end of every
epoch (after that epoch's validation, so it also carries the best-checkpoint bookkeeping).
A killed run resumes with `--ckpt_path last` and loses at most the steps since that save.

Why a second ModelCheckpoint: Lightning 2.6's ModelCheckpoint with a `monitor` refreshes
`last.ckpt` at epoch end only when a top-k save happened at the same step, and defers step
saves until the monitored metric exists. This one has no monitor and no top-k; it only ever
writes `last.ckpt`. Atomicity comes from the CheckpointIO (`lit_vision.checkpoints`).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint

from lit_vision.errors import LitVisionError


def best_checkpoint(dirpath: str, monitor: str = "val/top1") -> ModelCheckpoint:
    """The best checkpoint by `monitor`, higher is better (one file, replaced when it improves):
    val/top1 for clean training, val/adv_top1 or val/robust_top1 for robust training."""
    short = monitor.rsplit("/", 1)[-1]
    return ModelCheckpoint(
        dirpath=dirpath,
        filename=f"best-epoch{{epoch:03d}}-{short}{{{monitor}:.4f}}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode="max",
        save_last=False,
    )


class LastCheckpoint(ModelCheckpoint):
    """Writes `<dirpath>/last.ckpt` every `every_n_train_steps` steps and at every epoch end."""

    def __init__(self, dirpath: str, every_n_train_steps: int = 500) -> None:
        if isinstance(every_n_train_steps, bool) or every_n_train_steps < 0:
            raise LitVisionError(
                f"checkpoint_every_n_steps must be an integer >= 0 (0: only at epoch end), got {every_n_train_steps}."
            )
        super().__init__(
            dirpath=dirpath,
            monitor=None,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            # Resuming must overwrite last.ckpt, not start last-v1.ckpt beside it.
            enable_version_counter=False,
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # The epoch-end save (after validation) covers an epoch's last batch.
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        """Deliberately no save here: the epoch's save happens at train epoch end, which
        Lightning runs after the epoch's validation."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save_last_unless_done(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save_last_unless_done(trainer)

    def save_now(self, trainer) -> str:
        """Write last.ckpt now (a step boundary; every rank calls it, rank 0 writes); return its path."""
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        return self.last_model_path

    def _save_last_unless_done(self, trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
