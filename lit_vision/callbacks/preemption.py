"""SIGTERM/SIGINT during `fit`: finish the step, save a resumable last.ckpt, exit 143 / 130.

The signal only records a request (`lit_vision.signals.StopRequests`); the stop happens at
a training-step boundary, the same points at which `LastCheckpoint` saves, so the saved state
resumes at exactly the step it holds. An epoch's last batch defers to the epoch's end (after
its validation), as `LastCheckpoint` does.

Under DDP every rank must stop at the same step (rank 0 writes the file, every rank exits
non-zero), so the ranks agree on it — without stalling the accelerator. At each step boundary
each rank starts an asynchronous all-reduce (max) of its request on the device and copies the
result to pinned host memory behind it; the result launched `AGREEMENT_LAG` steps earlier is
read then, long finished, so reading it never waits for the device. All ranks read the same
step's result at the same step, so they stop together, `AGREEMENT_LAG` steps after the signal
arrived. A blocking agreement (which would make the host wait for the device on every step)
is made only at an epoch's end. The tensors live on the strategy's device: NCCL reduces CUDA
tensors only. Lightning's own per-batch SIGTERM broadcast (blocking, and redundant once these
handlers replace Lightning's) is skipped for the duration of training.

The handlers replace Lightning's own SIGTERM handling for the duration of training:
Lightning ends a SIGTERM'd run with a SystemExit without a code (exit status 0) and saves
nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from lit_vision.callbacks.checkpointing import LastCheckpoint
from lit_vision.signals import Stopped, StopRequests

# Steps between launching an agreement and reading it: on a GPU the host runs at most a step or
# two ahead of the device, so the result is ready by then; a signal costs this many more steps.
AGREEMENT_LAG = 2


@dataclass
class _Agreement:
    """One rank's request, being reduced over the ranks; `host` receives the result."""

    work: dist.Work
    host: torch.Tensor
    done: torch.cuda.Event | None

    def result(self) -> int:
        self.work.wait()
        if self.done is not None:
            self.done.synchronize()  # recorded AGREEMENT_LAG steps ago: already passed
        return int(self.host.item())


def _nothing() -> None:
    pass


class StopOnSignal(Callback):
    def __init__(self) -> None:
        self.requests = StopRequests()
        self._pending: deque[_Agreement] = deque()

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registers its signal handlers before this hook; ours replace them here.
        self.requests.requested = None
        self._pending.clear()
        self.requests.install()
        loop = trainer.fit_loop.epoch_loop
        if trainer.world_size > 1 and hasattr(loop, "_broadcast_sigterm_tensor"):
            # Lightning (2.6) broadcasts its own SIGTERM flag from rank 0 before every training
            # batch under DDP — a blocking collective and an .item(): a host sync per step. The
            # flag is set only by Lightning's SIGTERM handler, which ours replace until training
            # ends, so that broadcast would always carry 0: skipped while ours are installed.
            loop._broadcast_sigterm_tensor = _nothing

    def _give_back_to_lightning(self, trainer) -> None:
        self.requests.restore()
        trainer.fit_loop.epoch_loop.__dict__.pop("_broadcast_sigterm_tensor", None)  # the class's method again

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        if trainer.world_size == 1:
            self._stop_for(trainer, self.requests.requested or 0)
            return
        if not dist.is_initialized():  # a strategy not built on torch.distributed: its own blocking reduce
            self._stop_for(trainer, self._blocking_agreement(trainer))
            return
        self._pending.append(self._launch(trainer))
        if len(self._pending) > AGREEMENT_LAG:
            self._stop_for(trainer, self._pending.popleft().result())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        signum = self.requests.requested or 0
        if trainer.world_size > 1:
            for agreement in self._pending:  # superseded by the blocking agreement below (requests persist)
                agreement.result()
            self._pending.clear()
            signum = self._launch(trainer).result() if dist.is_initialized() else self._blocking_agreement(trainer)
        self._stop_for(trainer, signum)

    def _blocking_agreement(self, trainer) -> int:
        request = torch.tensor(float(self.requests.requested or 0), device=trainer.strategy.root_device)
        return int(trainer.strategy.reduce(request, reduce_op="max").item())

    def on_train_end(self, trainer, pl_module) -> None:
        self._give_back_to_lightning(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._give_back_to_lightning(trainer)

    def _launch(self, trainer) -> _Agreement:
        # Any rank's request stops every rank; SIGTERM (15) outranks SIGINT (2).
        device = trainer.strategy.root_device
        # fill_ passes the number as a kernel argument: torch.tensor([n], device=...) would copy
        # from pageable host memory, which waits for the device's queue.
        request = torch.empty(1, dtype=torch.int32, device=device).fill_(self.requests.requested or 0)
        work = dist.all_reduce(request, op=dist.ReduceOp.MAX, async_op=True)
        if device.type != "cuda":
            return _Agreement(work, request, None)
        work.wait()  # orders the current stream after the collective; the host does not wait
        host = torch.empty(1, dtype=torch.int32, pin_memory=True)
        host.copy_(request, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return _Agreement(work, host, done)

    def _stop_for(self, trainer, signum: int) -> None:
        if not signum:
            return
        self._pending.clear()
        saved = None
        last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
        if last is not None:
            saved = str(last.save_now(trainer))
        raise Stopped(signum, trainer.global_step, saved)
