"""Writing files and folders so that a reader (or a crash) never sees half of one.

A file is written to a hidden sibling, flushed and fsync'ed, then renamed over its target
with `os.replace`; a folder is built under a hidden sibling name and renamed into place by
the caller. A process killed at any moment leaves the previous version or the new one, never
a truncated one, and a full disk leaves the previous version untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from lit_vision.errors import LitVisionError


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(handle)` on a temporary sibling of `path`, then rename it over `path`.

    The temporary name is hidden and ends in `.tmp`, so globs for `*.ckpt` or `*.txt` never
    pick it up. Raises `LitVisionError` naming `path` when the disk is full."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp"
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LitVisionError(
                f"No space left on the device while writing {path}: nothing was replaced, the previous "
                f"file there (if any) is intact. Free some space (or point the output elsewhere) and run again."
            ) from None
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`Path(path).write_text(text)`, atomically (see `atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


@contextlib.contextmanager
def staging_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh hidden sibling folder of `target` to build into; the caller renames it onto
    `target` when complete. Whatever is left of it afterwards (a failure, or a rename that
    lost a race) is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        yield staging
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.exists():
            staging.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` survive a power loss, not only a kill."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without folder descriptors
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
