"""Adversarial training: on a random share of training batches, add PGD-perturbed copies.

    trainer:
      callbacks:
        - class_path: lit_vision.callbacks.AdversarialTraining
          init_args: {fraction: 0.2, epsilon: [0.0113, 0.0226], steps: [5, 10]}

Logged: `train/adv_batches` (perturbed batches per epoch, the same on every rank),
`train/adv_top1` (accuracy on the adversarial part, from an eval-mode pass over it on every
`measure_every_n_batches`-th perturbed batch: the epoch's value is a sample of the batches, as
that pass costs a third of a clean training step on every batch it measures) and
`train/adv_epsilon_scale` (the ε ramp's factor).

For each selected batch the callback attacks the model being trained (in eval mode, without
touching its parameters' gradients), then replaces the batch in place with
`[clean ‖ adversarial]` images and their labels. The model's own `training_step` averages the
cross-entropy over that batch, so the callback sets the adversarial share of the loss through
the batch's composition (`adversarial_weight`, the trade-off knob):

- 0.5 (default): every clean image plus an adversarial copy of each, as the assignment's recipe has it;
- w < 0.5: every clean image plus adversarial copies of the first round(B·w/(1-w)) only
  (cheaper: fewer images are attacked);
- w > 0.5: adversarial copies of every image plus the first round(B·(1-w)/w) clean ones;
  1.0 trains on adversarial images alone (Madry et al.).

The weight (`objective: mix`, the default) needs nothing from the model's loss: any
LightningModule's `training_step` stays as it is, and the assignment's concatenated batch is the
default point of the knob. `objective: trades` (Zhang et al. 2019) keeps the same
`[clean ‖ adversarial]` batch — every clean image and one adversarial copy of each, in order —
but the copies come from an attack that maximises KL(p(clean) ‖ p(adversarial)) (no label, no
`target`), and the loss is CE on the clean half + `trades_beta` × the KL between each pair:
the callback hands the model that objective once, when the fit starts (`ImageClassifier.training_objective`,
called by its `training_loss` on every batch, cleared at teardown), since a mean over the batch
cannot express it; the objective reads the callback's own record of the batch it rebuilt
(TRADES on a perturbed batch, the mean cross-entropy on a clean one). `trades_beta` is
then the trade-off knob (6: Zhang et al.'s); `adversarial_weight` stays at 0.5. See
attacks/trades.py.

Epsilon and the step count are drawn per batch from the given ranges (the assignment varied both).
With `epsilon_ramp_epochs`, ε grows linearly from ~0 to the drawn value over the first epochs
(a full ε from step 0 often stalls a small net). One step with `random_start` and
`step_scale: 1.25` is "fast" FGSM training (Wong, Rice & Kolter 2020); pair it with
`AdversarialValidation` to catch its catastrophic over-fitting.

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
from torch.nn import functional as F

from lit_vision.attacks.pgd import (
    ASSIGNMENT_PGD_EPSILON,
    ASSIGNMENT_PGD_STEPS,
    PGDAttack,
    Target,
    step_size_for,
)
from lit_vision.attacks.trades import TradesLoss, kl_attack
from lit_vision.errors import LitVisionError
from lit_vision.utils.choices import check_choice
from lit_vision.utils.generators import keyed_generator
from lit_vision.utils.images import to_unit_float


# How a perturbed batch's loss is formed (see the module docstring).
Objective = Literal["mix", "trades"]


class AdversarialTraining(Callback):
    """Train on clean + PGD-perturbed images for a random `fraction` of batches.

    Args:
        fraction: share of training batches that get an adversarial part, in [0, 1].
        epsilon: [low, high] range of the L∞ radius, pixel units of [0, 1], drawn uniformly
            per batch; high > 0. Default [0.5, 1] × the assignment's strength ≈ [2.9/255, 5.8/255].
        steps: [low, high] inclusive range of PGD steps, drawn uniformly per batch.
        step_scale: step size = step_scale × epsilon / steps. 1.0 is the assignment's rule
            (0.01 × 10 steps = 0.1); 2.5 is Madry et al.'s; 1.25 with one step is fast FGSM.
        target: "least_likely" (the assignment's) or "true_label" (Madry / torchattacks).
        random_start: start each attack from a random point of the ε-ball.
        adversarial_weight: share of a perturbed batch's loss that comes from adversarial
            images, in (0, 1]; 0.5 keeps the whole clean batch beside a copy of each image.
        epsilon_ramp_epochs: epochs over which ε grows linearly to its drawn value (0: none).
        objective: "mix" (mean cross-entropy over the batch, weighted by its composition) or
            "trades" (CE on clean + trades_beta × KL(clean ‖ adversarial), KL-maximising attack;
            needs a lit_vision ImageClassifier).
        trades_beta: TRADES' weight of the KL term, > 0 (used with objective "trades").
        measure_every_n_batches: `train/adv_top1` is measured on each epoch's first perturbed
            batch and every n-th after it (1: on all of them, one extra forward pass each).
        seed: RNG seed of the choice of batches, the per-batch draws and the random starts.
    """

    def __init__(
        self,
        fraction: float = 0.2,
        epsilon: tuple[float, float] = (ASSIGNMENT_PGD_EPSILON / 2, ASSIGNMENT_PGD_EPSILON),
        steps: tuple[int, int] = (ASSIGNMENT_PGD_STEPS // 2, ASSIGNMENT_PGD_STEPS),
        step_scale: float = 1.0,
        target: Target = "least_likely",
        random_start: bool = False,
        adversarial_weight: float = 0.5,
        epsilon_ramp_epochs: float = 0.0,
        objective: Objective = "mix",
        trades_beta: float = 6.0,
        measure_every_n_batches: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= fraction <= 1:
            raise LitVisionError(f"AdversarialTraining fraction must be in [0, 1], got {fraction}.")
        epsilon, steps = tuple(epsilon), tuple(steps)
        if len(epsilon) != 2 or not 0 <= epsilon[0] <= epsilon[1] <= 1 or epsilon[1] == 0:
            raise LitVisionError(
                f"AdversarialTraining epsilon must be a range [low, high] with 0 <= low <= high <= 1 and high > 0 "
                f"(pixel units of [0, 1]), got {list(epsilon)}."
            )
        if len(steps) != 2 or not 1 <= steps[0] <= steps[1] or any(int(s) != s for s in steps):
            raise LitVisionError(
                f"AdversarialTraining steps must be an integer range [low, high] with 1 <= low <= high, got {list(steps)}."
            )
        if not step_scale > 0:
            raise LitVisionError(
                f"AdversarialTraining step_scale must be > 0, got {step_scale}: step size = step_scale × epsilon / steps."
            )
        if not 0 < adversarial_weight <= 1:
            raise LitVisionError(
                f"AdversarialTraining adversarial_weight must be in (0, 1], got {adversarial_weight} "
                "(0.5: clean and adversarial halves weigh the same; 1: adversarial images only)."
            )
        if not epsilon_ramp_epochs >= 0:
            raise LitVisionError(f"AdversarialTraining epsilon_ramp_epochs must be >= 0, got {epsilon_ramp_epochs}.")
        check_choice(target, Target, "AdversarialTraining target")
        check_choice(objective, Objective, "AdversarialTraining objective")
        if not trades_beta > 0:
            raise LitVisionError(f"AdversarialTraining trades_beta must be > 0 (the weight of TRADES' KL term), got {trades_beta}.")
        if isinstance(measure_every_n_batches, bool) or not 1 <= measure_every_n_batches == int(measure_every_n_batches):
            raise LitVisionError(
                f"AdversarialTraining measure_every_n_batches must be an integer >= 1, got {measure_every_n_batches}."
            )
        if objective == "trades" and adversarial_weight != 0.5:
            raise LitVisionError(
                f"AdversarialTraining adversarial_weight {adversarial_weight} has no meaning with objective 'trades': "
                "its batch is every clean image plus one adversarial copy of each, and trades_beta weighs the two. "
                "Leave adversarial_weight at 0.5 and set trades_beta."
            )
        self.fraction = float(fraction)
        self.epsilon = (float(epsilon[0]), float(epsilon[1]))
        self.steps = (int(steps[0]), int(steps[1]))
        self.step_scale = float(step_scale)
        self.target = target
        self.random_start = bool(random_start)
        self.adversarial_weight = float(adversarial_weight)
        self.epsilon_ramp_epochs = float(epsilon_ramp_epochs)
        self.objective = objective
        self.trades_beta = float(trades_beta)
        self.measure_every_n_batches = int(measure_every_n_batches)
        self.seed = int(seed)
        # Counters of the current fit (not checkpointed: they are for logs and tests).
        self.batches_seen = 0
        self.batches_perturbed = 0
        self._perturbed_this_epoch = 0  # train/adv_top1 is measured on the first of each epoch
        # Pairs of the [clean ‖ adversarial] batch being trained on under objective 'trades'
        # (None: the batch was left clean); read by `trades_objective`.
        self._trades_pairs: int | None = None

    # ------------------------------------------------------------------ plan
    def epsilon_scale(self, epoch: int, batch_idx: int, num_batches: int) -> float:
        """The ramp's factor in (0, 1] at this batch: linear in training progress, reaching 1
        after `epsilon_ramp_epochs` epochs (the first batch already gets a small ε > 0)."""
        if self.epsilon_ramp_epochs <= 0:
            return 1.0
        progress = epoch + (batch_idx + 1) / max(1, num_batches)
        return min(1.0, progress / self.epsilon_ramp_epochs)

    def plan(self, epoch: int, batch_idx: int, epsilon_scale: float = 1.0) -> PGDAttack | None:
        """The attack for this batch, or None if it stays clean. A pure function of
        (seed, epoch, batch_idx): the same on every rank and in every rerun."""
        rng = np.random.default_rng([self.seed, epoch, batch_idx])
        if rng.random() >= self.fraction:
            return None
        epsilon = float(rng.uniform(*self.epsilon)) * epsilon_scale
        num_steps = int(rng.integers(self.steps[0], self.steps[1], endpoint=True))
        if epsilon <= 0:  # the low end of a [0, high] range: nothing to attack with
            return None
        return PGDAttack(
            epsilon=epsilon,
            step_size=step_size_for(epsilon, num_steps, self.step_scale),
            num_steps=num_steps,
            target=self.target,
            random_start=self.random_start,
        )

    def composition(self, batch_size: int) -> tuple[int, int]:
        """(clean images kept, images attacked) for a batch of `batch_size`, so that the
        adversarial share of the batch's mean loss is `adversarial_weight`."""
        w = self.adversarial_weight
        if w <= 0.5:
            return batch_size, max(1, min(batch_size, round(batch_size * w / (1 - w))))
        return round(batch_size * (1 - w) / w), batch_size

    def trades_objective(self, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """The loss the model trains on under objective 'trades' (handed to it once per fit):
        TRADES on a batch this callback rebuilt, the model's mean cross-entropy on one it left clean."""
        if self._trades_pairs is None:
            return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        return TradesLoss(self.trades_beta, pairs=self._trades_pairs)(logits, labels, label_smoothing)

    # ----------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches_seen = 0
        self.batches_perturbed = 0
        self._trades_pairs = None
        if self.objective != "trades":
            return
        if not hasattr(pl_module, "training_objective"):
            raise LitVisionError(
                f"AdversarialTraining objective 'trades' needs a model whose training_step takes its loss from "
                f"`training_objective` (lit_vision's ImageClassifier and every --model do); {type(pl_module).__name__} "
                "does not. Use objective 'mix', or subclass lit_vision.models.ImageClassifier."
            )
        if pl_module.training_objective not in (None, self.trades_objective):
            raise LitVisionError(
                f"AdversarialTraining objective 'trades' found the model's training_objective already set to "
                f"{pl_module.training_objective!r}: two callbacks cannot both choose the training loss. Keep one."
            )
        pl_module.training_objective = self.trades_objective

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._release(pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Lightning skips teardown hooks when a fit fails: the model must not keep this fit's loss.
        self._release(pl_module)

    def _release(self, pl_module: L.LightningModule) -> None:
        self._trades_pairs = None
        if getattr(pl_module, "training_objective", None) == self.trades_objective:
            pl_module.training_objective = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._perturbed_this_epoch = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self._trades_pairs = None  # the record describes one batch only

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.batches_seen += 1
        self._trades_pairs = None
        scale = self.epsilon_scale(trainer.current_epoch, batch_idx, int(trainer.num_training_batches))
        attack = self.plan(trainer.current_epoch, batch_idx, scale)
        # Logged on every batch (0 or 1) so that the epoch's sum is the count, even when 0.
        pl_module.log(
            "train/adv_batches", float(attack is not None), on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1
        )
        if self.epsilon_ramp_epochs > 0:
            pl_module.log("train/adv_epsilon_scale", scale, on_step=False, on_epoch=True, batch_size=1)
        if attack is None:
            return
        if not isinstance(batch, list) or len(batch) < 2:
            raise LitVisionError(
                "AdversarialTraining needs training batches as a list [images, labels] so that it can "
                f"replace them in place; got {type(batch).__name__}. Return lists from the collate function."
            )
        images, labels = batch[0], batch[1]
        kept, attacked = self.composition(labels.shape[0])
        generator = None
        if attack.random_start or self.objective == "trades":
            # Per-rank noise (each rank holds other images), reproducible from the seed.
            generator = keyed_generator(images.device, self.seed, trainer.current_epoch, batch_idx, trainer.global_rank)
        # The accuracy on the adversarial images takes a forward pass of its own: a sample of the
        # batches measures it without adding that pass to every step.
        measure = self._perturbed_this_epoch % self.measure_every_n_batches == 0
        # Precision autocast wraps training_step, not callback hooks: enter the same context
        # so that the attack runs at the precision the model trains at.
        with trainer.precision_plugin.forward_context():
            if self.objective == "trades":
                result = kl_attack(pl_module, images, attack.epsilon, attack.step_size, attack.num_steps,
                                   attack.random_start, generator, return_logits=measure)  # fmt: skip
                self._trades_pairs = attacked  # what the model's objective reads for this batch
            else:
                result = attack.attack(
                    pl_module, images[:attacked], labels[:attacked], generator=generator, return_logits=measure
                )
        clean = to_unit_float(images[:kept])
        batch[0] = torch.cat([clean, result.images.to(clean.dtype)])
        batch[1] = torch.cat([labels[:kept], labels[:attacked]])
        self.batches_perturbed += 1
        self._perturbed_this_epoch += 1
        if measure:  # from the attack's final (eval-mode) forward pass
            adv_top1 = (result.logits.argmax(dim=1) == labels[:attacked]).float().mean()
            pl_module.log("train/adv_top1", adv_top1, on_step=False, on_epoch=True, batch_size=attacked, sync_dist=True)
