"""`data.stream: DIR_OR_URL`: the labelled splits read from LitData chunks instead of image files.

A stream is what `python -m lit_vision.data.optimize` writes (see there): `<stream>/train/`
and `<stream>/val/` (LitData datasets of {"image": the encoded file's bytes, "label", "index":
the sample's line in its list file, 0-based}) and `<stream>/lit_vision.json` (class count and
names, layout, sizes). `<stream>` is a local folder, or a URL LitData reads (`s3://`, `gs://`,
`azure://`, `r2://`; `local:/path` takes the same download-and-cache code path from a local
folder, which is how the tests stand in for a bucket). Remote chunks are cached in
`data.cache_dir` (LitData's default folder when unset).

`StreamedImages` decodes each image in the loader workers (the same decoder as the folder
path) and applies the same transform, so `data.augment_on` (device / worker_batched / worker)
works as on the folder path. LitData shards the chunks across ranks and workers and shuffles
chunks and items within them by (seed, epoch) — which mixes classes only because `optimize`
wrote the training samples in a seeded random order (`check_trainable` refuses older streams); its `StreamingDataLoader` has a
`state_dict` that counts the samples handed to the main process, which the DataModule
carries across a resume (Lightning issue 20550, see `lit_vision.data.train_position`).

LitData reads the rank and world size when a dataset is constructed: build them in `setup`,
after the process group exists. Nothing here touches the network unless the stream is a URL:
LitData's PyPI version check is switched off (`LITDATA_DISABLE_VERSION_CHECK`) before it is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # before litdata is imported

from litdata import StreamingDataLoader, StreamingDataset  # noqa: E402
from litdata.streaming.downloader import get_downloader  # noqa: E402

from lit_vision.data.dataset import decode_bytes  # noqa: E402
from lit_vision.errors import LitVisionError  # noqa: E402

META_FILE = "lit_vision.json"
SPLITS = ("train", "val")

# 2: training samples written in a seeded random order (class-mixed chunks); 1: in list order.
TRAINABLE_FORMAT = 2

__all__ = ["META_FILE", "StreamedImages", "StreamingDataLoader", "check_trainable", "is_url", "read_stream_meta", "split_url"]


def is_url(stream: str) -> bool:
    return "://" in stream or stream.startswith("local:")


def split_url(stream: str, split: str) -> str:
    return f"{stream.rstrip('/')}/{split}" if is_url(stream) else str(Path(stream) / split)


def read_stream_meta(stream: str, cache_dir: str | None = None) -> dict:
    """`<stream>/lit_vision.json`, fetched through LitData's downloader when `stream` is a URL."""
    if not is_url(stream):
        path = Path(stream) / META_FILE
        if not path.is_file():
            raise LitVisionError(
                f"data.stream {stream} has no {META_FILE}: it is not a stream written by "
                "`python -m lit_vision.data.optimize` (expected train/, val/ and lit_vision.json there)."
            )
        return json.loads(path.read_text())
    folder = Path(cache_dir or tempfile.gettempdir()) / "lit_vision_stream_meta"
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / f"{hashlib.sha1(stream.encode()).hexdigest()[:16]}-{META_FILE}"
    try:
        get_downloader(stream, str(folder), []).download_file(f"{stream.rstrip('/')}/{META_FILE}", str(local))
        return json.loads(local.read_text())
    except Exception as error:  # each storage backend raises its own errors
        raise LitVisionError(f"Cannot read {stream.rstrip('/')}/{META_FILE}: {error}.") from None


def check_trainable(stream: str, meta: dict) -> None:
    """Refuse to train on a stream whose training samples were written in list order.

    LitData's shuffle permutes the chunks and assigns them to loader workers, then each worker
    reads its chunks one after another, items permuted within a chunk (in blocks of 256), and a
    batch comes from one worker: a batch holds the samples of one or two neighbouring chunks.
    MiniPlaces' and Places365's train lists are sorted by class, so a stream written in list
    order has single-class chunks and its batches hold 2 of 10 classes (stand-in, batch 64) —
    the model stays at chance. `lit-vision optimize` now writes the training samples in a seeded
    random order (format 2), which makes every chunk a sample of the whole set."""
    version = int(meta.get("format_version", 1))
    if version >= TRAINABLE_FORMAT:
        return
    source = meta.get("source", "<data_dir>")
    raise LitVisionError(
        f"data.stream {stream} was written by an older `lit-vision optimize` (format {version}), which stored the "
        "training images in list order — sorted by class for MiniPlaces and Places365 — so each chunk holds one or "
        "two classes and LitData's shuffle (chunk order, then items within a chunk) cannot mix them: training batches "
        "would hold 2 of 10 classes and the model would not learn. Re-run `lit-vision optimize "
        f"{source} NEW_STREAM` (it now writes the samples in a seeded random order) and point data.stream at the new "
        "stream. validate and test still read this one (their order does not matter)."
    )


class StreamedImages(StreamingDataset):
    """(image, label) — or (image, label, index) with `with_index` — from a LitData stream."""

    def __init__(
        self,
        input_dir: str,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        cache_dir: str | None = None,
        drop_last: bool | None = None,
    ) -> None:
        super().__init__(input_dir, cache_dir=cache_dir, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.image_transform = transform
        self.with_index = False  # tests that count which samples were trained on set it

    def __iter__(self):
        try:
            return super().__iter__()
        except ValueError as error:  # LitData's check of a restored state against this dataset
            if "state" not in str(error):
                raise
            raise LitVisionError(
                f"The checkpoint's position in the stream {self.input_dir.url or self.input_dir.path} does not fit "
                f"this run: {error} A run resumed mid-epoch must read the same data.stream with the same settings."
            ) from None

    def __getitem__(self, index):
        item = super().__getitem__(index)
        try:
            image = decode_bytes(item["image"])
        except Exception as error:  # each decoder has its own exception types
            raise LitVisionError(f"Cannot decode sample {item['index']} of the stream {self.input_dir.url or self.input_dir.path}: {error}.") from None
        if self.image_transform is not None:
            image = self.image_transform(image)
        if self.with_index:
            return image, item["label"], item["index"]
        return image, item["label"]
