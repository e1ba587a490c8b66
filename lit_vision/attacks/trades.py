"""TRADES (Zhang et al. 2019) for `AdversarialTraining(objective="trades")`: its inner attack and its loss.

    loss = CE(f(x), y) + β · KL(p(x) ‖ p(x')),   x' = argmax over the ε-ball of KL(p(x) ‖ p(x'))

The attack maximises the KL divergence between the model's clean and perturbed predictions (no
label: it pushes the prediction away from the clean one, whatever that is), with signed steps
and the same ε-ball/[0, 1] check as every PGD batch of the project. The KL is zero, and so is its
gradient, at x' = x, so the attack never starts at the image itself: from a uniform random point
of the ball (`random_start`), else from x + 0.001·N(0, 1) as in Zhang et al.'s code.

The loss reads a batch laid out as AdversarialTraining builds it, `[clean ‖ adversarial]`,
the i-th adversarial image a copy of the i-th clean one: the model's one forward pass over the
whole batch gives both sets of logits (in train mode, so BatchNorm normalises clean and
adversarial images with shared batch statistics — Zhang et al. run two passes). Cross-entropy
is taken on the clean half only; the KL, averaged over the pairs, is β-weighted. Gradients
flow through both halves, as in the reference code.

Pure torch (no Lightning): the callback runs the attack and, through the objective it hands
the model once per fit, applies `TradesLoss` to each batch it rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.attacks.pgd import PGDResult, check_within_budget, eval_mode, gradients_enabled
from lit_vision.utils.images import to_unit_float


def kl_attack(
    model: nn.Module,
    images: torch.Tensor,
    epsilon: float,
    step_size: float,
    num_steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    return_logits: bool = True,
) -> PGDResult:
    """TRADES' inner maximisation: `num_steps` signed-gradient steps on KL(p(x) ‖ p(x')), in eval
    mode and without touching the parameters' gradients. Returns the images and (`return_logits`:
    one more forward pass) the model's eval-mode logits on them (`target` is the clean prediction)."""
    with gradients_enabled(), eval_mode(model):
        clean = to_unit_float(images.detach()).clone()
        with torch.no_grad():
            clean_logits = model(clean).float()
        clean_log_p = F.log_softmax(clean_logits, dim=1)
        low, high = (clean - epsilon).clamp(0, 1), (clean + epsilon).clamp(0, 1)
        if random_start:
            noise = torch.rand(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
            x = clean + (2 * noise - 1) * epsilon
        else:
            x = clean + 0.001 * torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        x = torch.minimum(torch.maximum(x, low), high)
        for _ in range(num_steps):
            x.requires_grad_(True)
            log_q = F.log_softmax(model(x).float(), dim=1)
            # Sum over the batch: each image's step is its own (only the sign is used).
            loss = F.kl_div(log_q, clean_log_p, reduction="sum", log_target=True)
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = torch.minimum(torch.maximum(x.detach() + step_size * grad.sign(), low), high)
        x = x.detach()
        logits = None
        if return_logits:
            with torch.no_grad():
                logits = model(x).detach()
    check_within_budget(x, clean, epsilon, attack="TRADES KL-PGD")
    return PGDResult(images=x, logits=logits, target=clean_logits.argmax(dim=1))


@dataclass(frozen=True)
class TradesLoss:
    """The TRADES objective over a `[clean ‖ adversarial]` batch of `2 × pairs` images (see the
    module docstring); the model calls it in place of its mean cross-entropy."""

    beta: float
    pairs: int

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        if logits.shape[0] != 2 * self.pairs:
            raise RuntimeError(
                f"TRADES expected a [clean ‖ adversarial] batch of {2 * self.pairs} images, got {logits.shape[0]}: "
                "something between AdversarialTraining and the model's training_step changed the batch."
            )
        clean, adversarial = logits[: self.pairs].float(), logits[self.pairs :].float()
        natural = F.cross_entropy(clean, labels[: self.pairs], label_smoothing=label_smoothing)
        robust = F.kl_div(F.log_softmax(adversarial, 1), F.log_softmax(clean, 1), reduction="batchmean", log_target=True)
        return natural + self.beta * robust
