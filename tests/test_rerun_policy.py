"""The suite's rerun policy (pyproject.toml: reruns, only_rerun): a test failing the way gloo's
transport aborts a CPU DDP worker is run once more; any other failure is final, so a real bug
is never retried into a pass."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

CASES = '''
from pathlib import Path

from torch.multiprocessing import ProcessExitedException


def test_worker_aborted_once(tmp_path_factory):
    seen = Path(__file__).with_name("aborted_once")
    if not seen.exists():
        seen.touch()
        raise ProcessExitedException("process 1 terminated with signal SIGABRT", error_index=1,
                                     error_pid=0, exit_code=-6, signal_name="SIGABRT")


def test_a_real_bug():
    assert 1 + 1 == 3, "wrong sum"
'''


def test_only_a_gloo_abort_is_run_again(tmp_path):
    (tmp_path / "test_cases.py").write_text(textwrap.dedent(CASES))
    command = [sys.executable, "-m", "pytest", "-c", str(PYPROJECT), "--rootdir", str(tmp_path),
               "-p", "no:cacheprovider", str(tmp_path / "test_cases.py")]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 failed, 1 passed, 1 rerun" in summary, result.stdout[-3000:]
    assert "RERUN test_cases.py::test_worker_aborted_once" in result.stdout
    assert "FAILED test_cases.py::test_a_real_bug" in result.stdout
    assert "RERUN test_cases.py::test_a_real_bug" not in result.stdout
