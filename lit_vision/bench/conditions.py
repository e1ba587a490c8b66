"""The conditions every benchmark runs under: the hardware line printed above its table, a given
number of torch threads, Lightning's info lines off (tables: `lit_vision.utils.tables`; timing:
`timing.py`)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform

import torch


def hardware_description() -> str:
    """One line naming the machine a figure was measured on (goes into README with it)."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU {platform.processor() or platform.machine()}"
    return (
        f"{device}; {os.cpu_count()} CPU cores visible, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads"
    )


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with `count` intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def quiet_lightning():
    """Lightning's info lines (GPU available, …) off while a benchmark runs its many fits, and
    the previous levels back afterwards (the caller's own logging is not ours to change)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
