"""`bench gpu`'s time budget: a section cut at the end of its share, and each end-to-end fit's
allowance from its section's time left.

A section gets its share of the budget (`SECTIONS` in `__init__.py`); one still running after
that share plus a short grace is cut by a timer signal (`hard_stop`), its finished rows kept.

A fit has two parts, timed apart: its start-up (data set-up, the copy to the device, cuDNN's
autotuning and, for a compiled model or step, the compilation) plus `SKIPPED_STEPS` warm-up
steps, reported on a row of its own; then the timed window, which alone gives images/s. Each
fit may spend up to its start-up allowance before the window opens (`--compile-reserve-s` for a
compiling fit), and the window lasts `--fit-seconds` or the fit's fair share of what is left
once every remaining fit's expected start-up is set aside, whichever is shorter. A fit that
starts up faster than expected leaves its unspent time to the fits after it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

# A section still running this long after its share ends is cut (at most this share of its time).
GRACE_S, GRACE_SHARE = 20.0, 0.1

# Expected start-up of an uncompiled fit: the loader path started in 1-3 s on an H200
# (workers, first batch, cache already built); the allowance is generous because the first
# cached fit also builds the cache.
STARTUP_EXPECTED_S, STARTUP_ALLOWANCE_S = 3.0, 30.0
# Expected compile + warm-up of a compiling fit: the H200 compiled SimpleNet's network alone in
# 15 s; `compile: step` compiles the backward and the optimiser update as well.
COMPILE_EXPECTED_S = 30.0
# A timed window shorter than this measures the first steps' jitter more than the speed.
MIN_TIMED_S = 2.0


@dataclass(frozen=True)
class Allowance:
    startup_s: float  # the most the fit may spend before its timed window opens
    timed_s: float  # the timed window

    @property
    def total_s(self) -> float:
        """The fit's cap (Lightning's `max_time`): start-up allowance + timed window."""
        return self.startup_s + self.timed_s


def expected_startup_s(compiles: bool) -> float:
    return COMPILE_EXPECTED_S if compiles else STARTUP_EXPECTED_S


def allowance(compiles: list[bool], index: int, left_s: float, fit_seconds: float, compile_allowance_s: float) -> Allowance | str:
    """The allowance of fit `index` of `compiles` (which fits compile), `left_s` seconds before
    its section's deadline; or why it cannot have one (the reason for a skipped row)."""
    remaining = compiles[index:]
    expected = sum(expected_startup_s(c) for c in remaining)
    timed = min(fit_seconds, (left_s - expected) / len(remaining))
    if timed < MIN_TIMED_S:
        return (
            f"section budget spent: {left_s:.0f} s left for {len(remaining)} fits, whose start-ups alone need "
            f"~{expected:.0f} s (raise --budget-s)"
        )
    startup = compile_allowance_s if compiles[index] else STARTUP_ALLOWANCE_S
    return Allowance(startup_s=max(expected_startup_s(compiles[index]), min(startup, left_s - timed)), timed_s=timed)


def section_stop(deadline: float, share_s: float, end: float) -> float:
    """When a section whose share (`share_s` seconds) ends at `deadline` is cut: a short grace
    after it, never past the whole run's `end`."""
    return min(deadline + min(GRACE_S, GRACE_SHARE * share_s), end)


class SectionTimeUp(BaseException):
    """Raised by the section timer. A BaseException, so that the rows' own `except Exception`
    (one failing row must not stop the others) cannot swallow it and run on."""


@contextlib.contextmanager
def hard_stop(seconds: float) -> Iterator[None]:
    """Raise SectionTimeUp in this (the main) thread after `seconds` of wall time, unless the
    block ended first. Python runs the handler between bytecodes, so a long C call (one
    training step) finishes first."""

    def time_up(signum, frame) -> None:
        raise SectionTimeUp()

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        # Windows, or a caller's thread (signals reach the main thread only): the sections' own deadlines only.
        yield
        return
    previous = signal.signal(signal.SIGALRM, time_up)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
