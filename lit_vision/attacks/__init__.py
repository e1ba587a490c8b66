"""Adversarial attacks (pure torch, no Lightning): the project's PGD, TRADES' KL attack and loss,
and the AutoAttack-grade suite built from torchattacks (an optional dependency, imported only
when a suite is built)."""

from lit_vision.attacks.autoattack import SUITE_ATTACKS, SUITES, AttackSuite, SuiteResult, run_suite

from lit_vision.attacks.pgd import (
    ASSIGNMENT_PGD_EPSILON,
    ASSIGNMENT_PGD_STEP_SIZE,
    ASSIGNMENT_PGD_STEPS,
    PGDAttack,
    PGDResult,
    check_within_budget,
    step_size_for,
)
from lit_vision.attacks.trades import TradesLoss, kl_attack

__all__ = [
    "AttackSuite",
    "SuiteResult",
    "SUITES",
    "SUITE_ATTACKS",
    "run_suite",
    "PGDAttack",
    "PGDResult",
    "ASSIGNMENT_PGD_EPSILON",
    "ASSIGNMENT_PGD_STEP_SIZE",
    "ASSIGNMENT_PGD_STEPS",
    "TradesLoss",
    "kl_attack",
    "check_within_budget",
    "step_size_for",
]
