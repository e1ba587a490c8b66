"""Stop requests by signal: SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C).

During training the handlers only record the request, so the step in progress finishes and
the trainer stops at the next step boundary with a resumable last.ckpt (see
`lit_vision.callbacks.preemption`); a second Ctrl-C stops at once. Outside training a
signal stops the command at once. Either way the process exits with 128 + the signal's
number, as a shell reports a process killed by it: 143 for SIGTERM, 130 for SIGINT, so
schedulers and `fit ... && test ...` chains never take a stopped run for a finished one.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The process that installed the handlers. DataLoader workers forked from it inherit them and
# ignore the signal there: a scheduler signals the whole process group, and a worker that
# died of it would turn a clean stop into "worker exited unexpectedly"; the main process
# shuts its workers down itself.
_owner_pid: int | None = None


def _in_worker() -> bool:
    return _owner_pid is not None and os.getpid() != _owner_pid


def install(handler) -> dict[int, object]:
    """Set `handler` for SIGTERM and SIGINT (main thread only); return the previous handlers."""
    global _owner_pid
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set handlers; such a run keeps the defaults
    _owner_pid = os.getpid()
    return {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}


def restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


class Stopped(BaseException):
    """The run was stopped by a signal. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way up takes it for an error and carries on."""

    def __init__(self, signum: int, global_step: int | None = None, saved: str | None = None) -> None:
        self.signum, self.global_step, self.saved = int(signum), global_step, saved
        super().__init__(self.describe())

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def describe(self) -> str:
        name = signal.Signals(self.signum).name
        if self.global_step is None:
            return f"stopped by {name}; nothing was saved."
        if self.saved is None:
            return f"stopped by {name} at global step {self.global_step}; no last.ckpt is configured, nothing saved."
        return (
            f"stopped by {name} at global step {self.global_step}; saved {self.saved}. "
            "Resume with the same command and --ckpt_path last."
        )


class StopRequests:
    """Handlers that record the first SIGTERM/SIGINT instead of stopping mid-step.

    `requested` holds the signal's number until `restore()`. A second SIGINT while one is
    pending raises `Stopped` at once: a user pressing Ctrl-C twice wants out now."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        self._previous = install(self._record)

    def restore(self) -> None:
        restore(self._previous)
        self._previous = {}

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if _in_worker():
            return
        if self.requested == signal.SIGINT and signum == signal.SIGINT:
            raise Stopped(signum)
        if self.requested is None:
            self.requested = signum


def leave_stops_to_the_main_process(worker_id: int) -> None:
    """A DataLoader `worker_init_fn`: the worker ignores SIGTERM and SIGINT. A scheduler (or a
    terminal's Ctrl-C) signals the whole process group; torch's workers die of a SIGTERM from
    anyone but their parent, and the main process then fails mid-step with "DataLoader worker
    is killed by signal" before it can save. The main process stops its workers itself, and
    they exit on their own when it dies."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _kill_leftover_workers() -> None:
    """At interpreter exit, multiprocessing terminates daemonic children with SIGTERM and then
    waits for them; workers that ignore SIGTERM (above) would keep the process alive forever
    when a DataLoader was not shut down before exit (a persistent-workers loader still
    referenced at exit, as in a pytest run). SIGKILL them first: they hold nothing to save."""
    leftover = [child for child in multiprocessing.active_children() if child.daemon]
    if not leftover:
        return
    # torch's SIGCHLD handler would report each killed worker as a failure: nothing is running now.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in leftover:
        child.kill()


# atexit runs its handlers last-registered first, so this runs before multiprocessing's own.
atexit.register(_kill_leftover_workers)


def stop_at_once(signum: int, frame: FrameType | None) -> None:
    """A handler for outside training: nothing to save, stop now (exit 128 + signum)."""
    if not _in_worker():
        raise Stopped(signum)
