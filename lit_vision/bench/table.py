"""What every benchmark shares: the hardware header printed above it, and running with a given
number of torch threads (tables: `lit_vision.utils.tables`)."""

from __future__ import annotations

import contextlib
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
