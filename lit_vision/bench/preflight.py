"""The pre-flight image check: its cost per 10k images, first run and stamped re-run.

    python -m lit_vision.bench preflight                         # 2,000 images, ~1 min on 2 cores
    python -m lit_vision.bench preflight --images 10000 --workers 0,1,2

Rows, over the same generated 128×128 JPEGs (timed alternately, best of --rounds):
- reference: one in-process `decode_jpeg` loop over the files — the decode work of one
  epoch on one core, so the ratio column says how many such passes the check costs;
- the check with N DataLoader workers (`find_unreadable`: read + `decode_image`, any format);
- the stamped re-run: hashing each file's path, size and time (`dataset_stamp`), which is all
  a later run over unchanged files pays.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from torchvision.io import ImageReadMode, decode_jpeg, read_file

from lit_vision.data.listing import read_labelled_list
from lit_vision.data.preflight import dataset_stamp, find_unreadable
from lit_vision.data.standin import generate_standin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=2000, help="stand-in training images to generate")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed rounds")


def run(args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        classes = 100
        root = generate_standin(
            Path(folder) / "standin", num_classes=classes, train_per_class=max(1, args.images // classes),
            val_per_class=1, test_images=1,
        )  # fmt: skip
        images = root / "images"
        paths = [relative for relative, _ in read_labelled_list(root / "train.txt", classes)]

        def reference() -> None:
            for relative in paths:
                decode_jpeg(read_file(str(images / relative)), mode=ImageReadMode.RGB)

        candidates = {"reference: decode_jpeg loop, in process": reference}
        for workers in (int(w) for w in args.workers.split(",")):
            candidates[f"pre-flight check, {workers} worker(s)"] = (
                lambda workers=workers: find_unreadable(images, paths, workers)
            )
        candidates["stamped re-run (stat + hash only)"] = lambda: dataset_stamp(images, paths)
        best = {name: float("inf") for name in candidates}
        for _ in range(args.rounds):
            for name, candidate in candidates.items():
                start = time.perf_counter()
                candidate()
                best[name] = min(best[name], time.perf_counter() - start)
    base = best["reference: decode_jpeg loop, in process"]
    return [
        {"what": name, "images": len(paths), "seconds": seconds, "s per 10k images": seconds * 10_000 / len(paths),
         "images/s": len(paths) / seconds, "× reference": seconds / base}  # fmt: skip
        for name, seconds in best.items()
    ]
