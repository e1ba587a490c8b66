"""SIGTERM/SIGINT during `fit`: finish the step, save a resumable last.ckpt, exit 143 / 130.

The signal only records a request (`lit_vision.signals.StopRequests`); the stop happens at
the next training-step boundary, the same points at which `LastCheckpoint` saves, so the
saved state resumes at exactly the step it holds. An epoch's last batch defers to the
epoch's end (after its validation), as `LastCheckpoint` does. Under DDP the ranks agree
at each step boundary (one tiny all-reduce), so all of them stop at the same step: rank 0
writes the file, every rank exits non-zero.

The handlers replace Lightning's own SIGTERM handling for the duration of training:
Lightning ends a SIGTERM'd run with a SystemExit without a code (exit status 0) and saves
nothing.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from lit_vision.callbacks.checkpointing import LastCheckpoint
from lit_vision.signals import Stopped, StopRequests


class StopOnSignal(Callback):
    def __init__(self) -> None:
        self.requests = StopRequests()

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registers its signal handlers before this hook; ours replace them here.
        self.requests.requested = None
        self.requests.install()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop_if_requested(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.requests.restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.requests.restore()

    def _stop_if_requested(self, trainer) -> None:
        signum = self.requests.requested or 0
        if trainer.world_size > 1:
            # Any rank's request stops every rank; SIGTERM (15) outranks SIGINT (2).
            signum = int(trainer.strategy.reduce(torch.tensor(float(signum)), reduce_op="max").item())
        if not signum:
            return
        saved = None
        last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
        if last is not None:
            saved = str(last.save_now(trainer))
        raise Stopped(signum, trainer.global_step, saved)
