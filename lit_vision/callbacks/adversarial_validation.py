"""Robust accuracy on a fixed validation subset each epoch, and a guard against its collapse.

    trainer:
      callbacks:
        - class_path: lit_vision.callbacks.adversarial_validation.AdversarialValidation
          init_args: {epsilon: 0.0314, num_steps: 10, max_batches: 4, on_collapse: restore}
        - class_path: lightning.pytorch.callbacks.ModelCheckpoint
          init_args: {monitor: val/adv_top1, mode: max, filename: "best-adv-{epoch}"}

During `fit`, the first `max_batches` validation batches (the same images every epoch: the
validation loader does not shuffle, and each batch's random start is keyed by its index) are
attacked with a true-label PGD; their accuracy is logged as `val/adv_top1`, which a
ModelCheckpoint can monitor: robust accuracy often peaks early and then falls while clean
accuracy still rises (Rice, Wong & Kolter 2020), so robust runs select their checkpoint by it.

The same number catches the failure of single-step ("fast") adversarial training, catastrophic
over-fitting: robust accuracy collapses to about zero within an epoch while training accuracy
on the single-step images soars (Wong, Rice & Kolter 2020). When `val/adv_top1` falls below
`collapse_ratio` × its best so far (and that best was above `min_best_top1`), the callback logs
`val/adv_collapse` = 1, warns, and — per `on_collapse` — only warns, stops the run, or puts back
the weights of the best robust epoch and stops.
"""

from __future__ import annotations

import copy
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from lit_vision.attacks.pgd import PGDAttack, step_size_for
from lit_vision.errors import LitVisionError
from lit_vision.utils.generators import keyed_generator


class AdversarialValidation(Callback):
    """Log `val/adv_top1` (true-label PGD on the first validation batches) and react to a collapse.

    Args:
        epsilon: L∞ radius, pixel units of [0, 1] (default 8/255).
        num_steps: PGD steps.
        step_scale: step size = step_scale × epsilon / num_steps (2.5: Madry et al.'s).
        max_batches: validation batches attacked each epoch (the first ones: a fixed subset).
        on_collapse: "warn", "stop" (end the fit after this epoch) or "restore" (load the best
            robust epoch's weights, then stop).
        collapse_ratio: a collapse is val/adv_top1 below this share of its best so far.
        min_best_top1: no collapse is called before the best val/adv_top1 exceeds this.
        seed: RNG seed of the random starts.
    """

    def __init__(
        self,
        epsilon: float = 8 / 255,
        num_steps: int = 10,
        step_scale: float = 2.5,
        max_batches: int = 4,
        on_collapse: Literal["warn", "stop", "restore"] = "restore",
        collapse_ratio: float = 0.5,
        min_best_top1: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(max_batches, bool) or int(max_batches) != max_batches or max_batches < 1:
            raise LitVisionError(f"AdversarialValidation max_batches must be an integer >= 1, got {max_batches}.")
        if on_collapse not in ("warn", "stop", "restore"):
            raise LitVisionError(f"AdversarialValidation on_collapse must be warn, stop or restore; got {on_collapse!r}.")
        if not 0 < collapse_ratio < 1:
            raise LitVisionError(f"AdversarialValidation collapse_ratio must be in (0, 1), got {collapse_ratio}.")
        if not 1 <= num_steps == int(num_steps):
            raise LitVisionError(f"AdversarialValidation num_steps must be an integer >= 1, got {num_steps}.")
        self.attack = PGDAttack(
            epsilon, step_size_for(epsilon, int(num_steps), step_scale), int(num_steps), "true_label", random_start=True
        )
        self.max_batches = int(max_batches)
        self.on_collapse = on_collapse
        self.collapse_ratio = float(collapse_ratio)
        self.min_best_top1 = float(min_best_top1)
        self.seed = int(seed)
        self.best_top1 = -1.0
        self.best_epoch: int | None = None
        self.collapsed_at: int | None = None  # the epoch of the first collapse, if any
        self.history: list[float] = []
        self._best_state: dict[str, torch.Tensor] | None = None
        self._correct = self._seen = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.best_top1, self.best_epoch, self.collapsed_at, self.history = -1.0, None, None, []
        self._best_state = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._correct = torch.zeros((), device=pl_module.device)
        self._seen = torch.zeros((), device=pl_module.device)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking or dataloader_idx != 0 or batch_idx >= self.max_batches:
            return
        images, labels = batch[0], batch[1]
        generator = keyed_generator(images.device, self.seed, batch_idx, trainer.global_rank)
        with trainer.precision_plugin.forward_context():
            result = self.attack.attack(pl_module, images, labels, generator=generator)
        self._correct += (result.logits.argmax(dim=1) == labels).sum()
        self._seen += labels.shape[0]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._seen is None:
            return
        correct = trainer.strategy.reduce(self._correct, reduce_op="sum")
        seen = trainer.strategy.reduce(self._seen, reduce_op="sum")
        if seen.item() == 0:
            return
        top1 = (correct / seen).item()
        self.history.append(top1)
        pl_module.log("val/adv_top1", top1, on_epoch=True, prog_bar=True, sync_dist=False)
        collapsed = self.best_top1 > self.min_best_top1 and top1 < self.collapse_ratio * self.best_top1
        pl_module.log("val/adv_collapse", float(collapsed), on_epoch=True, sync_dist=False)
        if top1 > self.best_top1:
            self.best_top1, self.best_epoch = top1, trainer.current_epoch
            if self.on_collapse == "restore":
                self._best_state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})
        if not collapsed:
            return
        if self.collapsed_at is None:
            self.collapsed_at = trainer.current_epoch
        action = {"warn": "training goes on", "stop": "stopping", "restore": f"restoring epoch {self.best_epoch}'s weights and stopping"}
        rank_zero_warn(
            f"Robust accuracy collapsed: val/adv_top1 {top1:.3f} at epoch {trainer.current_epoch}, below "
            f"{self.collapse_ratio} × its best {self.best_top1:.3f} (epoch {self.best_epoch}) — catastrophic "
            f"over-fitting of the adversarial training; {action[self.on_collapse]}."
        )
        if self.on_collapse == "restore" and self._best_state is not None:
            pl_module.load_state_dict(self._best_state)
        if self.on_collapse in ("stop", "restore"):
            trainer.should_stop = True
