"""Pre-flight check: every listed image is decoded once before the first step, so a missing,
empty or undecodable file is named before training instead of stopping it when a worker
reaches it (an hour into an epoch of the real 100k images).

The check decodes in parallel on the DataModule's workers and names every bad file in one
message. It runs once per dataset: a stamp file named after a hash of the list (each
listed path with its size and modification time) records a clean pass, so a later run over
the same, unchanged files skips it; an image replaced in place changes the hash. Cost per
10k 128-px JPEGs: see docs/reliability.md (`python -m lit_vision.bench preflight`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from lit_vision.data.dataset import decode_rgb, unreadable_reason
from lit_vision.errors import LitVisionError
from lit_vision.signals import leave_stops_to_the_main_process
from lit_vision.utils.files import atomic_write_text

FORMAT_VERSION = 1
NAMED_IN_MESSAGE = 50  # more bad files than this go to a list file the message names


class _Readability(Dataset):
    """Item i: "" if image i decodes, else why it does not."""

    def __init__(self, images_dir: Path, relative_paths: list[str]) -> None:
        self.images_dir, self.relative_paths = images_dir, relative_paths

    def __len__(self) -> int:
        return len(self.relative_paths)

    def __getitem__(self, index: int) -> str:
        path = self.images_dir / self.relative_paths[index]
        try:
            decode_rgb(path)
        except Exception as error:  # each decoder has its own exception types
            return unreadable_reason(path, error)
        return ""


def dataset_stamp(images_dir: Path, relative_paths: list[str]) -> str:
    """A hash of the listed files as they are now: path, size and modification time of each."""
    digest = hashlib.sha1(f"{images_dir.resolve()}:v{FORMAT_VERSION}".encode())
    for relative in relative_paths:
        try:
            info = os.stat(images_dir / relative)
            digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{relative}\0missing\n".encode())
    return digest.hexdigest()[:16]


def find_unreadable(images_dir: Path, relative_paths: list[str], num_workers: int = 0) -> list[tuple[str, str]]:
    """(relative path, reason) for every listed image that does not decode."""
    loader = DataLoader(
        _Readability(images_dir, relative_paths),
        batch_size=64,
        num_workers=num_workers,
        collate_fn=list,
        worker_init_fn=leave_stops_to_the_main_process,
    )
    reasons = [reason for batch in loader for reason in batch]
    return [(relative, reason) for relative, reason in zip(relative_paths, reasons, strict=True) if reason]


def verify_images(images_dir: Path, lists: dict[str, list[str]], stamp_dir: Path, num_workers: int = 0) -> None:
    """Raise one LitVisionError naming every unreadable image of `lists` (list file -> the
    relative paths it lists), skipping a list whose stamp in `stamp_dir` says these very
    files passed before."""
    bad: list[str] = []
    passed: list[tuple[Path, str, int]] = []
    for listed_in, relative_paths in lists.items():
        stamp = stamp_dir / f"verified-{Path(listed_in).stem}-{dataset_stamp(images_dir, relative_paths)}"
        if stamp.is_file():
            continue
        found = find_unreadable(images_dir, relative_paths, num_workers)
        bad += [f"{images_dir / relative} (listed in {listed_in}): {reason}" for relative, reason in found]
        if not found:
            passed.append((stamp, listed_in, len(relative_paths)))
    for stamp, listed_in, count in passed:
        try:
            atomic_write_text(stamp, f"{count} images listed in {listed_in} decoded without error.\n")
        except (OSError, LitVisionError) as error:
            rank_zero_warn(f"Could not record the image check in {stamp} ({error}): it will run again next time.")
    if not bad:
        return
    named = "; ".join(bad[:NAMED_IN_MESSAGE])
    if len(bad) > NAMED_IN_MESSAGE:
        full_list = stamp_dir / "unreadable-images.txt"
        atomic_write_text(full_list, "\n".join(bad) + "\n")
        named += f"; and {len(bad) - NAMED_IN_MESSAGE} more (all {len(bad)} in {full_list})"
    total = sum(len(paths) for paths in lists.values())
    raise LitVisionError(
        f"{len(bad)} of the {total} listed images cannot be read: {named}. Replace or delete them (and their "
        "lines in the list) and run again. This check runs before training so that a bad file does not stop it "
        "mid-epoch; data.verify: false skips it."
    )
