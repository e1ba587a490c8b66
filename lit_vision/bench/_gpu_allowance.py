"""`bench gpu`: each end-to-end fit's time allowance, from its section's time left.

A fit has two parts, timed apart: its start-up (data set-up, the copy to the device, cuDNN's
autotuning and, for a compiled model or step, the compilation) plus `SKIPPED_STEPS` warm-up
steps, reported on a row of its own; then the timed window, which alone gives images/s. Each
fit may spend up to its start-up allowance before the window opens (`--compile-reserve-s` for a
compiling fit), and the window lasts `--fit-seconds` or the fit's fair share of what is left
once every remaining fit's expected start-up is set aside, whichever is shorter. A fit that
starts up faster than expected leaves its unspent time to the fits after it.
"""

from __future__ import annotations

from dataclasses import dataclass

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
