"""The authors' automatic checks of an AutoAttack evaluation (Croce & Hein; `pyautoattack.checks`),
run through their own functions and turned into verdicts beside the gradient-masking checks.

    from lit_vision.attacks.autoattack_checks import model_checks, square_check
    checks = model_checks(model, images, labels, attacks=["apgd_ce", "apgd_t", "fab_t", "square"])
    checks.append(square_check({"clean": 0.9, "apgd_ce": 0.4, "apgd_t": 0.38, "fab_t": 0.38, "square": 0.35}))

Each verdict is a dict {"check", "passed" (True/False, None when it could not run), "detail"}:
on failure the detail quotes the authors' warning and says what to run instead. The checks
(the authors' `flags_doc.md` explains them):

- randomised defence: five forward passes of the same images must agree (else the standard
  version, which attacks one draw, overstates robustness: run version="rand", with EOT);
- softmax outputs: the model must return logits, not probabilities (the attacks' losses and
  their gradients assume logits; a final softmax saturates them);
- dynamic defence: the forward must not compute gradients itself (a test-time-adaptive defence
  needs an adaptive attack);
- target classes: the standard version's APGD-T and FAB-T use 9 target classes, which needs at
  least 10 classes, and the targeted DLR loss at least 4;
- zero gradients: images whose loss gradient is exactly zero cannot be attacked by gradients
  (masking by saturation or quantisation): on the clean batch's cross-entropy gradient, and as
  the authors run it, inside APGD-T, on every start (`apgd_zero_gradient_check`);
- Square beating the white-box attacks: in the cascade the black-box Square must fool almost
  nothing that APGD and FAB left (more than 0.2 points means the white-box attacks were fooled:
  an adaptive attack is needed).

Pure torch; the functions are the authors', called with a logger that keeps their warnings.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.attacks.autoattack import AUTHORS_NAMES, SUITES, MessageLog, require_autoattack

__all__ = ["apgd_zero_gradient_check", "model_checks", "square_check"]

DOC = "the authors' flags_doc.md (github.com/fra31/auto-attack)"
ZERO_INSTEAD = (
    "the gradient-based attacks see nothing on those images (saturated softmax, quantised or non-differentiable "
    "input layer): trust the black-box Square and transfer figures there, or remove the masking layer for the evaluation"
)


def _verdict(name: str, messages: list[str], passed_detail: str, instead: str) -> dict:
    if not messages:
        return {"check": f"AutoAttack: {name}", "passed": True, "detail": passed_detail}
    # Their texts end in "See flags_doc.md for details.": that reference is given once, below.
    found = " | ".join(dict.fromkeys(m.split(" See ")[0].rstrip(" .") for m in messages))
    found += "" if found.endswith("!") else "."
    return {"check": f"AutoAttack: {name}", "passed": False, "detail": f"found: {found} Instead: {instead} (see {DOC})."}


def model_checks(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: list[str] | tuple[str, ...],
    target_classes: int = SUITES["autoattack"].target_classes,
) -> list[dict]:
    """The authors' checks of the model on one batch (`images` float in [0, 1], the model in eval
    mode and fp32 as the suite attacks it), in their order: randomised, softmax outputs, dynamic,
    target classes, and zero cross-entropy gradients."""
    require_autoattack()
    from pyautoattack import checks

    images, labels = images.detach().float(), labels.detach().long()
    verdicts = []

    log = MessageLog()
    checks.check_randomized(model, images, labels, logger=log)
    verdicts.append(_verdict(
        "deterministic model", log.messages, f"5 forward passes of {len(labels)} images agree",
        "attack the expectation over the model's randomness — the authors' AutoAttack(..., version=\"rand\") "
        "(APGD-CE and APGD-DLR with 20 EOT draws) — not this suite",
    ))  # fmt: skip

    log = MessageLog()
    num_classes = checks.check_range_output(model, images, logger=log)
    verdicts.append(_verdict(
        "logits, not probabilities", log.messages, f"outputs are not a probability distribution ({num_classes} classes)",
        "evaluate the model without its final softmax (the attacks' losses expect logits)",
    ))  # fmt: skip

    if sys.gettrace() is not None:
        # The authors' check replaces the tracer with its own and then removes it: a debugger's or
        # coverage's tracer would be lost for the rest of the run.
        verdicts.append({"check": "AutoAttack: no gradients inside the forward (dynamic defence)", "passed": None,
                         "detail": "not run: a tracer (debugger or coverage) is active"})  # fmt: skip
    else:
        log = MessageLog()
        for name in checks.funcs:  # their call counter is module-wide and never reset: count this forward only
            checks.funcs[name] = 0
        checks.check_dynamic(model, images, False, logger=log)
        verdicts.append(_verdict(
            "no gradients inside the forward (dynamic defence)", log.messages,
            "the forward calls no grad/backward",
            "a defence that adapts at test time needs an adaptive attack designed for it; AutoAttack alone "
            "may overstate its robustness",
        ))  # fmt: skip

    log = MessageLog()
    checks.check_n_classes(num_classes, [AUTHORS_NAMES[a] for a in attacks], target_classes, target_classes, logger=log)
    targeted = [a for a in attacks if a in ("apgd_t", "fab_t")]
    used = min(target_classes, num_classes - 1)
    verdicts.append(_verdict(
        "enough classes for the targeted attacks", log.messages,
        f"{num_classes} classes: {target_classes} target classes for {', '.join(targeted)}" if targeted
        else "no targeted attack in the suite",
        f"this suite runs {', '.join(targeted)} with {used} target classes (all but the true class), a figure "
        f"that is not the standard version's; with 3 classes or fewer leave apgd_t out, and compare models "
        f"with the same class count",
    ))  # fmt: skip

    log = MessageLog()
    x = images.clone().requires_grad_()
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, [x])
    checks.check_zero_gradients(gradient, logger=log)
    verdicts.append(_verdict(
        "no zero gradients", log.messages, f"cross-entropy gradient non-zero on all {len(labels)} images", ZERO_INSTEAD
    ))  # fmt: skip
    return verdicts


def apgd_zero_gradient_check(messages: list[str], ran: bool) -> dict:
    """The authors' zero-gradient check as their APGD-T runs it (on the targeted DLR loss at each
    random start): `messages`, what the suite's authors-engine attacks logged; `ran`, whether APGD-T
    attacked any image."""
    if not ran:
        return {"check": "AutoAttack: no zero gradients in APGD-T", "passed": None, "detail": "APGD-T attacked no image"}
    return _verdict("no zero gradients in APGD-T", messages, "no image with a zero DLR gradient at any start", ZERO_INSTEAD)


def square_check(robust_after: dict[str, float], tolerance: float = 0.002) -> dict:
    """The authors' last check on a cascade's robust accuracies in order ({"clean": .., then one per
    attack, e.g. "apgd_ce": ..}; suite names or theirs): Square, the black-box attack, must not
    lower the accuracy the white-box attacks left by more than `tolerance` (their 0.2 points)."""
    require_autoattack()
    from pyautoattack import checks

    theirs = {AUTHORS_NAMES.get(k, k): v for k, v in robust_after.items()}
    name = "AutoAttack: Square does not beat the white-box attacks"
    if "square" not in theirs or len(theirs) <= 2:
        return {"check": name, "passed": None, "detail": "no Square after a white-box attack in the cascade"}
    log = MessageLog()
    checks.check_square_sr(theirs, alpha=tolerance, logger=log)
    before = min(v for k, v in theirs.items() if k != "square")
    return _verdict(
        "Square does not beat the white-box attacks", log.messages,
        f"robust top-1 {before:.3f} after the white-box attacks, {theirs['square']:.3f} after Square",
        "the white-box attacks were fooled (masked gradients): run Square with more queries and restarts "
        "and an adaptive attack before reporting a figure",
    )
