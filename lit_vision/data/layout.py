"""Where a dataset's labels and images are: the layouts `data.layout` names.

    MiniPlaces (miniplaces)             Places365-Standard (places365)
    categories.txt    /a/abbey 0        categories_places365.txt       /a/airfield 0
    train.txt  train/a/abbey/1.jpg 0    places365_train_standard.txt   /a/airfield/00000001.jpg 0
    val.txt    val/00000001.jpg 0       places365_val.txt              Places365_val_00000001.jpg 165
    images/train/ images/val/ images/test/    data_256/ val_256/ test_256/ (or the _large folders)

    class per folder (image_folder)     CIFAR-10 / CIFAR-100 (cifar10 / cifar100)
    train/<class>/<images>              cifar-10-batches-py/ or cifar-100-python/ (torchvision's
    val/<class>/ (optional), test/      pickled batches; `lit_vision.data.cifar`)
    (`lit_vision.data.class_folders`)

`auto` picks, in this order: places365 when its list files are there; miniplaces when
train.txt or images/ is; cifar10 / cifar100 when torchvision's CIFAR folder is; image_folder
when train/ has sub-folders; otherwise none fits and the error names what each layout needs
(data.download with auto fetches MiniPlaces).

One list reader (`lit_vision.data.listing`) reads both list-file families. Every image is named
by a path relative to one base folder (`images`): MiniPlaces' lists already are; a Places365
list's paths get their split's folder in front (`data_256/a/airfield/00000001.jpg`); a
class-per-folder image is named from the dataset's root (`train/cat/1.jpg`). So the pre-flight
check, the decoded cache and the streaming converter handle them alike. torchvision's
`Places365` renames the training folder to `data_256_standard`: that name is read too, so a
root downloaded by torchvision works as it is. CIFAR's images live in memory (`in_memory`): its
"paths" (`train/17`, `test/3`) only name an image's position.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal, get_args

from lit_vision.data.cifar import VARIANTS, ArrayImages, CifarVariant, base_folder, read_batches, read_class_names
from lit_vision.data.class_folders import check_class_count, find_classes, has_class_folders, list_split
from lit_vision.data.holdout import check_fraction, stratified_holdout
from lit_vision.data.listing import read_categories, read_labelled_list
from lit_vision.errors import LitVisionError

LayoutName = Literal["auto", "miniplaces", "places365", "image_folder", "cifar10", "cifar100"]
LAYOUT_NAMES = get_args(LayoutName)
# Layouts that read a share of train as validation when there is no validation split.
HOLDOUT_LAYOUTS = ("image_folder", "cifar10", "cifar100")
DEFAULT_FOLDER_VAL_FRACTION = 0.1

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
    in_memory: ClassVar[bool] = False  # images are held as arrays, not files (CIFAR)

    def list_file(self, split: str) -> Path:
        """Where `split`'s labels come from (named in messages; the cache key of list-file layouts)."""
        return self.lists[split][0]

    def labelled(self, split: str, num_classes: int) -> list[tuple[str, int]]:
        """(path relative to `images`, label) for every image of the split."""
        path, prefix = self.lists[split]
        return [(prefix + relative, label) for relative, label in read_labelled_list(path, num_classes)]

    def required(self) -> list[Path]:
        """What must exist for this layout to be read (each path once)."""
        paths = [self.images / prefix if prefix else self.images for _, prefix in self.lists.values()]
        return list(dict.fromkeys(paths + [path for path, _ in self.lists.values()]))

    def class_names(self, num_classes: int) -> list[str]:
        """Names in label order; a class count that disagrees with `num_classes` is an error."""
        return read_categories(self.categories, num_classes)

    def class_count(self) -> int | None:
        """The classes the data itself names (None where it names none)."""
        if not self.categories.is_file():
            return None
        return sum(1 for line in self.categories.read_text(encoding="utf-8-sig").splitlines() if line.strip())

    def cache_key(self, split: str, num_classes: int) -> str | None:
        """Text that changes whenever `split`'s images or labels do, for layouts without a list
        file of their own (None: the list file is the key)."""
        return None


@dataclass(frozen=True)
class ImageFolderLayout(DataLayout):
    """train/<class>/ (+ val/<class>/ or a held-out share of train, + unlabelled test/)."""

    val_fraction: float = DEFAULT_FOLDER_VAL_FRACTION
    val_seed: int = 0

    @cached_property
    def classes(self) -> list[str]:
        return find_classes(self.root / "train")

    @cached_property
    def _splits(self) -> dict[str, list[tuple[str, int]]]:
        train = list_split(self.root, "train", self.classes, every_class=True)
        if (self.root / "val").is_dir():
            return {"train": train, "val": list_split(self.root, "val", self.classes, every_class=False)}
        if self.val_fraction == 0:
            raise LitVisionError(
                f"{self.root} has no val/ folder and data.val_fraction is 0: nothing to validate on. Set "
                f"data.val_fraction (such as {DEFAULT_FOLDER_VAL_FRACTION}) to hold out a share of train/, or add "
                f"{self.root}/val/<class>/ folders."
            )
        kept, held = stratified_holdout([label for _, label in train], self.val_fraction, self.val_seed)
        return {"train": [train[i] for i in kept], "val": [train[i] for i in held]}

    def labelled(self, split: str, num_classes: int) -> list[tuple[str, int]]:
        check_class_count(self.root / "train", self.classes, num_classes)
        return self._splits[split]

    def required(self) -> list[Path]:
        return [self.root / "train"]

    def class_names(self, num_classes: int) -> list[str]:
        check_class_count(self.root / "train", self.classes, num_classes)
        return list(self.classes)

    def class_count(self) -> int | None:
        return len(self.classes)

    def cache_key(self, split: str, num_classes: int) -> str | None:
        return "".join(f"{path} {label}\n" for path, label in self.labelled(split, num_classes))


@dataclass(frozen=True)
class CifarLayout(DataLayout):
    """torchvision's CIFAR-10 / CIFAR-100 folder, read into memory (`lit_vision.data.cifar`)."""

    variant: CifarVariant | None = None
    val_fraction: float = 0.0
    val_seed: int = 0
    in_memory: ClassVar[bool] = True

    @cached_property
    def _arrays(self) -> dict:
        return {split: read_batches(self.root, self.variant, split) for split in ("train", "test")}

    @cached_property
    def _holdout(self) -> tuple[list[int], list[int]]:
        return stratified_holdout(self._arrays["train"][1], self.val_fraction, self.val_seed)

    def _check_count(self, num_classes: int) -> None:
        if num_classes != self.variant.num_classes:
            raise LitVisionError(
                f"data.layout {self.name} has {self.variant.num_classes} classes but data.num_classes is {num_classes}: "
                f"set data.num_classes: {self.variant.num_classes} (the model's head follows it)."
            )

    def _indices(self, split: str) -> tuple[str, list[int]]:
        """(source: "train" or "test", indices into it) of `split`."""
        if split == "train":
            return "train", self._holdout[0]
        if split == "val" and self.val_fraction > 0:
            return "train", self._holdout[1]
        return "test", list(range(len(self._arrays["test"][1])))

    def labelled(self, split: str, num_classes: int) -> list[tuple[str, int]]:
        self._check_count(num_classes)
        source, indices = self._indices(split)
        labels = self._arrays[source][1]
        return [(f"{source}/{i}", labels[i]) for i in indices]

    def dataset(self, split: str, transform=None, with_labels: bool = True) -> ArrayImages:
        source, indices = self._indices(split)
        images, labels = self._arrays[source]
        if len(indices) != len(labels):
            images = images[indices]
        labels = [labels[i] for i in indices] if with_labels else None
        return ArrayImages(images, labels, transform)

    def required(self) -> list[Path]:
        base = self.images
        return [base / name for name in (*self.variant.train_files, self.variant.test_file, self.variant.meta_file)]

    def class_names(self, num_classes: int) -> list[str]:
        self._check_count(num_classes)
        return read_class_names(self.root, self.variant)

    def class_count(self) -> int | None:
        return self.variant.num_classes

    def cache_key(self, split: str, num_classes: int) -> str | None:
        self._check_count(num_classes)
        files = "".join(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}\n" for p in self.required())
        return f"{self.name} {split} val_fraction={self.val_fraction} val_seed={self.val_seed}\n{files}"


def _first_existing(root: Path, names: tuple[str, ...]) -> str:
    return next((name for name in names if (root / name).is_dir()), names[0])


def _auto(root: Path) -> str | None:
    """The layout `root` holds, by the signs the module docstring lists (None: none of them)."""
    if (root / PLACES365_CATEGORIES).is_file() or (root / PLACES365_LISTS["train"]).is_file():
        return "places365"
    if (root / "train.txt").is_file() or (root / "images").is_dir():
        return "miniplaces"
    cifar = [name for name, variant in VARIANTS.items() if base_folder(root, variant).is_dir()]
    if len(cifar) > 1:
        raise LitVisionError(
            f"data.data_dir {root} holds both CIFAR-10 and CIFAR-100 (torchvision's root): set data.layout to "
            "cifar10 or cifar100."
        )
    if cifar:
        return cifar[0]
    if has_class_folders(root / "train"):
        return "image_folder"
    return None


def no_layout_message(root: Path) -> str:
    """What each layout needs, for a folder that holds none of them."""
    what = "is missing" if not root.exists() else "holds none of the dataset layouts this package reads"
    return (
        f"data.data_dir {root} {what}. Looked for: class per folder ({root}/train/<class>/ image folders; "
        f"val/<class>/ and test/ optional), CIFAR-10 / CIFAR-100 as torchvision unpacks them "
        f"({root}/cifar-10-batches-py/ or {root}/cifar-100-python/), MiniPlaces ({root}/images/{{train,val,test}}/ "
        f"with train.txt and val.txt) and Places365-Standard ({root}/{PLACES365_CATEGORIES} with its list files). "
        "Point data.data_dir at such a folder, set data.download: true with data.layout: miniplaces, places365, "
        "cifar10 or cifar100 to fetch one, or data.standin: true to generate a small stand-in."
    )


def detect_layout(root: Path, layout: str = "auto", val_fraction: float | None = None, val_seed: int = 0) -> DataLayout:
    """The layout of `root`: `layout`, or for "auto" the one whose files are there
    (MiniPlaces' when none is: what data.download fetches). `val_fraction` None: the
    layout's default (image_folder without val/: 0.1; CIFAR: 0, validation on the test images)."""
    root = Path(root)
    if layout not in LAYOUT_NAMES:
        raise LitVisionError(f"data.layout must be one of {', '.join(LAYOUT_NAMES)}; got {layout!r}.")
    if layout == "auto":
        layout = _auto(root)
    if val_fraction is not None:
        check_fraction(val_fraction)
        # Nothing found (layout None): the missing data is the error to name, not the option.
        if layout is not None and layout not in HOLDOUT_LAYOUTS:
            raise LitVisionError(
                f"data.val_fraction holds out training images where a dataset has no validation split "
                f"({', '.join(HOLDOUT_LAYOUTS)}); {root} is read as {layout}, whose val split is its own: "
                "leave data.val_fraction unset."
            )
    if layout in ("miniplaces", None):  # auto with nothing found: MiniPlaces, what data.download fetches
        images = root / "images"
        return DataLayout("miniplaces", root, images, {"train": (root / "train.txt", ""), "val": (root / "val.txt", "")},
                          root / "categories.txt", "test")  # fmt: skip
    if layout == "places365":
        lists = {split: (root / name, _first_existing(root, PLACES365_FOLDERS[split]) + "/") for split, name in PLACES365_LISTS.items()}
        return DataLayout("places365", root, root, lists, root / PLACES365_CATEGORIES, _first_existing(root, PLACES365_FOLDERS["test"]))
    if layout == "image_folder":
        if val_fraction is not None and val_fraction > 0 and (root / "val").is_dir():
            raise LitVisionError(
                f"data.val_fraction {val_fraction} would hold out part of {root}/train, but {root}/val/ is there and "
                "is the validation split: leave data.val_fraction unset, or remove val/."
            )
        fraction = DEFAULT_FOLDER_VAL_FRACTION if val_fraction is None else val_fraction
        lists = {"train": (root / "train", ""), "val": (root / ("val" if (root / "val").is_dir() else "train"), "")}
        return ImageFolderLayout("image_folder", root, root, lists, root / "train", "test", fraction, val_seed)
    variant = VARIANTS[layout]
    base = base_folder(root, variant)
    lists = {"train": (base / variant.train_files[0], ""), "val": (base / variant.test_file, ""),
             "test": (base / variant.test_file, "")}  # fmt: skip
    return CifarLayout(layout, root, base, lists, base / variant.meta_file, "test", variant, val_fraction or 0.0, val_seed)
