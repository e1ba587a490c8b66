"""Loader workers ignore SIGTERM/SIGINT (so a group signal cannot kill them mid-step): a process
that exits with such a persistent-workers loader still alive must still exit, promptly and
without a traceback (multiprocessing would otherwise wait forever for workers it asked to stop
with SIGTERM)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from lit_vision.signals import leave_stops_to_the_main_process

    loader = DataLoader(TensorDataset(torch.arange(100)), batch_size=10, num_workers=2, persistent_workers=True,
                        worker_init_fn=leave_stops_to_the_main_process)
    ALIVE_AT_EXIT = iter(loader)
    next(ALIVE_AT_EXIT)
    print("exiting", flush=True)
    """
)


@pytest.mark.slow
def test_a_process_with_live_signal_ignoring_workers_still_exits():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout and "Traceback" not in result.stderr
