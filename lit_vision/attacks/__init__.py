"""Adversarial attacks (pure torch, no Lightning)."""

from lit_vision.attacks.pgd import SEED_EPSILON, SEED_NUM_STEPS, SEED_STEP_SIZE, PGDAttack, PGDResult

__all__ = ["PGDAttack", "PGDResult", "SEED_EPSILON", "SEED_STEP_SIZE", "SEED_NUM_STEPS"]
