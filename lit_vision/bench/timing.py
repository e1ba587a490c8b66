"""How the benchmarks time a call: device-synchronised wall clock (or a given clock), one call,
a run of calls under a deadline, or several functions alternated call by call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA runs asynchronously; a CPU needs no wait)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_call_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one device-synchronised call: a first call, which compiles or autotunes."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, steps: int, deadline: float) -> tuple[float, int]:
    """Seconds per call of `fn` over up to `steps` timed calls after `warmup` untimed ones,
    fewer (at least one) once `deadline` (time.monotonic) has passed. Device-synchronised."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start, done = time.perf_counter(), 0
    while done < steps:
        fn()
        done += 1
        if time.monotonic() > deadline:
            break
    synchronize(device)
    return (time.perf_counter() - start) / done, done


def median_seconds(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each function (wall clock by default, device-synchronised),
    alternated call by call so that all see the same machine state."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = clock()
            fn()
            synchronize(device)
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}
