"""Adversarial attacks (pure torch, no Lightning): the project's PGD, and the AutoAttack-grade
suite built from torchattacks (an optional dependency, imported only when a suite is built)."""

from lit_vision.attacks.autoattack import SUITE_ATTACKS, SUITES, AttackSuite, SuiteResult, run_suite

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
    "AttackSuite",
    "SuiteResult",
    "SUITES",
    "SUITE_ATTACKS",
    "run_suite",
    "PGDAttack",
    "PGDResult",
    "COURSE_EPSILON",
    "COURSE_STEP_SIZE",
    "COURSE_NUM_STEPS",
    "check_within_budget",
    "step_size_for",
]
