"""Run folders: every run owns its folders, and no run ever writes into another's.

    checkpoints/<experiment>/version_N/   last.ckpt, best-*.ckpt        (fit)
    logs/<experiment>/version_N/          TensorBoard events, config    (fit, the same N)
    logs/<experiment>/eval/version_M/     validate, test, predict runs

A run claims its version by creating the version folder with `os.mkdir`, which either
creates it or fails if it exists: two runs started at the same moment under one name get
different numbers, and a run never reuses a number another one holds. The claim scans both
roots, so a number taken in either is skipped.

Under DDP the process that launches the others claims the number and passes it on in the
environment (Lightning's launcher copies it to the processes it starts); processes started
by an outside launcher (torchrun, SLURM) take rank 0's folder from the broadcast that
ModelCheckpoint and SaveConfigCallback already do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lit_vision.errors import LitVisionError

LOG_ROOT = "logs"
CHECKPOINT_ROOT = "checkpoints"
EVAL_FOLDER = "eval"
# What the launching process hands to the processes Lightning's DDP launcher starts.
VERSION_ENV = "LIT_VISION_RUN_VERSION"
CKPT_PATH_ENV = "LIT_VISION_RESOLVED_CKPT_PATH"

_VERSION = re.compile(r"version_(\d+)")
# Version folders this process claimed, for `release_unused` after a run that failed early.
_claimed: list[Path] = []


def is_launching_process() -> bool:
    """Whether this process decides for the run: the one a user (or a single-process
    scheduler task) started, not a DDP rank that a launcher started with a rank > 0."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only  # here: `plot` needs no Lightning

    return rank_zero_only.rank == 0 and int(os.environ.get("NODE_RANK", 0) or 0) == 0


def versions_in(folder: Path) -> set[int]:
    """The N of every `version_N` folder in `folder`."""
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.fullmatch(p.name)) and p.is_dir()}


def claim_version(claim_in: Path, *also_taken_in: Path) -> int:
    """Create `claim_in/version_N` for the smallest N above every version in `claim_in` and
    `also_taken_in`, atomically; return N."""
    taken = versions_in(claim_in).union(*(versions_in(f) for f in also_taken_in))
    version = max(taken, default=-1) + 1
    try:
        claim_in.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LitVisionError(f"Cannot create the run folder {claim_in}: {error.strerror or error}.") from None
    while True:
        try:
            os.mkdir(claim_in / f"version_{version}")
            _claimed.append(claim_in / f"version_{version}")
            return version
        except FileExistsError:
            version += 1  # another run claimed it between our scan and our mkdir


def fit_version(experiment: str) -> int | None:
    """The version of this `fit`: claimed here by the launching process; handed down by it to
    the DDP processes it starts; None on other processes (they follow rank 0's broadcast)."""
    if not is_launching_process():
        handed_down = os.environ.get(VERSION_ENV)
        return int(handed_down) if handed_down else None
    version = claim_version(Path(CHECKPOINT_ROOT) / experiment, Path(LOG_ROOT) / experiment)
    os.environ[VERSION_ENV] = str(version)
    return version


def eval_version(experiment: str) -> int | None:
    """The log version of an evaluation run, under logs/<experiment>/eval/."""
    if not is_launching_process():
        handed_down = os.environ.get(VERSION_ENV)
        return int(handed_down) if handed_down else None
    version = claim_version(Path(LOG_ROOT) / experiment / EVAL_FOLDER)
    os.environ[VERSION_ENV] = str(version)
    return version


def checkpoint_folder(experiment: str, version: int | None) -> str:
    """Where a fit's checkpoints go; `None` (a follower rank) gets rank 0's folder by broadcast."""
    return f"{CHECKPOINT_ROOT}/{experiment}/version_{'pending' if version is None else version}"


def newest_checkpoint(experiment: str, keyword: str, seed: int | None = None) -> Path:
    """For `--ckpt_path last|best`: last.ckpt (or the best-*.ckpt) of the newest version of
    `experiment` that holds one — with `seed`, of the newest trained with `seed_everything: seed`
    (as its logs/<experiment>/version_N/config.yaml records; `--seeds` on validate / test)."""
    root = Path(CHECKPOINT_ROOT) / experiment
    pattern = "last.ckpt" if keyword == "last" else "best-*.ckpt"
    for version in sorted(versions_in(root), reverse=True):
        if seed is not None and trained_seed(Path(LOG_ROOT) / experiment / f"version_{version}") != seed:
            continue
        found = sorted((root / f"version_{version}").glob(pattern), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    which = f"any {root}/version_N/ folder" if seed is None else f"any {root}/version_N/ folder of a run trained with seed {seed}"
    raise LitVisionError(
        f"--ckpt_path {keyword}: no {pattern} in {which} (experiment {experiment!r}). "
        f"Train that run first (`lit-vision fit` with the same --config{'' if seed is None else ' and --seeds'}), "
        "check --experiment (the run was started with the same name), or pass the checkpoint's path."
    )


def trained_seed(log_folder: Path) -> int | None:
    """The `seed_everything` a fit run's folder records in its config.yaml (None: no such file or
    no integer seed). A plain line scan: the file is the CLI's own dump, one key per line."""
    try:
        lines = (log_folder / "config.yaml").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("seed_everything:"):
            value = line.split(":", 1)[1].strip()
            return int(value) if value.lstrip("-").isdigit() else None
    return None


def resolve_ckpt_keyword(experiment: str, keyword: str) -> Path:
    """`newest_checkpoint`, decided once by the launching process and handed down to the
    DDP processes it starts (a newer run finishing in between must not split them)."""
    if not is_launching_process() and os.environ.get(CKPT_PATH_ENV):
        return Path(os.environ[CKPT_PATH_ENV])
    path = newest_checkpoint(experiment, keyword)
    os.environ[CKPT_PATH_ENV] = str(path)
    return path


def release_unused() -> None:
    """Remove the version folders this process claimed that are still empty (a run that failed
    before writing anything), with their log twins; `os.rmdir` leaves a non-empty folder alone."""
    while _claimed:
        folder = _claimed.pop()
        twin = Path(LOG_ROOT) / folder.relative_to(CHECKPOINT_ROOT) if folder.is_relative_to(CHECKPOINT_ROOT) else None
        for path in (folder, twin):
            try:
                if path is not None:
                    path.rmdir()
            except OSError:
                pass


def forget_claims() -> None:
    """The run finished: its folders are its own, empty or not."""
    _claimed.clear()
