"""Fetching the real MiniPlaces: the image archive from MIT and the list files from the
CSAILVision/miniplaces repository, verified and unpacked atomically.

Everything is staged in a hidden sibling folder of `data_dir` and renamed into place only
after verification, so an interrupted or failed download never looks like a dataset.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from lit_vision.data.listing import read_categories, read_labelled_list
from lit_vision.errors import LitVisionError
from lit_vision.utils.files import staging_folder

ARCHIVE_URL = "http://miniplaces.csail.mit.edu/data/data.tar.gz"
LISTS_URL = "https://raw.githubusercontent.com/CSAILVision/miniplaces/master/data"
LIST_FILES = ("train.txt", "val.txt", "categories.txt")
CHUNK = 1 << 20


def manual_instructions(data_dir: Path) -> str:
    return (
        f"To install it by hand: download {ARCHIVE_URL} and unpack it so that {data_dir}/images/train, "
        f"{data_dir}/images/val and {data_dir}/images/test exist, and put train.txt, val.txt and categories.txt "
        f"from {LISTS_URL}/ into {data_dir}/."
    )


def fetch(url: str, destination: Path, timeout: float = 60.0) -> None:
    """Stream `url` to `destination`, checking the byte count against Content-Length."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
            expected = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
    except (urllib.error.URLError, OSError) as error:
        raise LitVisionError(f"Could not download {url}: {error}.") from None
    if expected is not None and received != int(expected):
        raise LitVisionError(f"Download of {url} was cut short: got {received} of {expected} bytes.")


def refuse_foreign_folder(data_dir: Path, dataset: str) -> None:
    """A download never writes into a folder that holds something else (the user's files)."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise LitVisionError(f"{data_dir} exists, is not empty and is not a {dataset} folder: refusing to download into it.")


def _find_images_root(unpacked: Path) -> Path:
    """The folder holding train/, val/ and test/: `images/` at the top of the archive or one level down."""
    candidates = [unpacked / "images", *(p / "images" for p in unpacked.iterdir() if p.is_dir())]
    for candidate in candidates:
        if all((candidate / split).is_dir() for split in ("train", "val", "test")):
            return candidate
    raise LitVisionError("The downloaded archive has no images/ folder with train/, val/ and test/ inside.")


def verify_dataset(root: Path, num_classes: int) -> None:
    """The lists parse, the categories match the class count, and every listed image exists."""
    images = root / "images"
    read_categories(root / "categories.txt", num_classes)
    for list_name in ("train.txt", "val.txt"):
        for relative, _ in read_labelled_list(root / list_name, num_classes):
            if not (images / relative).is_file():
                raise LitVisionError(f"{root / list_name} lists {relative}, which is not in {images}.")
    if not any((images / "test").iterdir()):
        raise LitVisionError(f"{images / 'test'} is empty.")


def download_miniplaces(
    data_dir: str | Path,
    num_classes: int = 100,
    archive_url: str | None = None,
    lists_url: str | None = None,
) -> Path:
    """Download, verify and unpack MiniPlaces into `data_dir` (no-op when already there).
    The URLs default to the module's ARCHIVE_URL and LISTS_URL (read at call time)."""
    archive_url = archive_url or ARCHIVE_URL
    lists_url = lists_url or LISTS_URL
    data_dir = Path(data_dir)
    if (data_dir / "train.txt").is_file() and (data_dir / "images").is_dir():
        return data_dir
    refuse_foreign_folder(data_dir, "MiniPlaces")
    with staging_folder(data_dir) as staging:
        staging.mkdir()
        archive = staging / "data.tar.gz"
        try:
            fetch(archive_url, archive)
            for name in LIST_FILES:
                fetch(f"{lists_url}/{name}", staging / name)
        except LitVisionError as error:
            raise LitVisionError(f"{error} {manual_instructions(data_dir)}") from None
        unpacked = staging / "unpacked"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                # The "data" filter refuses absolute paths, links out of the tree and devices.
                tar.extractall(unpacked, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            raise LitVisionError(f"The archive from {archive_url} is damaged: {error}.") from None
        archive.unlink()
        _find_images_root(unpacked).rename(staging / "images")
        shutil.rmtree(unpacked)
        verify_dataset(staging, num_classes)
        if data_dir.exists():
            data_dir.rmdir()  # empty (checked above); rename needs the name free
        staging.rename(data_dir)
    return data_dir


# CIFAR-10 / CIFAR-100: the archives and md5s torchvision.datasets.CIFAR10 / CIFAR100 record
# (tests/test_cifar.py checks they agree).
CIFAR_ARCHIVES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}


def cifar_instructions(data_dir: Path, name: str) -> str:
    from lit_vision.data.cifar import VARIANTS

    url, md5 = CIFAR_ARCHIVES[name]
    return (
        f"To install it by hand: download {url} (md5 {md5}) and unpack it in {data_dir}, so that "
        f"{data_dir}/{VARIANTS[name].folder}/ exists (torchvision's download leaves the same folder)."
    )


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_cifar(data_dir: str | Path, name: str = "cifar10", url: str | None = None) -> Path:
    """Download CIFAR-10 or CIFAR-100 (`name`) into `data_dir`/<torchvision's folder>, md5-checked
    and unpacked atomically (no-op when its files are there). The folder may hold other things:
    only the dataset's own folder is written. `url` defaults to torchvision's (read at call time)."""
    from lit_vision.data.cifar import VARIANTS, base_folder, read_batches, read_class_names, required_files

    variant = VARIANTS[name]
    data_dir = Path(data_dir)
    if all(path.is_file() for path in required_files(data_dir, variant)):
        return data_dir
    target = base_folder(data_dir, variant)
    if target.exists() and any(target.iterdir()):
        raise LitVisionError(
            f"{target} exists but lacks some of {variant.name}'s files ({', '.join(p.name for p in required_files(data_dir, variant) if not p.is_file())}): "
            f"refusing to download over it. Remove it to download again. {cifar_instructions(data_dir, name)}"
        )
    official_url, md5 = CIFAR_ARCHIVES[name]
    url = url or official_url
    data_dir.mkdir(parents=True, exist_ok=True)
    with staging_folder(target) as staging:
        staging.mkdir()
        archive = staging / "archive.tar.gz"
        try:
            fetch(url, archive, timeout=120.0)
        except LitVisionError as error:
            raise LitVisionError(f"{error} {cifar_instructions(data_dir, name)}") from None
        got = md5_of(archive)
        if got != md5:
            raise LitVisionError(
                f"The download of {url} is corrupt: its md5 is {got}, expected {md5}. Nothing was kept; run again "
                f"to download it anew. {cifar_instructions(data_dir, name)}"
            )
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")  # refuses absolute paths, links out, devices
        except (tarfile.TarError, EOFError, OSError) as error:
            raise LitVisionError(f"The archive from {url} is damaged: {error}.") from None
        archive.unlink()
        unpacked = staging / variant.folder
        if not unpacked.is_dir():
            raise LitVisionError(f"The archive from {url} has no {variant.folder}/ folder.")
        for split in ("train", "test"):
            read_batches(staging, variant, split)  # every batch file parses, labels in range
        read_class_names(staging, variant)
        if target.exists():
            target.rmdir()  # empty (checked above); rename needs the name free
        unpacked.rename(target)
    return data_dir
