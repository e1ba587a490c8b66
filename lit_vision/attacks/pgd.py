"""Projected gradient descent (PGD) under an L∞ budget, in pixel space.

    from lit_vision.attacks import PGDAttack
    attack = PGDAttack(epsilon=8 / 255, step_size=2 / 255, num_steps=10, target="true_label")
    adversarial = attack.perturb(model, images, labels)   # images in [0, 1] (or uint8)

Pure torch: any `nn.Module` that maps pixel-space images to logits can be attacked
(lit_vision's LightningModules normalise internally, so they are such a module).

Units. `epsilon` and `step_size` are in pixel units of [0, 1] (8/255 is "8 grey levels").
The seed attacked ImageNet-normalised tensors with epsilon 0.1 and step 0.01; a distance d
in normalised units is d·std in pixel units, and we convert with the mean of the three
ImageNet standard deviations (0.229, 0.224, 0.225 → 0.226): epsilon 0.0226 ≈ 5.8/255 and
step 0.00226 ≈ 0.58/255 (the per-channel stds differ by only 2%, so any choice is ≈ 6/255).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.errors import LitVisionError
from lit_vision.utils.images import to_unit_float

Target = Literal["least_likely", "true_label"]
TARGETS = ("least_likely", "true_label")

# The seed's attack strength translated from ImageNet-normalised units to pixel units.
_MEAN_IMAGENET_STD = (0.229 + 0.224 + 0.225) / 3  # 0.226
SEED_EPSILON = 0.1 * _MEAN_IMAGENET_STD  # 0.0226 ≈ 5.8/255
SEED_STEP_SIZE = 0.01 * _MEAN_IMAGENET_STD  # 0.00226 ≈ 0.58/255
SEED_NUM_STEPS = 10


@dataclass
class PGDResult:
    """What `PGDAttack.attack` returns."""

    images: torch.Tensor  # adversarial images, float in [0, 1]
    logits: torch.Tensor | None  # the model's logits on `images` (eval mode), if asked for
    target: torch.Tensor  # the class each image was pushed towards (least_likely) or away from


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode and restore each one's own previous flag afterwards
    (a train-mode model may hold BatchNorm layers frozen in eval mode on purpose; a plain
    `model.train()` at the end would unfreeze them)."""
    previous = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in previous:
            module.training = training


@contextlib.contextmanager
def gradients_enabled():
    """Gradients with respect to the input, wherever we are called from: `inference_mode`
    (Lightning's validate/test by default) cannot be undone by `enable_grad` alone, but
    `inference_mode(False)` can; tensors made under inference mode must then be cloned
    before autograd may use them (done by the caller)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


class PGDAttack:
    """L∞ projected gradient descent with signed-gradient steps, in pixel space.

    Args:
        epsilon: L∞ radius of the perturbation, pixel units of [0, 1]. Default: the seed's
            0.1 in ImageNet-normalised units ≈ 5.8/255 (see the module docstring).
        step_size: size of each signed-gradient step, pixel units. Default ≈ 0.58/255.
        num_steps: number of steps (each one forward and one input-gradient backward).
        target: "least_likely" (the seed's attack: minimise cross-entropy towards the class
            with the lowest logit on the clean image, chosen once before the first step) or
            "true_label" (maximise cross-entropy on the true label, Madry / torchattacks).
        random_start: start from a uniform random point of the ε-ball instead of the image.
    """

    def __init__(
        self,
        epsilon: float = SEED_EPSILON,
        step_size: float = SEED_STEP_SIZE,
        num_steps: int = SEED_NUM_STEPS,
        target: Target = "least_likely",
        random_start: bool = False,
    ) -> None:
        if not epsilon >= 0:  # also rejects NaN
            raise LitVisionError(f"PGD epsilon must be >= 0 (pixel units of [0, 1]), got {epsilon}.")
        if epsilon > 1:
            raise LitVisionError(
                f"PGD epsilon is in pixel units of [0, 1]; {epsilon} exceeds the whole range "
                f"(did you mean {epsilon}/255 ≈ {epsilon / 255:.4f}?)."
            )
        if not step_size >= 0:
            raise LitVisionError(f"PGD step_size must be >= 0 (pixel units of [0, 1]), got {step_size}.")
        if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
            raise LitVisionError(f"PGD num_steps must be an integer >= 1, got {num_steps}.")
        if target not in TARGETS:
            raise LitVisionError(f"PGD target must be one of {', '.join(TARGETS)}; got {target!r}.")
        self.epsilon = float(epsilon)
        self.step_size = float(step_size)
        self.num_steps = int(num_steps)
        self.target = target
        self.random_start = bool(random_start)

    def __repr__(self) -> str:
        return (
            f"PGDAttack(epsilon={self.epsilon:.5g} (≈{self.epsilon * 255:.3g}/255), step_size={self.step_size:.5g}, "
            f"num_steps={self.num_steps}, target={self.target!r}, random_start={self.random_start})"
        )

    def perturb(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Adversarial versions of `images` (float in [0, 1], same shape).

        `images`: (B, C, H, W) float in [0, 1] or uint8. `labels` are needed for
        target="true_label" only. `generator` seeds the random start, if any.
        """
        return self.attack(model, images, labels, generator=generator, return_logits=False).images

    def attack(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_logits: bool = True,
    ) -> PGDResult:
        """Like `perturb`, but also returns the target classes and (`return_logits`) the
        model's logits on the adversarial images: one extra forward pass without gradients,
        which lets callers report adversarial accuracy without running the model again."""
        if images.ndim != 4:
            raise LitVisionError(f"PGD expects a batch of images (B, C, H, W), got shape {tuple(images.shape)}.")
        if self.target == "true_label" and labels is None:
            raise LitVisionError("PGD with target='true_label' needs the labels.")

        with gradients_enabled(), eval_mode(model):
            # clone(): leaves inference mode and never writes into the caller's tensor.
            clean = to_unit_float(images.detach()).clone()
            if self.target == "true_label":
                target = labels.detach().clone().long()
                sign = 1.0  # ascend the loss on the true label
            else:
                with torch.no_grad():
                    target = model(clean).argmin(dim=1)
                sign = -1.0  # descend the loss towards the least likely class
            low = (clean - self.epsilon).clamp_(0, 1)
            high = (clean + self.epsilon).clamp_(0, 1)

            x = clean.clone()
            if self.random_start and self.epsilon > 0:
                noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = torch.minimum(torch.maximum(x + (2 * noise - 1) * self.epsilon, low), high)

            for _ in range(self.num_steps):
                x.requires_grad_(True)
                # Sum, not mean: each image's step is independent of the batch size
                # (only the sign is used, but a mean would underflow in low precision).
                loss = F.cross_entropy(model(x).float(), target, reduction="sum")
                # Gradient with respect to the input only: parameters' .grad stay untouched
                # and the engine skips the weight-gradient kernels altogether.
                (grad,) = torch.autograd.grad(loss, x)
                with torch.no_grad():
                    # A fresh leaf every step: no graph survives from one step to the next.
                    x = x.detach() + (sign * self.step_size) * grad.sign()
                    x = torch.minimum(torch.maximum(x, low), high)

            x = x.detach()
            logits = None
            if return_logits:
                with torch.no_grad():
                    logits = model(x).detach()
        return PGDResult(images=x, logits=logits, target=target)
