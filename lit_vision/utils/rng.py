"""Work that must not move the global random state a seeded run trains from.

`seed_everything` seeds torch's, NumPy's and Python's global generators once, and training then
draws from them (a DataLoader takes its workers' base seed and its shuffle order from torch's).
Anything that runs on some runs only — generating a stand-in, the pre-flight image check (it
iterates a DataLoader), building a cache — would shift every later draw and so give the same
seed a different result depending on what was already on disk. `keeps_global_rng` runs such
work with those states saved and restored.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def global_rng_kept() -> Iterator[None]:
    """Restore torch's CPU generator, NumPy's and Python's global states on exit. (CUDA
    generators are left alone: saving them would initialise CUDA in a data-preparation step.)"""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def keeps_global_rng(function: F) -> F:
    """Decorator form of `global_rng_kept`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with global_rng_kept():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
