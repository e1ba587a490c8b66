"""Convert a dataset folder (MiniPlaces, Places365-Standard or class-per-folder layout) into a LitData stream.

    python -m lit_vision.data.optimize data/places365 streams/places365
    lit-vision optimize data/miniplaces streams/miniplaces --num_workers 8

writes `<out>/train/` and `<out>/val/` (LitData chunks, ~64 MB each by default) and
`<out>/lit_vision.json`. A sample is {"image": the image file's bytes exactly as stored (no
re-encoding, so a stream holds the same pixels as the folder), "label", "index": its line in
the list file, 0-based, the same index the folder path's dataset has}. Training samples are
written in a seeded random order (`--seed`, recorded with `format_version` 2 in lit_vision.json):
train lists are sorted by class, and LitData's read-time shuffle only permutes chunks and the
items within a chunk, so list order would give single-class chunks and 2-class batches
(`lit_vision.data.streaming.check_trainable`). Validation keeps list order. Before anything is
written every listed image is decoded once (the DataModule's pre-flight check, with its stamps
in `<data_dir>/cache`): unreadable files are named in one error and no stream is produced.
The stream is built in a hidden sibling folder of `<out>` and renamed into place when complete,
so an interrupted conversion never looks like a stream. Upload the folder to a bucket with your
storage's own tool and point `data.stream` at its URL (docs/scale.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # before litdata is imported

import litdata  # noqa: E402
import numpy as np  # noqa: E402

from lit_vision import console  # noqa: E402
from lit_vision.data.layout import LAYOUT_NAMES, detect_layout, no_layout_message  # noqa: E402
from lit_vision.data.preflight import verify_images  # noqa: E402
from lit_vision.data.streaming import META_FILE, SPLITS  # noqa: E402
from lit_vision.errors import LitVisionError  # noqa: E402
from lit_vision.utils.files import staging_folder  # noqa: E402

FORMAT_VERSION = 2  # 2: training samples in a seeded random order (streaming.TRAINABLE_FORMAT)


class ReadSample:
    """LitData's per-input function (pickled into its workers): one listed image's bytes."""

    def __init__(self, images_dir: str) -> None:
        self.images_dir = images_dir

    def __call__(self, entry: tuple[int, str, int]) -> dict:
        index, relative, label = entry
        with open(os.path.join(self.images_dir, relative), "rb") as handle:
            return {"index": index, "label": label, "image": handle.read()}


def optimize_dataset(
    data_dir: str | Path,
    out: str | Path,
    layout: str = "auto",
    num_classes: int | None = None,
    num_workers: int = 1,
    chunk_bytes: str | None = "64MB",
    verify: bool = True,
    chunk_size: int | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    val_seed: int = 0,
) -> Path:
    """Write the stream of `data_dir`'s labelled splits to `out` (see the module docstring)."""
    data_dir, out = Path(data_dir), Path(out)
    if "://" in str(out) or str(out).startswith("local:"):
        raise LitVisionError(f"optimize writes a local folder, got {out}: upload it to the bucket afterwards.")
    if out.exists():
        raise LitVisionError(f"{out} exists: optimize writes a new stream, it never overwrites one. Remove it first.")
    found = detect_layout(data_dir, layout, val_fraction, val_seed)
    missing = [str(p) for p in found.required() if not p.exists()]
    if missing and layout == "auto":
        raise LitVisionError(no_layout_message(data_dir))
    if missing:
        raise LitVisionError(f"{data_dir} is not a {found.name} folder: missing {', '.join(missing)}.")
    if found.in_memory:
        raise LitVisionError(
            f"{data_dir} is {found.name}, which is read whole into memory (no image files to decode): a stream "
            f"adds nothing there. Train on the folder itself (data.layout: {found.name})."
        )
    num_classes = num_classes or found.class_count()
    if num_classes is None:
        raise LitVisionError(f"{found.categories} is missing: give the class count with --num_classes.")
    class_names = found.class_names(num_classes)
    entries = {split: found.labelled(split, num_classes) for split in SPLITS}
    for split, listed in entries.items():
        for relative, _ in listed:
            if not (found.images / relative).is_file():
                raise LitVisionError(f"{found.list_file(split)} lists {relative}, but {found.images / relative} is missing.")
    if verify:
        lists = {str(found.list_file(split)): [relative for relative, _ in listed] for split, listed in entries.items()}
        verify_images(found.images, lists, data_dir / "cache", num_workers)
    with staging_folder(out) as staging:
        for split, listed in entries.items():
            inputs = [(index, relative, label) for index, (relative, label) in enumerate(listed)]
            if split == "train":  # class-mixed chunks: see the module docstring
                inputs = [inputs[i] for i in np.random.default_rng(seed).permutation(len(inputs))]
            litdata.optimize(
                fn=ReadSample(str(found.images)),
                inputs=inputs,
                output_dir=str(staging / split),
                chunk_bytes=None if chunk_size else chunk_bytes,
                chunk_size=chunk_size,
                num_workers=num_workers,
                reorder_files=False,
                start_method="fork",  # the workers only read files: no re-import of torch per worker (spawn)
                verbose=False,
            )
        meta = {
            "format_version": FORMAT_VERSION, "layout": found.name, "num_classes": num_classes,
            "class_names": class_names, "samples": {split: len(listed) for split, listed in entries.items()},
            "source": str(data_dir.resolve()), "train_order": {"shuffled": True, "seed": seed},
        }  # fmt: skip
        (staging / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        staging.rename(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="lit-vision optimize", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("data_dir", help="the dataset folder (MiniPlaces, Places365-Standard or class-per-folder layout)")
    parser.add_argument("out", help="the stream folder to write (must not exist)")
    parser.add_argument("--layout", choices=LAYOUT_NAMES, default="auto")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="default: the classes the data names (its categories file, or its class folders)")
    parser.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1), help="conversion processes")
    parser.add_argument("--chunk_bytes", default="64MB", help="target size of a chunk file")
    parser.add_argument("--chunk_size", type=int, default=None, help="samples per chunk (instead of --chunk_bytes)")
    parser.add_argument("--seed", type=int, default=0, help="the order the training samples are written in")
    parser.add_argument("--val_fraction", type=float, default=None,
                        help="class folders without val/: the share of train/ held out as val (as data.val_fraction; default 0.1)")
    parser.add_argument("--val_seed", type=int, default=0, help="the seed of that hold-out (as data.val_seed)")
    parser.add_argument("--no_verify", action="store_true", help="skip decoding every image before conversion")
    args = parser.parse_args(argv)
    try:
        out = optimize_dataset(args.data_dir, args.out, args.layout, args.num_classes, args.num_workers,
                               args.chunk_bytes, verify=not args.no_verify, chunk_size=args.chunk_size, seed=args.seed,
                               val_fraction=args.val_fraction, val_seed=args.val_seed)  # fmt: skip
    except LitVisionError as error:
        console.say_error(str(error))
        sys.exit(2)
    meta = json.loads((out / META_FILE).read_text())
    print(f"wrote {out}: {meta['samples']} samples, {meta['num_classes']} classes ({meta['layout']} layout).")


if __name__ == "__main__":
    main()
