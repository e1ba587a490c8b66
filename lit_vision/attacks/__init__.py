"""Adversarial attacks (pure torch, no Lightning)."""

from lit_vision.attacks.pgd import (
    COURSE_EPSILON,
    COURSE_NUM_STEPS,
    COURSE_STEP_SIZE,
    PGDAttack,
    PGDResult,
    check_within_budget,
    step_size_for,
)

__all__ = [
    "PGDAttack",
    "PGDResult",
    "COURSE_EPSILON",
    "COURSE_STEP_SIZE",
    "COURSE_NUM_STEPS",
    "check_within_budget",
    "step_size_for",
]
