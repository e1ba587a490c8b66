"""Fetching Places365-Standard (the 256×256 "small" images) from MIT, md5-verified, unpacked atomically.

Archives and checksums are those torchvision's `Places365` uses (base URL
http://data.csail.mit.edu/places/places365/):
    filelist_places365-standard.tar   the list files and categories_places365.txt
    train_256_places365standard.tar   data_256/   (1,803,460 images, ~24 GB)
    val_256.tar                       val_256/    (36,500 images)
    test_256.tar                      test_256/   (328,500 unlabelled images; only on request)
As for MiniPlaces (`lit_vision.data.download`), everything is staged in a hidden sibling folder
of `data_dir` and renamed into place after verification, so a cut or corrupted download never
looks like a dataset. The layout it leaves is `lit_vision.data.layout`'s "places365".
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from lit_vision.data.download import fetch, md5_of, refuse_foreign_folder
from lit_vision.data.layout import PLACES365_CATEGORIES, detect_layout
from lit_vision.data.listing import read_categories
from lit_vision.errors import LitVisionError
from lit_vision.utils.files import staging_folder

BASE_URL = "http://data.csail.mit.edu/places/places365"
NUM_CLASSES = 365
# name -> (archive, md5): the facts torchvision.datasets.Places365 records.
ARCHIVES = {
    "lists": ("filelist_places365-standard.tar", "35a0585fee1fa656440f3ab298f8479c"),
    "train": ("train_256_places365standard.tar", "53ca1c756c3d1e7809517cc47c5561c5"),
    "val": ("val_256.tar", "e27b17d8d44f4af9a78502beb927f808"),
    "test": ("test_256.tar", "f532f6ad7b582262a2ec8009075e186b"),
}


def places365_instructions(data_dir: Path) -> str:
    archives = ", ".join(ARCHIVES[name][0] for name in ("lists", "train", "val"))
    return (
        f"Set data.download: true (with data.layout: places365) to fetch it, or install it by hand: download "
        f"{archives} from {BASE_URL}/ and unpack them in {data_dir}, so that {data_dir}/{PLACES365_CATEGORIES}, "
        f"places365_train_standard.txt, places365_val.txt, data_256/ and val_256/ exist."
    )


def _fetch_verified(url: str, destination: Path, md5: str) -> None:
    fetch(url, destination, timeout=120.0)
    got = md5_of(destination)
    if got != md5:
        raise LitVisionError(f"The download of {url} is corrupt: its md5 is {got}, expected {md5}.")


def download_places365(
    data_dir: str | Path,
    splits: tuple[str, ...] = ("train", "val"),
    base_url: str | None = None,
    num_classes: int = NUM_CLASSES,
) -> Path:
    """Download, verify and unpack Places365-Standard's lists and the images of `splits` into
    `data_dir` (no-op when its lists and image folders are there). `base_url` defaults to the
    module's BASE_URL, read at call time."""
    base_url = (base_url or BASE_URL).rstrip("/")
    data_dir = Path(data_dir)
    unknown = [s for s in splits if s not in ("train", "val", "test")]
    if unknown:
        raise LitVisionError(f"Places365 splits are train, val and test; got {', '.join(unknown)}.")
    layout = detect_layout(data_dir, "places365")
    if all(p.exists() for p in layout.required()):
        return data_dir
    refuse_foreign_folder(data_dir, "Places365")
    with staging_folder(data_dir) as staging:
        staging.mkdir()
        for name in ("lists", *splits):
            archive, md5 = ARCHIVES[name]
            path = staging / archive
            try:
                _fetch_verified(f"{base_url}/{archive}", path, md5)
            except LitVisionError as error:
                raise LitVisionError(f"{error} {places365_instructions(data_dir)}") from None
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(staging, filter="data")  # refuses absolute paths, links out, devices
            except (tarfile.TarError, EOFError, OSError) as error:
                raise LitVisionError(f"The archive {base_url}/{archive} is damaged: {error}.") from None
            path.unlink()  # the unpacked copy is what is kept (halves the peak disk use)
        verify_places365(staging, splits, num_classes)
        if data_dir.exists():
            data_dir.rmdir()  # empty (checked above); rename needs the name free
        staging.rename(data_dir)
    return data_dir


def verify_places365(root: Path, splits: tuple[str, ...] = ("train", "val"), num_classes: int = NUM_CLASSES) -> None:
    """The categories name `num_classes` classes, the lists parse, every listed image of `splits` exists."""
    layout = detect_layout(root, "places365")
    read_categories(layout.categories, num_classes)
    for split in (s for s in splits if s != "test"):
        for relative, _ in layout.labelled(split, num_classes):
            if not (layout.images / relative).is_file():
                raise LitVisionError(f"{layout.list_file(split)} lists {relative}, which is not in {root}.")
    if "test" in splits and not (root / layout.unlabelled).is_dir():
        raise LitVisionError(f"The test archive left no {layout.unlabelled}/ folder in {root}.")
