"""Stops training at the first non-finite loss, before it reaches the weights or a checkpoint.

The check runs in `on_before_backward`, so the bad step never backpropagates, never steps the
optimiser, and no checkpoint is written after it: `last.ckpt` keeps the last good state. Under
DDP the ranks agree first (one tiny all-reduce per step), so every rank stops together
instead of the others waiting forever in the gradient all-reduce.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from lit_vision.errors import LitVisionError


class FiniteLossCheck(Callback):
    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        finite_here = bool(torch.isfinite(loss.detach()).all())
        finite = finite_here
        if trainer.world_size > 1:
            finite = trainer.strategy.reduce_boolean_decision(finite_here, all=True)
        if finite:
            return
        value = f"{loss.detach().float().flatten()[0].item()}" if not finite_here else "non-finite on another rank"
        raise LitVisionError(
            f"The training loss is not finite ({value}) at global step {trainer.global_step}, "
            f"epoch {trainer.current_epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx}: training stopped before "
            "this step changed the weights, and no checkpoint was written after it. Usual causes: a learning rate "
            "too high for the model (model.init_args.lr), too short a warm-up, or corrupt input. Once fixed, resume "
            "from the last good state with --ckpt_path last."
        )
