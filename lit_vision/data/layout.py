"""Where a dataset's list files and images are: MiniPlaces' layout and Places365-Standard's.

    MiniPlaces (data.layout: miniplaces)      Places365-Standard (data.layout: places365)
    categories.txt    /a/abbey 0              categories_places365.txt       /a/airfield 0
    train.txt         train/a/abbey/1.jpg 0   places365_train_standard.txt   /a/airfield/00000001.jpg 0
    val.txt           val/00000001.jpg 0      places365_val.txt              Places365_val_00000001.jpg 165
    images/train/ images/val/ images/test/    data_256/ val_256/ test_256/   (or the _large folders)

One list reader (`lit_vision.data.listing`) reads both families. Every image is named by a path
relative to one base folder (`images`): MiniPlaces' lists already are; a Places365 list's
paths get their split's folder in front (`data_256/a/airfield/00000001.jpg`), so the
pre-flight check, the decoded cache and the streaming converter handle both alike.
torchvision's `Places365` renames the training folder to `data_256_standard`: that name is
read too, so a root downloaded by torchvision works as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from lit_vision.data.listing import read_labelled_list
from lit_vision.errors import LitVisionError

LayoutName = Literal["auto", "miniplaces", "places365"]
LAYOUT_NAMES = get_args(LayoutName)

PLACES365_CATEGORIES = "categories_places365.txt"
PLACES365_LISTS = {"train": "places365_train_standard.txt", "val": "places365_val.txt"}
# Candidate image folders per split, preferred first (256-px "small" archives, then full size).
PLACES365_FOLDERS = {
    "train": ("data_256", "data_256_standard", "data_large", "data_large_standard"),
    "val": ("val_256", "val_large"),
    "test": ("test_256", "test_large"),
}


@dataclass(frozen=True)
class DataLayout:
    name: str
    root: Path
    images: Path  # every image path below is relative to this folder
    lists: dict[str, tuple[Path, str]]  # split -> (list file, folder prefix of its paths under `images`)
    categories: Path
    unlabelled: str  # the unlabelled test split's folder under `images`

    def list_file(self, split: str) -> Path:
        return self.lists[split][0]

    def labelled(self, split: str, num_classes: int) -> list[tuple[str, int]]:
        """(path relative to `images`, label) for every line of the split's list."""
        path, prefix = self.lists[split]
        return [(prefix + relative, label) for relative, label in read_labelled_list(path, num_classes)]

    def required(self) -> list[Path]:
        return [self.images / prefix if prefix else self.images for _, prefix in self.lists.values()] + [
            path for path, _ in self.lists.values()
        ]


def _first_existing(root: Path, names: tuple[str, ...]) -> str:
    return next((name for name in names if (root / name).is_dir()), names[0])


def detect_layout(root: Path, layout: str = "auto") -> DataLayout:
    """The layout of `root`: `layout`, or for "auto" Places365 when its files are there."""
    if layout not in LAYOUT_NAMES:
        raise LitVisionError(f"data.layout must be one of {', '.join(LAYOUT_NAMES)}; got {layout!r}.")
    if layout == "auto":
        places = (root / PLACES365_CATEGORIES).is_file() or (root / PLACES365_LISTS["train"]).is_file()
        layout = "places365" if places else "miniplaces"
    if layout == "miniplaces":
        images = root / "images"
        return DataLayout("miniplaces", root, images, {"train": (root / "train.txt", ""), "val": (root / "val.txt", "")},
                          root / "categories.txt", "test")  # fmt: skip
    lists = {split: (root / name, _first_existing(root, PLACES365_FOLDERS[split]) + "/") for split, name in PLACES365_LISTS.items()}
    return DataLayout("places365", root, root, lists, root / PLACES365_CATEGORIES, _first_existing(root, PLACES365_FOLDERS["test"]))
