"""The hardware header printed above every benchmark (tables: `lit_vision.utils.tables`)."""

from __future__ import annotations

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
