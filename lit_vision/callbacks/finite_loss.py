"""Stops training at the first non-finite loss, and never writes a checkpoint after it.

Every step's loss is checked on the device (`on_before_backward`): the first non-finite one is
remembered there without reading anything back. How often that record is read on the host is
`every_n_steps`:

- 1 (the default on a CPU run, where a read costs nothing): the run stops before the bad step
  backpropagates or steps the optimiser, so the weights and `last.ckpt` keep the last good state;
- N > 1 (the default on an accelerator: `trainer.log_every_n_steps`, when Lightning's logging
  reads the device anyway): a read every N steps, at each epoch's end and before any checkpoint
  is written, so a GPU never waits on the host inside an epoch. The run stops within N steps
  of the bad one; the in-memory weights have taken those steps, but no checkpoint holds them:
  `last.ckpt` keeps the last good state either way.

Under DDP the ranks agree at each read (one tiny all-reduce), so every rank stops together
instead of the others waiting forever in the gradient all-reduce.
"""

from __future__ import annotations

import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback

from lit_vision.errors import LitVisionError


class FiniteLossCheck(Callback):
    def __init__(self, every_n_steps: int | None = None) -> None:
        """
        Args:
            every_n_steps: read the device's record every this many steps (and at epoch ends
                and checkpoints); None: 1 on a CPU run, `trainer.log_every_n_steps` otherwise.
        """
        if every_n_steps is not None and every_n_steps < 1:
            raise LitVisionError(f"FiniteLossCheck every_n_steps must be >= 1 (or None), got {every_n_steps}.")
        self.every_n_steps = every_n_steps
        # On the training device: whether a non-finite loss was seen, the first one, its global step.
        self._found: torch.Tensor | None = None
        self._bad: torch.Tensor | None = None
        self._first_step: torch.Tensor | None = None
        self._where: dict[int, tuple[int, int]] = {}  # global step -> (epoch, batch), since the last read

    def interval(self, trainer) -> int:
        if self.every_n_steps is not None:
            return self.every_n_steps
        return 1 if isinstance(trainer.accelerator, CPUAccelerator) else max(1, trainer.log_every_n_steps)

    def on_train_start(self, trainer, pl_module) -> None:
        self._found = self._bad = self._first_step = None
        self._where = {}

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        loss = loss.detach().float().flatten()[0]
        step = trainer.global_step
        if self._found is None:
            self._found = torch.zeros((), dtype=torch.bool, device=loss.device)
            self._bad = loss.new_zeros(())
            self._first_step = torch.full((), -1, dtype=torch.int64, device=loss.device)
        new = ~torch.isfinite(loss) & ~self._found
        # On the device: remember the first bad loss and its step; no value leaves it.
        self._bad = torch.where(new, loss, self._bad)
        self._first_step = torch.where(new, step, self._first_step)
        self._found = self._found | new
        self._where[step] = (trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx)
        if self.interval(trainer) == 1:
            self._read(trainer, before_step=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        interval = self.interval(trainer)
        if interval > 1 and trainer.global_step % interval == 0:  # (1: read before the backward already)
            self._read(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._read(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Raising here keeps the file from being written: no checkpoint after a bad step.
        self._read(trainer)

    def _read(self, trainer, before_step: bool = False) -> None:
        if self._found is None:
            return
        found_here = bool(self._found)
        found = found_here
        if trainer.world_size > 1:
            found = not trainer.strategy.reduce_boolean_decision(not found_here, all=True)
        if not found:
            self._where = {}
            return
        if found_here:
            step = int(self._first_step)
            epoch, batch = self._where.get(step, (trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx))
            value = f"{self._bad.item()}"
            place = f"at global step {step}, epoch {epoch}, batch {batch}"
        else:
            value, place = "non-finite on another rank", f"by global step {trainer.global_step}"
        if before_step:
            consequence = "training stopped before this step changed the weights, and no checkpoint was written after it."
        else:
            consequence = (
                f"found at global step {trainer.global_step} (the loss is read back every {self.interval(trainer)} steps, "
                "at epoch ends and before each checkpoint, so a GPU never waits inside an epoch): no checkpoint was "
                "written after the bad step."
            )
        raise LitVisionError(
            f"The training loss is not finite ({value}) {place}: {consequence} Usual causes: a learning rate "
            "too high for the model (model.init_args.lr), too short a warm-up, or corrupt input. Once fixed, resume "
            "from the last good state with --ckpt_path last."
        )
