"""Adversarial weight perturbation (AWP; Wu, Xia & Wang 2020, "Adversarial weight perturbation
helps robust generalization"): each training step's gradient is taken at weights pushed, layer by
layer, in the direction that raises the batch's loss, and applied to the weights as they were.

    trainer:
      callbacks:
        - class_path: lit_vision.callbacks.adversarial_training.AdversarialTraining
          init_args: {...}
        - class_path: lit_vision.callbacks.weight_perturbation.AdversarialWeightPerturbation
          init_args: {gamma: 0.005}

Per training batch (after `AdversarialTraining` has rebuilt it, so that the perturbation is
found on the adversarial images): one extra forward and backward of the model's own training
loss (`training_loss`: the mix's mean cross-entropy or TRADES) gives the gradient g_l of each
weight tensor w_l (every parameter with two or more dimensions: convolution and linear weights,
not biases or normalisation scales); w_l becomes w_l + gamma · ‖w_l‖ · g_l / ‖g_l‖ (one step of
Wu et al.'s ascent, their relative size gamma: 5e-3 for PGD training), the model's
`training_step` computes its loss and gradients there, and right after the backward the weights
are copied back exactly before the optimiser steps. Cost: one more forward and backward per step.

BatchNorm's running statistics are kept as they were around the extra forward (it is a probe,
not a training step). Under DDP each rank perturbs by its own shard's gradient, then the
gradients are averaged as usual. Not with `compile: step` (it runs its own backward).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F

from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.errors import LitVisionError


class AdversarialWeightPerturbation(Callback):
    """Take each step's gradient at adversarially perturbed weights (AWP).

    Args:
        gamma: size of each weight tensor's perturbation relative to its norm, > 0
            (Wu et al.: 5e-3 with PGD adversarial training, 5e-3 with TRADES as well).
        start_epoch: first epoch that perturbs (Wu et al. start at once; a later start leaves
            the first epochs, and the ε ramp, unperturbed).
    """

    def __init__(self, gamma: float = 5e-3, start_epoch: int = 0) -> None:
        super().__init__()
        if not gamma > 0:
            raise LitVisionError(
                f"AdversarialWeightPerturbation gamma must be > 0 (the perturbation's size relative to each "
                f"weight's norm; Wu et al. use 0.005), got {gamma}."
            )
        if isinstance(start_epoch, bool) or int(start_epoch) != start_epoch or start_epoch < 0:
            raise LitVisionError(f"AdversarialWeightPerturbation start_epoch must be an integer >= 0, got {start_epoch!r}.")
        self.gamma = float(gamma)
        self.start_epoch = int(start_epoch)
        # (weight, its value before the perturbation) while a step runs at perturbed weights.
        self._saved: list[tuple[nn.Parameter, torch.Tensor]] = []
        self.batches_perturbed = 0  # this fit's count, for logs and tests

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches_perturbed = 0
        if not pl_module.automatic_optimization:
            raise LitVisionError(
                "AdversarialWeightPerturbation needs Lightning's automatic optimisation: it restores the weights "
                "between the backward and the optimiser step. model.compile 'step' runs its own; use compile "
                "'model' or false with this callback."
            )
        callbacks = trainer.callbacks
        mine = next(i for i, c in enumerate(callbacks) if c is self)
        if any(isinstance(c, AdversarialTraining) for c in callbacks[mine + 1 :]):
            raise LitVisionError(
                "AdversarialWeightPerturbation is listed before AdversarialTraining in trainer.callbacks, so it would "
                "probe the clean batch before the adversarial images are added. List AdversarialTraining first."
            )

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.current_epoch < self.start_epoch:
            return
        images, labels = batch[0], batch[1]
        weights = [p for p in pl_module.parameters() if p.requires_grad and p.ndim > 1]
        with trainer.precision_plugin.forward_context(), kept_norm_statistics(pl_module):
            logits = pl_module(images)
            loss = training_loss(pl_module, logits, labels)
        gradients = torch.autograd.grad(loss, weights, allow_unused=True)
        with torch.no_grad():
            for weight, gradient in zip(weights, gradients):
                if gradient is None:
                    continue
                self._saved.append((weight, weight.detach().clone()))
                # The tiny constant keeps a zero gradient a zero step without a host synchronisation.
                step = gradient.float() * (self.gamma * weight.float().norm() / (gradient.float().norm() + 1e-12))
                weight.add_(step.to(weight.dtype))
        self.batches_perturbed += 1

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The gradients are those at the perturbed weights; the optimiser steps from the weights as they were.
        self._restore()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        # A step whose training_step returned None ran no backward: the weights come back here,
        # before ModelCheckpoint (always after this callback) can save them.
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()  # a checkpoint written on the way out must hold the true weights

    def _restore(self) -> None:
        with torch.no_grad():
            for weight, value in self._saved:
                weight.copy_(value)
        self._saved = []


def training_loss(pl_module: L.LightningModule, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss the model trains on (lit_vision's ImageClassifier: its objective, TRADES included),
    cross-entropy for any other LightningModule."""
    if hasattr(pl_module, "training_loss"):
        return pl_module.training_loss(logits, labels)
    return F.cross_entropy(logits, labels)


@contextmanager
def kept_norm_statistics(model: nn.Module) -> Iterator[None]:
    """Within it, the model's BatchNorm running statistics (and batch counters) may change; they
    are put back on exit: a forward in training mode that is not a training step leaves no trace."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]
    saved = [{name: value.clone() for name, value in m._buffers.items() if value is not None} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, buffers in zip(norms, saved):
                for name, value in buffers.items():
                    module._buffers[name].copy_(value)
