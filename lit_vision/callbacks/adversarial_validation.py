"""Robust accuracy on a fixed validation subset each epoch, and a guard against catastrophic over-fitting.

    trainer:
      callbacks:
        - class_path: lit_vision.callbacks.adversarial_validation.AdversarialValidation
          init_args: {epsilon: 0.0314, num_steps: 10, max_batches: 4, on_collapse: restore}
        - class_path: lightning.pytorch.callbacks.ModelCheckpoint
          init_args: {monitor: val/adv_top1, mode: max, filename: "best-adv-{epoch}"}

During `fit`, the first `max_batches` validation batches (the same images every epoch: the
validation loader does not shuffle, and each batch's random start is keyed by its index) are
classified clean, attacked with a true-label multi-step PGD and with one FGSM step (ε, from the
image itself). Logged: `val/adv_top1` (PGD), `val/adv_fgsm_top1`, `val/adv_clean_top1` (the
same images unattacked), `val/robust_top1` (per image: correct clean and under both attacks —
the validation counterpart of `AdversarialEvaluation`'s `test/robust_top1`, which no single
attack can flatter) and `val/adv_collapse` (0/1). A ModelCheckpoint (or `--checkpoint_monitor`)
can monitor `val/adv_top1` or `val/robust_top1`: robust accuracy often peaks and then falls
while clean accuracy still rises (Rice, Wong & Kolter 2020), so robust runs select their
checkpoint by it.

The guard reads the signature of catastrophic over-fitting of single-step ("fast") adversarial
training (Wong, Rice & Kolter 2020), not a dip: the model learns to defeat its own single-step
attack while a multi-step attack breaks it. An epoch is a collapse when, on the same images,

1. the multi-step PGD accuracy is at or below `robust_below` × chance (chance = 1/num_classes:
   the attack does no better than guessing), and
2. the single-step attack misses at least `min_gap` of what PGD finds: FGSM accuracy − PGD
   accuracy ≥ `min_gap` × (clean accuracy − PGD accuracy). A model that is merely not robust
   yet (early training, too large an ε for the data) falls to both attacks alike; a collapsed
   one stays correct under FGSM, often near its clean accuracy.

No verdict is given while an `AdversarialTraining` callback of the same trainer is still
ramping ε up (epochs before `epsilon_ramp_epochs`), nor while clean accuracy on the subset is
below chance + `min_clean` × (1 − chance): near chance, robust accuracy measures an untrained
model's guesses, and its dips are learning, not collapse. Every threshold is relative to chance,
so the rule reads the same on 10 and on 100 classes.

On a collapse the callback logs `val/adv_collapse` = 1, warns and, per `on_collapse`, only
warns, stops the run, or puts back the weights of the most robust earlier epoch whose clean
accuracy was clearly above chance (none: the current weights stay) and stops. `outcome()` is the
closing line the CLI prints (`stopped early: collapse at epoch N, weights of epoch M restored`);
a stopped run exits non-zero there.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from lit_vision.attacks.pgd import PGDAttack, step_size_for
from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.errors import LitVisionError
from lit_vision.utils.choices import check_choice
from lit_vision.utils.generators import keyed_generator

# What the guard does on a collapse (see the class docstring).
OnCollapse = Literal["warn", "stop", "restore"]


@dataclass(frozen=True)
class Reading:
    """One epoch's accuracies on the guard's validation subset."""

    epoch: int
    clean: float
    robust: float  # multi-step true-label PGD
    single_step: float  # one FGSM step of ε from the image
    num_classes: int
    ramping: bool  # an AdversarialTraining ε ramp had not reached full ε for the whole epoch


@dataclass(frozen=True)
class CollapseRule:
    """The thresholds of the verdict, all relative to chance (see the module docstring)."""

    min_clean: float = 0.2
    robust_below: float = 1.0
    min_gap: float = 0.5

    def clean_enough(self, reading: Reading) -> bool:
        chance = 1 / reading.num_classes
        return reading.clean >= chance + self.min_clean * (1 - chance)

    def verdict(self, reading: Reading) -> str | None:
        """Why this epoch is a collapse, or None if it is not (or no verdict can be given)."""
        if reading.ramping or not self.clean_enough(reading):
            return None
        chance = 1 / reading.num_classes
        gap = reading.single_step - reading.robust
        if reading.robust > self.robust_below * chance or gap < self.min_gap * (reading.clean - reading.robust):
            return None
        return (
            f"PGD accuracy {reading.robust:.3f} is at or below {self.robust_below:g} × chance ({chance:.3f}) while "
            f"single-step FGSM leaves {reading.single_step:.3f} correct (clean {reading.clean:.3f}): the model defeats "
            "its single-step attack, not the multi-step one"
        )


class AdversarialValidation(Callback):
    """Log `val/adv_top1` (true-label PGD on the first validation batches) and react to catastrophic over-fitting.

    Args:
        epsilon: L∞ radius, pixel units of [0, 1] (default 8/255), of both attacks.
        num_steps: PGD steps.
        step_scale: step size = step_scale × epsilon / num_steps (2.5: Madry et al.'s).
        max_batches: validation batches attacked each epoch (the first ones: a fixed subset).
        on_collapse: "warn", "stop" (end the fit after this epoch) or "restore" (load the most
            robust earlier epoch's weights, then stop).
        min_clean: no verdict before clean accuracy on the subset reaches
            chance + min_clean × (1 − chance), in [0, 1).
        robust_below: a collapse needs PGD accuracy ≤ robust_below × chance (1/num_classes), > 0.
        min_gap: a collapse needs FGSM − PGD accuracy ≥ min_gap × (clean − PGD accuracy), in (0, 1].
        seed: RNG seed of the PGD random starts.
    """

    def __init__(
        self,
        epsilon: float = 8 / 255,
        num_steps: int = 10,
        step_scale: float = 2.5,
        max_batches: int = 4,
        on_collapse: OnCollapse = "restore",
        min_clean: float = 0.2,
        robust_below: float = 1.0,
        min_gap: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(max_batches, bool) or int(max_batches) != max_batches or max_batches < 1:
            raise LitVisionError(f"AdversarialValidation max_batches must be an integer >= 1, got {max_batches}.")
        check_choice(on_collapse, OnCollapse, "AdversarialValidation on_collapse")
        if not 0 <= min_clean < 1:
            raise LitVisionError(
                f"AdversarialValidation min_clean must be in [0, 1) (a share of the way from chance to 1), got {min_clean}."
            )
        if not robust_below > 0:
            raise LitVisionError(f"AdversarialValidation robust_below must be > 0 (a multiple of chance), got {robust_below}.")
        if not 0 < min_gap <= 1:
            raise LitVisionError(f"AdversarialValidation min_gap must be in (0, 1], got {min_gap}.")
        if not 1 <= num_steps == int(num_steps):
            raise LitVisionError(f"AdversarialValidation num_steps must be an integer >= 1, got {num_steps}.")
        self.attack = PGDAttack(
            epsilon, step_size_for(epsilon, int(num_steps), step_scale), int(num_steps), "true_label", random_start=True
        )
        # The classic FGSM: one signed step of ε from the image itself — what a catastrophically
        # over-fitted model has learnt to withstand.
        self.single_step = PGDAttack(epsilon, epsilon, 1, "true_label", random_start=False)
        self.max_batches = int(max_batches)
        self.on_collapse = on_collapse
        self.rule = CollapseRule(float(min_clean), float(robust_below), float(min_gap))
        self.seed = int(seed)
        self._reset()

    def _reset(self) -> None:
        self.best_top1 = -1.0
        self.best_epoch: int | None = None  # the most robust epoch clearly above chance on clean images
        self.collapsed_at: int | None = None  # the epoch of the first collapse, if any
        self.restored_epoch: int | None = None
        self.history: list[float] = []  # val/adv_top1 per epoch
        self.readings: list[Reading] = []
        self._best_state: dict[str, torch.Tensor] | None = None
        self._counts: torch.Tensor | None = None
        self._num_classes = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Correct clean, under PGD, under FGSM, under all three (per image); images seen.
        self._counts = torch.zeros(5, device=pl_module.device)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking or dataloader_idx != 0 or batch_idx >= self.max_batches:
            return
        images, labels = batch[0], batch[1]
        generator = keyed_generator(images.device, self.seed, batch_idx, trainer.global_rank)
        with trainer.precision_plugin.forward_context():
            with torch.no_grad():
                clean = pl_module(images)
            robust = self.attack.attack(pl_module, images, labels, generator=generator)
            single = self.single_step.attack(pl_module, images, labels)
        correct = torch.stack([logits.argmax(dim=1) == labels for logits in (clean, robust.logits, single.logits)])
        # Summed on the device: no host sync per batch; the one .item() is at the epoch's end.
        self._counts[:3] += correct.sum(dim=1)
        self._counts[3] += correct.all(dim=0).sum()
        self._counts[4] += labels.shape[0]
        self._num_classes = clean.shape[1]  # chance is 1 / this

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._counts is None:
            return
        counts = trainer.strategy.reduce(self._counts, reduce_op="sum")
        if counts[4].item() == 0:
            return
        clean, robust, single, worst_case = (counts[:4] / counts[4]).tolist()
        epoch = trainer.current_epoch
        ramp = max((cb.epsilon_ramp_epochs for cb in trainer.callbacks if isinstance(cb, AdversarialTraining)), default=0.0)
        reading = Reading(epoch, clean, robust, single, self._num_classes, ramping=epoch < ramp)
        self.readings.append(reading)
        self.history.append(robust)
        reason = self.rule.verdict(reading)
        logged = (("adv_top1", robust), ("adv_fgsm_top1", single), ("adv_clean_top1", clean), ("robust_top1", worst_case))
        for name, value in logged:
            pl_module.log(f"val/{name}", value, on_epoch=True, prog_bar=name == "adv_top1", sync_dist=False)
        pl_module.log("val/adv_collapse", float(reason is not None), on_epoch=True, sync_dist=False)
        if reason is None:
            if self.rule.clean_enough(reading) and robust > self.best_top1:
                self.best_top1, self.best_epoch = robust, epoch
                if self.on_collapse == "restore":
                    self._best_state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})
            return
        if self.collapsed_at is None:
            self.collapsed_at = epoch
        if self.on_collapse == "restore" and self._best_state is not None:
            pl_module.load_state_dict(self._best_state)
            self.restored_epoch = self.best_epoch
        action = {
            "warn": "training goes on",
            "stop": "stopping with this epoch's weights",
            "restore": f"restoring epoch {self.restored_epoch}'s weights and stopping"
            if self.restored_epoch is not None
            else "no earlier epoch was clearly above chance to restore: stopping with this epoch's weights",
        }[self.on_collapse]
        rank_zero_warn(f"Catastrophic over-fitting at epoch {epoch}: {reason}; {action}.")
        if self.on_collapse in ("stop", "restore"):
            trainer.should_stop = True

    @property
    def stopped(self) -> bool:
        """Whether the guard ended the fit."""
        return self.collapsed_at is not None and self.on_collapse != "warn"

    def outcome(self) -> str | None:
        """The closing line for the console after a fit with a collapse, else None."""
        if self.collapsed_at is None:
            return None
        if not self.stopped:
            return f"collapse (catastrophic over-fitting) at epoch {self.collapsed_at}: warned, training went on."
        kept = (
            f"weights of epoch {self.restored_epoch} restored (val/adv_top1 {self.best_top1:.3f})"
            if self.restored_epoch is not None
            else f"weights of epoch {self.collapsed_at} kept"
        )
        return f"stopped early: collapse (catastrophic over-fitting) at epoch {self.collapsed_at}, {kept}."

