"""The rows of the adversarial evaluation's table: one per figure, built from the test's totals.

The headline (`HEADLINE`, the per-image worst case) comes first, then clean and each PGD target,
the PGD cost, one row per suite attack and the suite's cost, then sweeps and the checks' own
attacks. Every figure measured over every evaluated image carries its Wilson 95% interval
(`top1_ci95`) over that count. Pure functions of the totals: `AdversarialEvaluation` computes
them (and logs), `adversarial_report` writes them.
"""

from __future__ import annotations

import torch

from lit_vision.attacks.autoattack import AttackSuite
from lit_vision.attacks.pgd import PGDAttack
from lit_vision.utils.intervals import accuracy_interval

HEADLINE = "robust: worst case (clean and every attack within epsilon)"
# Per suite attack, the per-rank counts summed once at the end: images attacked, fooled,
# still robust after it, model forwards, gradient forwards, seconds.
SUITE_COUNTS = ("attacked", "fooled", "robust", "forwards", "gradient_forwards", "seconds")


def pgd_row(name: str, attack: PGDAttack | None, top1: float, top5: float) -> dict:
    """A clean (attack None) or PGD row: the attack's settings and its top-1/top-5."""
    return {
        "attack": name,
        "target": attack.target if attack else "",
        "epsilon": round(attack.epsilon, 6) if attack else 0.0,
        "epsilon_255": round(attack.epsilon * 255, 3) if attack else 0.0,
        "steps": attack.num_steps if attack else 0,
        "step_size": round(attack.step_size, 6) if attack else 0.0,
        "restarts": attack.restarts if attack else 0,
        "top1": top1,
        "top5": top5,
    }


def headline_row(robust_top1: float, epsilon: dict) -> dict:
    # Its blank cells keep the columns in the attack rows' order (the first row sets them).
    return {"attack": HEADLINE, "target": "", **epsilon, "steps": "", "step_size": "", "restarts": "", "top1": robust_top1}


def suite_rows(suite: AttackSuite, counts: torch.Tensor, images_seen: float, epsilon: dict, num_classes: int) -> list[dict]:
    """One row per suite attack (robust top-1 after it in a cascade, its standalone top-1
    otherwise; the images it ran on and fooled; its cost), then the suite's total cost.
    `counts` is (attacks, SUITE_COUNTS), summed over ranks."""
    settings = suite.settings
    how = "cascade" if suite.cascade else "standalone"
    steps = {"apgd_ce": settings.apgd_steps, "apgd_t": settings.apgd_steps, "fab_t": settings.fab_steps,
             "square": settings.square_queries}  # fmt: skip
    rows = []
    for name, line in zip(suite.attacks, counts.tolist()):
        c = dict(zip(SUITE_COUNTS, line))
        targets = min(settings.target_classes, num_classes - 1) if name in ("apgd_t", "fab_t") else 0
        rows.append({
            "attack": f"{name} ({suite.label}, {how})", **epsilon, "steps": steps[name], "restarts": 1,
            "targets": targets, "top1": c["robust"] / images_seen if images_seen else 0.0,
            "images": int(c["attacked"]), "fooled": int(c["fooled"]), "forwards": int(c["forwards"]),
            "gradient_passes": int(c["gradient_forwards"]), "seconds": round(c["seconds"], 3),
        })  # fmt: skip
    c = dict(zip(SUITE_COUNTS, counts.sum(dim=0).tolist()))
    rows.append({
        "attack": f"cost: suite ({suite.label}, {how})", **epsilon, "images": rows[0]["images"] if rows else 0,
        "forwards": int(c["forwards"]), "gradient_passes": int(c["gradient_forwards"]), "seconds": round(c["seconds"], 3),
    })  # fmt: skip
    return rows


def over_every_image(row: dict) -> bool:
    """Whether a table row's top-1 is a fraction of every evaluated image: the headline, clean,
    each PGD target and each suite attack (not the cost rows, sweeps or checks)."""
    return "top1" in row and not row["attack"].startswith(("cost:", "check:")) and not row["attack"].endswith("(sweep)")


def with_interval(row: dict, images: int) -> dict:
    """`row` with `top1_ci95` ("[low, high]", Wilson, over `images`) right after its top-1."""
    interval = accuracy_interval(row["top1"], images) if images else None
    cell = f"[{interval.low:.4f}, {interval.high:.4f}]" if interval else ""
    out = {}
    for key, value in row.items():
        out[key] = value
        if key == "top1":
            out["top1_ci95"] = cell
    return out


def attack_name(row: dict) -> str:
    """How a check names a table row's attack: its row name, ε and steps."""
    text = row["attack"]
    if row.get("epsilon_255"):
        text += f" at {row['epsilon_255']:g}/255"
    if row.get("steps"):
        text += f", {row['steps']} steps"
    return text
