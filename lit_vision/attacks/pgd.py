"""Projected gradient descent (PGD) under an L∞ budget, in pixel space.

    from lit_vision.attacks.pgd import PGDAttack
    attack = PGDAttack(epsilon=8 / 255, step_size=2 / 255, num_steps=10, target="true_label")
    adversarial = attack.perturb(model, images, labels)   # images in [0, 1] (or uint8)

Pure torch: any `nn.Module` that maps pixel-space images to logits can be attacked
(lit_vision's LightningModules normalise internally, so they are such a module).

Units. `epsilon` and `step_size` are in pixel units of [0, 1] (8/255 is "8 grey levels").
The CS 771 MiniPlaces assignment's attack worked on ImageNet-normalised tensors with epsilon 0.1 and step 0.01; a
distance d in normalised units is d·std in pixel units, converted with the mean of the three
ImageNet standard deviations (0.229, 0.224, 0.225 → 0.226): epsilon 0.0226 ≈ 5.8/255 and
step 0.00226 ≈ 0.58/255 (the per-channel stds differ by only 2%, so any choice is ≈ 6/255).

Every adversarial batch this module returns is checked to lie in the ε-ball around its clean
images and in [0, 1] (`check_within_budget`): a broken projection fails loudly instead of
reporting accuracy on images outside the threat model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.errors import LitVisionError
from lit_vision.utils.choices import check_choice
from lit_vision.utils.images import to_unit_float

Target = Literal["least_likely", "true_label"]

# The assignment's PGD setting (epsilon 0.1, step 0.01, 10 steps in ImageNet-normalised units),
# translated to pixel units.
_MEAN_IMAGENET_STD = (0.229 + 0.224 + 0.225) / 3  # 0.226
ASSIGNMENT_PGD_EPSILON = 0.1 * _MEAN_IMAGENET_STD  # 0.0226 ≈ 5.8/255
ASSIGNMENT_PGD_STEP_SIZE = 0.01 * _MEAN_IMAGENET_STD  # 0.00226 ≈ 0.58/255
ASSIGNMENT_PGD_STEPS = 10
# Slack of the ε-ball check: float32 rounding of clean ± epsilon.
BUDGET_TOLERANCE = 1e-5


def step_size_for(epsilon: float, num_steps: int, step_scale: float) -> float:
    """The step-size rule shared by training and evaluation: step_scale × epsilon / num_steps.
    step_scale 1.0 is the assignment's (0.01 × 10 steps = 0.1); 2.5 is Madry et al.'s for PGD;
    1.25 with one step from a random start is "fast" FGSM training (Wong, Rice & Kolter 2020)."""
    return step_scale * epsilon / num_steps


def check_within_budget(adversarial: torch.Tensor, clean: torch.Tensor, epsilon: float, attack: str = "PGD") -> None:
    """Raise if any adversarial pixel leaves [0, 1] or the L∞ ball of radius `epsilon` around
    its clean pixel: such a batch would measure something other than the stated threat model.
    `attack` names the attack that made the batch in the message.

    The check is asserted on the device (`torch._assert_async`): nothing is read back to the
    host, so an attack inside a training step (adversarial training) does not stall a GPU on
    every batch. On a CPU it raises at once, with the figures; on a GPU a broken batch ends the
    run with a device-side assertion at the next synchronisation."""
    if adversarial.numel() == 0:
        return
    distance = (adversarial.float() - to_unit_float(clean).float()).abs().amax()
    low, high = adversarial.amin(), adversarial.amax()
    within = (distance <= epsilon + BUDGET_TOLERANCE) & (low >= 0) & (high <= 1)
    message = (
        f"An adversarial batch of {attack} left its budget: L∞ distance above {epsilon:.6f} or pixel range "
        "outside [0, 1]. This is a bug in the attack."
    )
    try:
        torch._assert_async(within, message)
    except RuntimeError:  # raised at once on a CPU, where reading the figures back costs nothing
        raise RuntimeError(
            f"An adversarial batch of {attack} left its budget: L∞ distance {distance.item():.6f} (allowed {epsilon:.6f}), "
            f"pixel range [{low.item():.6f}, {high.item():.6f}] (allowed [0, 1]). This is a bug in the attack."
        ) from None


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
        epsilon: L∞ radius of the perturbation, pixel units of (0, 1]. Default: the assignment's
            0.1 in ImageNet-normalised units ≈ 5.8/255 (see the module docstring).
        step_size: size of each signed-gradient step, pixel units, > 0. Default ≈ 0.58/255.
        num_steps: number of steps (each one forward and one input-gradient backward), >= 1.
        target: "least_likely" (the assignment's attack: minimise cross-entropy towards the class
            with the lowest logit on the clean image, chosen once before the first step) or
            "true_label" (maximise cross-entropy on the true label, Madry / torchattacks).
        random_start: start from a uniform random point of the ε-ball instead of the image.
        restarts: run the attack this many times from independent random starts and keep, per
            image, the first run that fooled the model (needs random_start and labels).

    Parameters that make the attack a no-op (epsilon 0, step_size 0, no steps) are refused:
    an "adversarial" accuracy from them would silently equal the clean one.
    """

    def __init__(
        self,
        epsilon: float = ASSIGNMENT_PGD_EPSILON,
        step_size: float = ASSIGNMENT_PGD_STEP_SIZE,
        num_steps: int = ASSIGNMENT_PGD_STEPS,
        target: Target = "least_likely",
        random_start: bool = False,
        restarts: int = 1,
    ) -> None:
        if not epsilon > 0:  # also rejects NaN
            raise LitVisionError(
                f"PGD epsilon must be > 0 (pixel units of [0, 1]), got {epsilon}: with epsilon 0 the attack "
                "changes nothing and its accuracy is the clean one."
            )
        if epsilon > 1:
            raise LitVisionError(
                f"PGD epsilon is in pixel units of [0, 1]; {epsilon} exceeds the whole range "
                f"(did you mean {epsilon}/255 ≈ {epsilon / 255:.4f}?)."
            )
        if not step_size > 0:
            raise LitVisionError(
                f"PGD step_size must be > 0 (pixel units of [0, 1]), got {step_size}: a zero step never moves "
                "the image (step_size = step_scale × epsilon / num_steps when derived)."
            )
        if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
            raise LitVisionError(f"PGD num_steps must be an integer >= 1, got {num_steps}.")
        check_choice(target, Target, "PGD target")
        if isinstance(restarts, bool) or int(restarts) != restarts or restarts < 1:
            raise LitVisionError(f"PGD restarts must be an integer >= 1, got {restarts}.")
        if restarts > 1 and not random_start:
            raise LitVisionError(
                f"PGD restarts: {restarts} needs random_start: true (restarts from the same point repeat the same attack)."
            )
        self.epsilon = float(epsilon)
        self.step_size = float(step_size)
        self.num_steps = int(num_steps)
        self.target = target
        self.random_start = bool(random_start)
        self.restarts = int(restarts)

    def __repr__(self) -> str:
        return (
            f"PGDAttack(epsilon={self.epsilon:.5g} (≈{self.epsilon * 255:.3g}/255), step_size={self.step_size:.5g}, "
            f"num_steps={self.num_steps}, target={self.target!r}, random_start={self.random_start}, "
            f"restarts={self.restarts})"
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
        if self.restarts > 1 and labels is None:
            raise LitVisionError("PGD with restarts > 1 needs the labels (to keep each image's successful run).")

        with gradients_enabled(), eval_mode(model):
            # clone(): leaves inference mode and never writes into the caller's tensor.
            clean = to_unit_float(images.detach()).clone()
            if self.target == "true_label":
                target = labels.detach().clone().long()
            else:
                with torch.no_grad():
                    target = model(clean).argmin(dim=1)
            x = self._run_once(model, clean, target, generator)
            logits = None
            if return_logits or self.restarts > 1:
                with torch.no_grad():
                    logits = model(x).detach()
            for _ in range(self.restarts - 1):
                # Images still classified correctly take the next run's result.
                holding = logits.argmax(dim=1) == labels
                if not holding.any():
                    break
                candidate = self._run_once(model, clean, target, generator)
                with torch.no_grad():
                    candidate_logits = model(candidate).detach()
                x = torch.where(holding[:, None, None, None], candidate, x)
                logits = torch.where(holding[:, None], candidate_logits.to(logits.dtype), logits)
        check_within_budget(x, clean, self.epsilon)
        return PGDResult(images=x, logits=logits if return_logits else None, target=target)

    def _run_once(
        self, model: nn.Module, clean: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One PGD run from the image (or a random point of the ball) towards/away from `target`."""
        sign = 1.0 if self.target == "true_label" else -1.0  # ascend the true label's loss / descend to the target
        low = (clean - self.epsilon).clamp_(0, 1)
        high = (clean + self.epsilon).clamp_(0, 1)
        x = clean.clone()
        if self.random_start:
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
        return x.detach()
