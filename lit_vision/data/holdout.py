"""A seeded, stratified hold-out: which training images become the validation split when a
dataset has no validation split of its own (`data.val_fraction`).

Per class, a fixed share of its images is drawn by a generator keyed by (`seed`, class), so
the split depends only on the labels, the fraction and the seed: never on the run's seed,
the rank, the worker count or a resume. Every class with two or more images gives at least
one to validation and keeps at least one for training, so a per-class report sees every class
a small dataset has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from lit_vision.errors import LitVisionError
from lit_vision.utils.generators import keyed_generator

_HOLDOUT_STREAM = 0x5E1D  # keeps this draw apart from the run's other keyed streams


def check_fraction(fraction: float) -> None:
    if not 0 <= fraction < 1:
        raise LitVisionError(f"data.val_fraction must lie in [0, 1) (the share of training images held out), got {fraction}.")


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(training indices, held-out indices) into `labels`, each in ascending order."""
    check_fraction(fraction)
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    held: list[int] = []
    for label, indices in sorted(by_class.items()):
        if fraction == 0 or len(indices) < 2:
            continue
        count = min(max(1, round(fraction * len(indices))), len(indices) - 1)
        order = torch.randperm(len(indices), generator=keyed_generator("cpu", _HOLDOUT_STREAM, seed, label))
        held += [indices[i] for i in order[:count].tolist()]
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)
