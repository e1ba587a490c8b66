"""The class-per-folder layout (`data.layout: image_folder`), as torchvision's `ImageFolder`
and timm's `create_dataset` read it:

    my_data/train/<class>/**/<image>   required; the classes are train/'s sub-folder names, sorted
                                       (label i is the i-th name, torchvision's order)
    my_data/val/<class>/**/<image>     optional; without it a seeded, stratified share of train/
                                       is held out (data.val_fraction, `lit_vision.data.holdout`)
    my_data/test/**/<image>            optional; unlabelled images for `predict`

Images are the files with torchvision's extensions (`IMG_EXTENSIONS`, any case), found
recursively under each class folder, links followed, in the order `ImageFolder` lists them
(`sorted(os.walk(...))`, then sorted file names), so both give every file the same label.
One difference, on purpose: hidden files and folders (a leading ".", such as
.ipynb_checkpoints/ or the ._photo.jpg copies macOS leaves in archives) are skipped, where
`ImageFolder` would make a class of the folder and fail to decode the copies. Whatever a
file's suffix says, its bytes decide how it is decoded (`lit_vision.data.dataset`).

This is the layout of a dataset to train on; `lit_vision.data.image_folder` reads any folder
of images to predict on.
"""

from __future__ import annotations

import os
from pathlib import Path

from lit_vision.errors import LitVisionError

# torchvision.datasets.folder.IMG_EXTENSIONS (tests/test_class_folders.py checks they agree).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _visible(name: str) -> bool:
    return not name.startswith(".")


def has_class_folders(split_dir: Path) -> bool:
    """Whether `split_dir` exists and has at least one (visible) sub-folder."""
    return split_dir.is_dir() and any(entry.is_dir() and _visible(entry.name) for entry in os.scandir(split_dir))


def find_classes(split_dir: Path) -> list[str]:
    """The class names: `split_dir`'s visible sub-folders, sorted as torchvision sorts them."""
    if not split_dir.is_dir():
        raise LitVisionError(f"{split_dir} is missing: expected one sub-folder of images per class there.")
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and _visible(entry.name))
    if not classes:
        raise LitVisionError(
            f"{split_dir} has no class folders: expected {split_dir}/<class name>/<images>, one sub-folder per class."
        )
    return classes


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and _visible(name)


def class_images(class_dir: Path) -> list[Path]:
    """The image files under `class_dir`, recursively, in `ImageFolder`'s order."""
    found: list[Path] = []
    # sorted() walks the whole tree first, as ImageFolder does; hidden folders are left out here.
    for folder, _, names in sorted(os.walk(class_dir, followlinks=True)):
        if any(not _visible(part) for part in Path(folder).relative_to(class_dir).parts):
            continue
        found += [Path(folder) / name for name in sorted(names) if is_image_file(name)]
    return found


def list_split(root: Path, split: str, classes: list[str], every_class: bool) -> list[tuple[str, int]]:
    """(path relative to `root`, label) of every image of `root/split/<class>/`, labels by
    `classes` (the training split's). `every_class`: each class folder must be there and hold
    an image (the training split); otherwise a class may be absent, but a folder of a class
    the training split lacks is an error (its images would have no label)."""
    split_dir = root / split
    present = find_classes(split_dir)
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise LitVisionError(
            f"{split_dir} has class folders that {root / 'train'} lacks: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}. Classes are train/'s sub-folders; add them there or remove them here."
        )
    entries: list[tuple[str, int]] = []
    empty: list[str] = []
    for label, name in enumerate(classes):
        if name not in present:
            continue
        files = class_images(split_dir / name)
        if not files:
            empty.append(name)
        entries += [(path.relative_to(root).as_posix(), label) for path in files]
    if every_class and empty:
        raise LitVisionError(
            f"{len(empty)} class folder(s) of {split_dir} hold no images ({', '.join(empty[:10])}"
            f"{' ...' if len(empty) > 10 else ''}): images are files ending in {', '.join(IMAGE_EXTENSIONS)} "
            "(any case). Add images or remove the empty folders."
        )
    if not entries:
        raise LitVisionError(f"{split_dir} holds no images in its class folders ({', '.join(IMAGE_EXTENSIONS)}).")
    return entries


def check_class_count(train_dir: Path, classes: list[str], num_classes: int) -> None:
    if len(classes) != num_classes:
        shown = ", ".join(classes[:8]) + (" ..." if len(classes) > 8 else "")
        raise LitVisionError(
            f"{train_dir} holds {len(classes)} class folders ({shown}) but data.num_classes is {num_classes}: "
            f"set data.num_classes: {len(classes)} (the model's head follows it)."
        )
