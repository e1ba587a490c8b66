"""Signs that an attack is being fooled (gradient masking) rather than a model being robust.

Athalye, Carlini & Wagner (2018): when gradients are masked — a quantising or otherwise
non-differentiable input layer, saturated softmax, randomness — PGD stalls and reports a
robustness that a different attack would not find. Three symptoms are cheap to test:

1. accuracy rises as epsilon grows, or as the number of steps grows (a stronger attack must
   never do worse);
2. accuracy does not fall to about zero at a large epsilon (64/255 removes most of an image);
3. a black-box transfer attack, crafted on another model, beats the white-box attack on the
   model itself.

`masking_checks` turns measured accuracies into one verdict per symptom. `above_clean_check`
is a fourth verdict, about the attack rather than the model: an attack that leaves accuracy
above the clean accuracy on the same images helped the model (a least-likely-target attack can:
it pushes towards one wrong class, not away from the right one, and turns some misclassified
images into correct ones). Pure Python.
"""

from __future__ import annotations

from collections import defaultdict


def _rises(points: list[tuple[float, float]], tolerance: float) -> list[str]:
    """Pairs along an axis (sorted by the axis value) where accuracy rises by more than `tolerance`."""
    points = sorted(points)
    return [
        f"{a:g} → {b:g}: {acc_a:.3f} → {acc_b:.3f}"
        for (a, acc_a), (b, acc_b) in zip(points, points[1:])
        if acc_b > acc_a + tolerance
    ]


def masking_checks(
    sweep: list[dict],
    large_epsilon_top1: float | None,
    large_epsilon: float,
    large_epsilon_max_top1: float,
    whitebox_top1: float | None,
    transfer_top1: float | None,
    tolerance: float,
) -> list[dict]:
    """One dict per check: {"check", "passed" (True/False, None when it could not run), "detail"}.

    `sweep`: rows with "target", "epsilon", "steps" and "top1" (one per attack of a grid).
    `whitebox_top1` / `transfer_top1`: true-label accuracy on the same images under a white-box
    attack on the model and under the same attack crafted on another (clean) model."""
    checks = []
    by_epsilon: dict[tuple, list] = defaultdict(list)
    by_steps: dict[tuple, list] = defaultdict(list)
    for row in sweep:
        by_epsilon[(row["target"], row["steps"])].append((row["epsilon"], row["top1"]))
        by_steps[(row["target"], row["epsilon"])].append((row["steps"], row["top1"]))
    for axis, groups, other in (("epsilon", by_epsilon, "steps"), ("steps", by_steps, "epsilon")):
        curves = {key: points for key, points in groups.items() if len({p[0] for p in points}) > 1}
        if not curves:
            checks.append(
                {"check": f"accuracy does not rise with {axis}", "passed": None, "detail": f"no sweep over {axis}"}
            )
            continue
        rises = [f"{target}, {other} {value:g}: {r}" for (target, value), points in curves.items() for r in _rises(points, tolerance)]
        checks.append(
            {
                "check": f"accuracy does not rise with {axis}",
                "passed": not rises,
                "detail": "; ".join(rises) if rises else f"{len(curves)} curve(s) non-increasing (tolerance {tolerance:g})",
            }
        )
    if large_epsilon_top1 is None:
        checks.append({"check": "accuracy falls to ~0 at a large epsilon", "passed": None, "detail": "not run"})
    else:
        checks.append(
            {
                "check": "accuracy falls to ~0 at a large epsilon",
                "passed": large_epsilon_top1 <= large_epsilon_max_top1,
                "detail": f"true-label PGD at {large_epsilon * 255:.0f}/255: top-1 {large_epsilon_top1:.3f} "
                f"(at most {large_epsilon_max_top1:g} expected)",
            }
        )
    if transfer_top1 is None or whitebox_top1 is None:
        checks.append({"check": "transfer attack does not beat white-box", "passed": None, "detail": "no transfer_from model"})
    else:
        checks.append(
            {
                "check": "transfer attack does not beat white-box",
                "passed": transfer_top1 >= whitebox_top1 - tolerance,
                "detail": f"true-label top-1 under white-box {whitebox_top1:.3f}, under transfer {transfer_top1:.3f}",
            }
        )
    return checks


def above_clean_check(clean_top1: float, attacks: list[tuple[str, float]], tolerance: float = 0.0) -> dict:
    """One check dict: fails when any (name, top1) of `attacks` is above `clean_top1` by more
    than `tolerance`, naming every such attack. The figures are on the same images as the clean
    one, so no sampling noise separates them: any rise is the attack's own doing."""
    above = [f"{name}: top-1 {top1:.3f} > clean {clean_top1:.3f}" for name, top1 in attacks if top1 > clean_top1 + tolerance]
    return {
        "check": "no attack leaves accuracy above clean",
        "passed": not above if attacks else None,
        "detail": "; ".join(above) if above else (
            f"{len(attacks)} attack figure(s) at or below clean {clean_top1:.3f} (tolerance {tolerance:g})" if attacks else "no attack"
        ),
    }
