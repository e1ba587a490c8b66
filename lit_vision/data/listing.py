"""Reading the list files of MiniPlaces (`train.txt`, `val.txt`, `categories.txt`) and of
Places365 (`places365_train_standard.txt`, `places365_val.txt`, `categories_places365.txt`;
the same two-column format, training paths with a leading slash) with errors that name the
file and line of any problem. A UTF-8 byte-order mark, CRLF line ends and
blank lines are accepted (editors on Windows write them)."""

from __future__ import annotations

from pathlib import Path

from lit_vision.errors import LitVisionError

# Files of the unlabelled split that are read as images (by their bytes, whatever the suffix says).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


def read_labelled_list(path: Path, num_classes: int) -> list[tuple[str, int]]:
    """Parse `<image path> <label>` lines into (relative path, label) pairs; a leading "/"
    (Places365: `/a/airfield/00000001.jpg 0`) is dropped: paths are relative to the split's folder."""
    if not path.is_file():
        raise LitVisionError(f"{path} is missing: expected a list of '<image path> <label>' lines.")
    entries: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise LitVisionError(
                f"{path}, line {line_number}: expected '<image path relative to images/> <integer label>', "
                f"got {line.strip()!r}."
            )
        relative, label = fields[0].lstrip("/"), int(fields[1])
        if not 0 <= label < num_classes:
            raise LitVisionError(
                f"{path}, line {line_number}: label {label} is outside [0, {num_classes}) "
                f"(data.num_classes is {num_classes})."
            )
        if relative in seen:
            raise LitVisionError(
                f"{path}, line {line_number}: {relative} is listed twice (first on line {seen[relative]})."
            )
        seen[relative] = line_number
        entries.append((relative, label))
    if not entries:
        raise LitVisionError(f"{path} lists no images: expected '<image path> <label>' lines.")
    return entries


def read_categories(path: Path, num_classes: int) -> list[str]:
    """Class names from `categories.txt` (`/a/abbey 0` …), or `class_<i>` when the file is absent."""
    if not path.is_file():
        return [f"class_{i}" for i in range(num_classes)]
    names: dict[int, str] = {}
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    count = sum(1 for line in lines if line.strip())
    if count > num_classes:
        raise LitVisionError(
            f"{path} names {count} classes but data.num_classes is {num_classes}: set data.num_classes: {count} "
            "(the model's head follows it)."
        )
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) >= num_classes:
            raise LitVisionError(
                f"{path}, line {line_number}: expected '<category name> <index in [0, {num_classes})>', "
                f"got {line.strip()!r}."
            )
        # "/a/abbey" -> "abbey"; two-level names keep both: "/a/apartment_building/outdoor" ->
        # "apartment_building/outdoor".
        names[int(fields[1])] = fields[0].strip("/").split("/", 1)[-1]
    missing = sorted(set(range(num_classes)) - set(names))
    if missing:
        raise LitVisionError(
            f"{path} names {len(names)} classes but data.num_classes is {num_classes}; "
            f"missing indices start at {missing[0]}."
        )
    return [names[i] for i in range(num_classes)]


def list_unlabelled_images(images_dir: Path, split: str = "test") -> list[str]:
    """Relative paths (`test/00000001.jpg`) of the unlabelled split, in sorted order."""
    folder = images_dir / split
    if not folder.is_dir():
        raise LitVisionError(f"{folder} is missing: expected the unlabelled {split} images there.")
    paths = sorted(
        p.relative_to(images_dir).as_posix() for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise LitVisionError(f"{folder} holds no images (.jpg, .jpeg, .png, .gif, .bmp, .webp).")
    return paths
