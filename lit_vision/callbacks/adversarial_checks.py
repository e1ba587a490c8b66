"""The adversarial evaluation's verdicts, gathered and announced: the gradient-masking checks
(`lit_vision.attacks.masking`), the authors' AutoAttack checks
(`lit_vision.attacks.autoattack_checks`) and the "no attack above clean" check, each a dict
{"check", "passed", "detail"} that the table prints and the JSON keeps; a failed one is also a
warning that says what it means for the figures.
"""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_warn

from lit_vision.attacks.autoattack import AttackSuite
from lit_vision.attacks.autoattack_checks import apgd_zero_gradient_check, square_check
from lit_vision.attacks.masking import above_clean_check
from lit_vision.callbacks.adversarial_rows import attack_name


def authors_checks(model_checks: list[dict], suite: AttackSuite, suite_rows: list[dict], clean_top1: float) -> list[dict]:
    """The model checks run on the first batch, plus the ones the finished suite answers:
    APGD-T's zero-gradient message (the authors' engine only) and Square above the white-box
    attacks (a cascade only: its rows are robust accuracy after each attack)."""
    checks = list(model_checks)
    if suite.engine == "autoattack" and "apgd_t" in suite.attacks:
        ran = any(r["images"] for r in suite_rows if r["attack"].startswith("apgd_t"))
        checks.append(apgd_zero_gradient_check(suite.log.messages, ran))
    if suite.cascade:
        after = {"clean": clean_top1}
        after.update({r["attack"].split()[0]: r["top1"] for r in suite_rows if "fooled" in r})
        checks.append(square_check(after))
    return checks


def above_clean(clean_top1: float, rows: list[dict], suite: AttackSuite | None, suite_rows: list[dict], tolerance: float) -> dict:
    """No standalone attack figure may exceed clean accuracy on the same images (a cascade's
    rows are running worst cases, never above clean, so only standalone suite rows count)."""
    standalone = [r for r in rows if r.get("target")]
    if suite is not None and not suite.cascade:
        standalone += [r for r in suite_rows if "fooled" in r]
    return above_clean_check(clean_top1, [(attack_name(r), r["top1"]) for r in standalone], tolerance)


def warn_failed(checks: list[dict], authors: list[dict], above: dict) -> int:
    """A warning per failed check, worded for its kind; returns how many failed."""
    failed = [c for c in checks if c["passed"] is False]
    for check in failed:
        if check is above:
            rank_zero_warn(
                f"Check failed: {check['check']} ({check['detail']}). Such an attack helps the model instead of "
                "fooling it; its figure is no robustness figure — read test/robust_top1, the per-image worst case."
            )
        elif any(check is c for c in authors):
            rank_zero_warn(f"The authors' AutoAttack check failed: {check['check']} — {check['detail']}")
        else:
            rank_zero_warn(
                f"Possible gradient masking — check failed: {check['check']} ({check['detail']}). The adversarial "
                "accuracies of this evaluation may overstate the model's robustness."
            )
    return len(failed)
