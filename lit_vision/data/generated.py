"""Folders this package generates (the stand-in, the digits): written once, reused after.

A generated folder holds a marker file with the settings it was written with. Asking again
with the same settings reuses it; other settings, or a folder without the marker (something
the user put there), are refused without touching anything. A new folder is built in a
hidden sibling and renamed into place, so an interrupted run never leaves a half dataset and
concurrent writers race harmlessly (identical settings give identical folders).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lit_vision.errors import LitVisionError
from lit_vision.utils.files import staging_folder


def reuse_generated(root: Path, marker: str, settings: dict, what: str, hint: str) -> bool:
    """True when `root` already holds `what` generated with `settings`; False when `root` does
    not exist or is an empty folder (made for it: the finished one is renamed onto it). Anything
    else is an error naming the folder, what it holds and `hint`."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return False
    marker_path = root / marker
    if not marker_path.is_file():
        raise LitVisionError(f"{root} exists but is not a generated {what} (no {marker}): refusing to write into it. {hint}")
    existing = json.loads(marker_path.read_text())
    if existing != settings:
        raise LitVisionError(
            f"The {what} at {root} was generated with {existing}, not the requested {settings}. "
            f"Delete it or choose another folder. {hint}"
        )
    return True


@contextlib.contextmanager
def generated_folder(root: Path, marker: str, settings: dict) -> Iterator[Path]:
    """Yield a staging folder to write into; on success, record `settings` in its marker and
    rename it onto `root` (if another process got there first with the same settings, keep theirs)."""
    with staging_folder(root) as staging:
        yield staging
        (staging / marker).write_text(json.dumps(settings))
        try:
            os.rename(staging, root)
        except OSError:
            if not (root / marker).is_file():
                raise
