"""Adversarial training: on a random share of training batches, add PGD-perturbed copies.

    trainer:
      callbacks:
        - class_path: lit_vision.callbacks.AdversarialTraining
          init_args: {fraction: 0.2, epsilon: [0.0113, 0.0226], steps: [5, 10]}

Logged: `train/adv_batches` (perturbed batches per epoch, the same on every rank) and
`train/adv_top1` (accuracy on the adversarial half, from the attack's final eval-mode pass).

For each selected batch the callback attacks the model being trained (in eval mode, without
touching its parameters' gradients), then replaces the batch in place with
`[clean ‖ adversarial]` images and `[labels ‖ labels]`: the training step sees twice the
batch. Epsilon and the step count are drawn per batch from the given ranges (the seed varied
both for robustness).

Which batches are perturbed, and with which epsilon and steps, is a function of
(seed, epoch, batch index) only: reproducible, and identical on every DDP rank without any
communication (each rank attacks its own shard with the same settings).
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from lit_vision.attacks.pgd import SEED_EPSILON, SEED_NUM_STEPS, PGDAttack
from lit_vision.errors import LitVisionError
from lit_vision.utils.generators import keyed_generator
from lit_vision.utils.images import to_unit_float


class AdversarialTraining(Callback):
    """Train on clean + PGD-perturbed images for a random `fraction` of batches.

    Args:
        fraction: share of training batches that get an adversarial half, in [0, 1].
        epsilon: [low, high] range of the L∞ radius, pixel units of [0, 1], drawn uniformly
            per batch. Default [0.5, 1] × the seed's strength ≈ [2.9/255, 5.8/255].
        steps: [low, high] inclusive range of PGD steps, drawn uniformly per batch.
        step_scale: step size = step_scale × epsilon / steps. 1.0 is the seed's rule
            (0.01 × 10 steps = 0.1); 2.5 is Madry et al.'s.
        target: "least_likely" (the seed's) or "true_label" (Madry / torchattacks).
        random_start: start each attack from a random point of the ε-ball.
        seed: seeds the choice of batches and the per-batch draws.
    """

    def __init__(
        self,
        fraction: float = 0.2,
        epsilon: tuple[float, float] = (SEED_EPSILON / 2, SEED_EPSILON),
        steps: tuple[int, int] = (SEED_NUM_STEPS // 2, SEED_NUM_STEPS),
        step_scale: float = 1.0,
        target: Literal["least_likely", "true_label"] = "least_likely",
        random_start: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= fraction <= 1:
            raise LitVisionError(f"AdversarialTraining fraction must be in [0, 1], got {fraction}.")
        epsilon, steps = tuple(epsilon), tuple(steps)
        if len(epsilon) != 2 or not 0 <= epsilon[0] <= epsilon[1] <= 1:
            raise LitVisionError(
                f"AdversarialTraining epsilon must be a range [low, high] with 0 <= low <= high <= 1 "
                f"(pixel units of [0, 1]), got {list(epsilon)}."
            )
        if len(steps) != 2 or not 1 <= steps[0] <= steps[1] or any(int(s) != s for s in steps):
            raise LitVisionError(
                f"AdversarialTraining steps must be an integer range [low, high] with 1 <= low <= high, got {list(steps)}."
            )
        if not step_scale > 0:
            raise LitVisionError(f"AdversarialTraining step_scale must be > 0, got {step_scale}.")
        PGDAttack(target=target)  # validates the target name
        self.fraction = float(fraction)
        self.epsilon = (float(epsilon[0]), float(epsilon[1]))
        self.steps = (int(steps[0]), int(steps[1]))
        self.step_scale = float(step_scale)
        self.target = target
        self.random_start = bool(random_start)
        self.seed = int(seed)
        # Counters of the current fit (not checkpointed: they are for logs and tests).
        self.batches_seen = 0
        self.batches_perturbed = 0

    # ------------------------------------------------------------------ plan
    def plan(self, epoch: int, batch_idx: int) -> PGDAttack | None:
        """The attack for this batch, or None if it stays clean. A pure function of
        (seed, epoch, batch_idx): the same on every rank and in every rerun."""
        rng = np.random.default_rng([self.seed, epoch, batch_idx])
        if rng.random() >= self.fraction:
            return None
        epsilon = float(rng.uniform(*self.epsilon))
        num_steps = int(rng.integers(self.steps[0], self.steps[1], endpoint=True))
        return PGDAttack(
            epsilon=epsilon,
            step_size=self.step_scale * epsilon / num_steps,
            num_steps=num_steps,
            target=self.target,
            random_start=self.random_start,
        )

    # ----------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches_seen = 0
        self.batches_perturbed = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.batches_seen += 1
        attack = self.plan(trainer.current_epoch, batch_idx)
        # Logged on every batch (0 or 1) so that the epoch's sum is the count, even when 0.
        pl_module.log(
            "train/adv_batches", float(attack is not None), on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1
        )
        if attack is None:
            return
        if not isinstance(batch, list) or len(batch) < 2:
            raise LitVisionError(
                "AdversarialTraining needs training batches as a list [images, labels] so that it can "
                f"replace them in place; got {type(batch).__name__}. Return lists from the collate function."
            )
        images, labels = batch[0], batch[1]
        generator = None
        if attack.random_start:
            # Per-rank noise (each rank holds other images), reproducible from the seed.
            generator = keyed_generator(images.device, self.seed, trainer.current_epoch, batch_idx, trainer.global_rank)
        # Precision autocast wraps training_step, not callback hooks: enter the same context
        # so that the attack runs at the precision the model trains at.
        with trainer.precision_plugin.forward_context():
            result = attack.attack(pl_module, images, labels, generator=generator, return_logits=True)
        clean = to_unit_float(images)
        batch[0] = torch.cat([clean, result.images.to(clean.dtype)])
        batch[1] = torch.cat([labels, labels])
        self.batches_perturbed += 1

        # Accuracy on the perturbed half, from the attack's final (eval-mode) forward pass.
        n = labels.shape[0]
        adv_top1 = (result.logits.argmax(dim=1) == labels).float().mean()
        pl_module.log("train/adv_top1", adv_top1, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
