"""LitData streams: `optimize` stores each listed file's bytes, label and index (checked image
by image against the folder), refuses bad input before writing anything, and the DataModule
reads a stream — from a folder or through LitData's download-and-cache path (`local:`, the
stand-in for a bucket) — without touching the network; through the CLI, optimize → fit →
validate on the stream gives the same validation numbers as the folder."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data.dataset import decode_rgb
from lit_vision.data.layout import detect_layout
from lit_vision.data.optimize import optimize_dataset
from lit_vision.data.streaming import StreamedImages
from lit_vision.errors import LitVisionError


@pytest.fixture(scope="session")
def stream_dir(standin_dir, tmp_path_factory):
    """The tiny stand-in as a stream: 8 chunks of 8 training samples, 2 of 8 validation."""
    out = tmp_path_factory.mktemp("streams") / "standin"
    return optimize_dataset(standin_dir, out, num_workers=1, chunk_size=8)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails (and says so): construction and reading must not need one."""
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(f"network access refused in this test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert not attempts, f"tried to connect to {attempts}"


def stream_datamodule(stream, **kwargs) -> MiniPlacesDataModule:
    settings = {"num_classes": 4, "batch_size": 8, "num_workers": 0, "resize_size": 36, "crop_size": 32,
                "augment_on": "worker", "pin_memory": False, **kwargs}  # fmt: skip
    return MiniPlacesDataModule("unused-for-fit", stream=str(stream), **settings)


@pytest.mark.parametrize("root_fixture", ["standin_dir", "places365_dir"])
def test_stream_holds_every_listed_image_label_and_index(root_fixture, request, tmp_path):
    root = request.getfixturevalue(root_fixture)
    out = optimize_dataset(root, tmp_path / "stream", num_workers=1, chunk_size=8)
    meta = json.loads((out / "lit_vision.json").read_text())
    layout = detect_layout(root)
    assert meta["layout"] == layout.name and meta["num_classes"] == 4 and meta["samples"] == {"train": 64, "val": 16}
    for split in ("train", "val"):
        listed = layout.labelled(split, 4)
        stream = StreamedImages(str(out / split))
        stream.with_index = True
        seen = {}
        for image, label, index in stream:
            relative, expected_label = listed[index]
            assert label == expected_label
            assert torch.equal(image, decode_rgb(layout.images / relative))  # the file's bytes, not re-encoded
            seen[index] = seen.get(index, 0) + 1
        assert seen == {i: 1 for i in range(len(listed))}


def test_optimize_names_unreadable_images_and_writes_nothing(standin_dir, tmp_path):
    root = shutil.copytree(standin_dir, tmp_path / "data")
    bad = (root / "train.txt").read_text().split()[0]
    (root / "images" / bad).write_bytes(b"not an image")
    with pytest.raises(LitVisionError, match=rf"1 of the 80 listed images cannot be read: .*{bad} \(listed in"):
        optimize_dataset(root, tmp_path / "stream", num_workers=1)
    assert not (tmp_path / "stream").exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_optimize_never_overwrites_a_stream(stream_dir):
    with pytest.raises(LitVisionError, match=rf"{stream_dir} exists: optimize writes a new stream"):
        optimize_dataset("anything", stream_dir)


def test_datamodule_reads_a_stream_offline(stream_dir, no_network):
    dm = stream_datamodule(stream_dir)
    dm.prepare_data()
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8 and labels.shape == (8,)
    assert sum(len(labels) for _, labels in dm.val_dataloader()) == 16
    assert dm.class_names == [name for name in json.loads((stream_dir / "lit_vision.json").read_text())["class_names"]]
    assert "train_loader" in dm.state_dict()


def test_bucket_stand_in_is_downloaded_into_the_cache(stream_dir, tmp_path, no_network):
    """`local:/path` takes LitData's remote path (chunks copied into data.cache_dir), as s3:// would."""
    cache = tmp_path / "cache"
    dm = stream_datamodule(f"local:{stream_dir}", cache_dir=str(cache))
    dm.setup("fit")
    assert sum(len(labels) for _, labels in dm.train_dataloader()) == 64
    assert list(cache.rglob("chunk-*.bin")), "no chunk was fetched into data.cache_dir"


def test_class_count_must_match_the_stream(stream_dir):
    with pytest.raises(LitVisionError, match=r"holds 4 classes but data.num_classes is 5: set data.num_classes: 4"):
        stream_datamodule(stream_dir, num_classes=5).setup("fit")


def test_not_a_stream_is_named(tmp_path):
    with pytest.raises(LitVisionError, match=r"data.stream .* has no lit_vision.json"):
        stream_datamodule(tmp_path).setup("fit")


def test_stream_excludes_folder_only_options(stream_dir):
    with pytest.raises(LitVisionError, match="data.stream reads a converted stream: data.cache"):
        stream_datamodule(stream_dir, cache=True)
    with pytest.raises(LitVisionError, match=r"data.val_fraction 0.2 holds out .* already holds its validation split"):
        stream_datamodule(stream_dir, val_fraction=0.2)


@pytest.mark.slow
def test_cli_optimize_fit_validate_on_the_stream(tiny_config, standin_dir, run_cli, tmp_path):
    assert run_cli("optimize", standin_dir, tmp_path / "stream", "--num_workers", "1", "--chunk_size", "16") == 0
    stream = ["--data.stream", str(tmp_path / "stream")]
    assert run_cli("fit", "--config", tiny_config, *stream, "--trainer.max_epochs", "1") == 0
    from lit_vision.cli import build_cli

    def validate(*extra):
        cli = build_cli(["validate", "--config", str(tiny_config), "--ckpt_path", "last", "--trainer.logger", "false", *extra])
        return {k: v.item() for k, v in cli.trainer.callback_metrics.items()}

    on_stream, on_folder = validate(*stream), validate()
    assert on_stream["val/top1"] == pytest.approx(on_folder["val/top1"], abs=1e-6)
    assert on_stream["val/loss"] == pytest.approx(on_folder["val/loss"], rel=1e-5)


def test_cli_optimize_error_names_the_folder(run_cli, tmp_path, capsys):
    assert run_cli("optimize", tmp_path / "nothing-here", tmp_path / "stream") == 2
    err = capsys.readouterr().err
    assert "nothing-here" in err and "missing" in err
    assert not (tmp_path / "stream").exists()


def test_bench_stream_row_streams_the_whole_stand_in(standin_dir, tmp_path):
    """`bench data`'s stream row: every stand-in image converted and read by the timed loader."""
    from lit_vision.bench import data as bench_data

    stream = bench_data.stream_of(standin_dir, str(tmp_path))
    assert sum(1 for _ in StreamedImages(str(stream / "train"))) == 64
    assert bench_data.time_stream_loader(stream, crop=32, workers=0, passes=1) > 0
