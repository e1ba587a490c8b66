"""The study's storage and pruner, built the same way in the study's process and in each trial's
run (which reaches the study through the storage, see `pruning`).

- Storage: Optuna's RDBStorage on any SQLAlchemy URL. SQLite (the default, a file in the
  experiment's folder) gets a long lock timeout: the study's process, its trial's run and other
  processes sharing the file all write to it, and SQLite's 5 s default is short on a busy machine.
  The heartbeat lets a restarted study find a trial whose process died (SIGKILL, a lost machine)
  and mark it failed; `RetryHeartbeatStaleTrialCallback` then queues its parameters again.
- Pruner: Optuna's median pruner (or Hyperband); a pruner is not saved in the storage, so both
  sides build it from the same name and settings.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager

from lit_vision.errors import LitVisionError

PRUNERS = ("median", "hyperband", "none")
SQLITE_LOCK_TIMEOUT_S = 120
TABLE_RACE_RETRIES = 5


@contextmanager
def quiet_experimental():
    """Optuna marks its heartbeat and retry features experimental (a warning on each use); they
    are the documented way to recover a study from a dead process, which is why they are used."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def make_storage(url: str, heartbeat_s: int | None = None):
    """RDBStorage for `url`; with `heartbeat_s`, a process running a trial beats every
    `heartbeat_s` seconds and a trial silent for 3 beats counts as dead (failed, then retried)."""
    import optuna
    import sqlalchemy.exc
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}} if url.startswith("sqlite") else {}
    for attempt in range(TABLE_RACE_RETRIES + 1):
        try:
            with quiet_experimental():
                heartbeat = {}
                if heartbeat_s:
                    heartbeat = {
                        "heartbeat_interval": heartbeat_s,
                        "grace_period": 3 * heartbeat_s,
                        "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=2),
                    }
                return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except sqlalchemy.exc.SQLAlchemyError as error:
            # Processes started together on a new database race to create its tables and stamp
            # their schema version (not atomic across processes in Optuna): the loser finds
            # them made ("already exists", or a duplicate version row); it tries again.
            raced = "already exists" in str(error) or isinstance(error, sqlalchemy.exc.IntegrityError)
            if raced and attempt < TABLE_RACE_RETRIES:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise LitVisionError(f"--storage {url}: cannot open the study's database ({str(error).splitlines()[0]}).") from None
        except (optuna.exceptions.StorageInternalError, ImportError, ValueError) as error:
            # ValueError: a malformed URL; ImportError: no driver for that database (psycopg2, ...).
            raise LitVisionError(
                f"--storage {url}: cannot open the study's database ({error}). Expected a SQLAlchemy URL such as "
                "sqlite:///path/study.db or postgresql://user:password@host/db, with its driver installed."
            ) from None


def make_pruner(name: str = "median", startup_trials: int = 5, warmup_epochs: int = 0):
    """Optuna's pruner by name: `median` (a trial worse than the median of earlier trials at the
    same epoch stops, once `startup_trials` trials finished and after `warmup_epochs` epochs),
    `hyperband`, or `none`."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup_epochs))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise LitVisionError(f"--pruner {name}: expected one of {', '.join(PRUNERS)}.")
