"""One ordinary `lit-vision` run (fit / validate / test) started as a child process, the way a
user would type it, plus callbacks added through `--trainer.callbacks+=`.

Why a child process and not a call into the CLI in this process:
- isolation: every run starts from a fresh interpreter, so no global state (seeds, the
  claimed version folder and its environment variables, warning filters, signal handlers, torch
  threads, memory) leaks from one trial or seed into the next; what a trial does is exactly what
  `lit-vision fit` with the same flags does;
- seeds: `--seed_everything S` on a fresh process is the whole story of a run's randomness;
- DDP: `--trainer.strategy ddp` relaunches the *command line* for each rank; in-process, that
  command line would be `lit-vision tune`, not the trial's fit;
- signals: the child runs in its own session, so a Ctrl-C at the terminal reaches only this
  process, which forwards exactly one SIGINT (or SIGTERM) to the child: the run saves last.ckpt
  and exits 130 / 143 as any fit does. If this process is SIGKILLed, Linux sends the child
  SIGTERM (PR_SET_PDEATHSIG), so no orphaned run keeps training.
The cost is an interpreter start per run (several seconds), small beside a training run.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from lit_vision.studies.record import RunRecord

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def callback_flag(class_path: str, **init_args) -> str:
    """`--trainer.callbacks+=` one callback, as JSON (appends to the recipe's own callbacks)."""
    return "--trainer.callbacks+=" + json.dumps({"class_path": class_path, "init_args": init_args})


@dataclass
class RunResult:
    exit_code: int
    record: dict | None  # RunRecord's JSON; None when the run ended before writing it
    signal: int | None  # the signal this process received and forwarded, if any

    @property
    def stopped_by_signal(self) -> bool:
        return self.signal is not None or self.exit_code in (128 + signal.SIGINT, 128 + signal.SIGTERM)


class _Forwarder:
    """While a child runs: SIGINT / SIGTERM to this process go to the child, once each."""

    def __init__(self, child: subprocess.Popen) -> None:
        self.child = child
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Forwarder:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _forward(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum
            self.child.send_signal(signum)


def run(subcommand: str, args: list[str], extra_flags: list[str] = (), env: dict[str, str] | None = None) -> RunResult:
    """Run `lit-vision SUBCOMMAND *args *extra_flags` in a child process with a `RunRecord`;
    its output goes to this process's stdout / stderr as it comes."""
    with tempfile.TemporaryDirectory(prefix="lit-vision-run-") as scratch:
        record_path = Path(scratch) / "record.json"
        command = [
            sys.executable, "-m", "lit_vision", subcommand, *args, *extra_flags,
            callback_flag(f"{RunRecord.__module__}.{RunRecord.__name__}", path=str(record_path)),
        ]  # fmt: skip
        in_main_thread = threading.current_thread() is threading.main_thread()  # signal.signal needs it
        child = subprocess.Popen(
            command, start_new_session=True, preexec_fn=_die_with_parent, env={**os.environ, **(env or {})}
        )
        forwarder = _Forwarder(child)
        if in_main_thread:
            with forwarder:
                exit_code = _wait(child)
        else:
            exit_code = _wait(child)
        record = json.loads(record_path.read_text()) if record_path.exists() else None
    return RunResult(exit_code, record, forwarder.received)


def _wait(child: subprocess.Popen) -> int:
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # a handler outside ours raised: the child still has to finish
            continue
