"""The MiniPlaces data layer: list parsing, layout checks, image formats and errors, the
pre-flight image check, the stand-in, the DataModule."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from lit_vision.data import MiniPlacesDataModule, generate_standin, preflight
from lit_vision.data.augment_settings import Augmentation
from lit_vision.data.dataset import load_image
from lit_vision.data.listing import read_categories, read_labelled_list
from lit_vision.errors import LitVisionError


def copy_dataset(standin_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(standin_dir, target)
    return target


def make_datamodule(data_dir, **overrides) -> MiniPlacesDataModule:
    settings = dict(data_dir=str(data_dir), num_classes=4, batch_size=8, num_workers=0,
                    resize_size=36, crop_size=32, pin_memory=False)  # fmt: skip
    settings.update(overrides)
    return MiniPlacesDataModule(**settings)


def test_standin_has_the_real_layout(standin_dir):
    lines = (standin_dir / "train.txt").read_text().splitlines()
    assert len(lines) == 4 * 16
    path, label = lines[0].split()
    assert path.startswith("train/a/amber_field/") and path.endswith(".jpg") and label == "0"
    val = read_labelled_list(standin_dir / "val.txt", 4)
    assert len(val) == 16 and val[0][0] == "val/00000001.jpg"
    assert sorted(label for _, label in val) == sorted(list(range(4)) * 4)
    assert read_categories(standin_dir / "categories.txt", 4)[:2] == ["amber_field", "blue_lagoon"]
    assert len(list((standin_dir / "images" / "test").glob("*.jpg"))) == 6


def test_standin_is_deterministic_and_reused(tmp_path):
    first = generate_standin(tmp_path / "a", num_classes=3, train_per_class=2, val_per_class=1, test_images=1)
    second = generate_standin(tmp_path / "b", num_classes=3, train_per_class=2, val_per_class=1, test_images=1)
    for path in first.rglob("*.jpg"):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()
    stamp = (first / "train.txt").stat().st_mtime_ns
    generate_standin(first, num_classes=3, train_per_class=2, val_per_class=1, test_images=1)
    assert (first / "train.txt").stat().st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(LitVisionError, match="was generated with"):
        generate_standin(first, num_classes=5, train_per_class=2, val_per_class=1, test_images=1)
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_standin_refuses_to_write_into_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(LitVisionError, match="not a generated stand-in"):
        generate_standin(tmp_path / "mine", num_classes=2, train_per_class=1, val_per_class=1, test_images=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_batches_are_uint8_pixels_of_the_crop_size(standin_dir):
    datamodule = make_datamodule(standin_dir)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
    assert labels.dtype == torch.int64 and int(labels.max()) < 4
    images, labels = next(iter(datamodule.val_dataloader()))
    assert images.shape == (8, 3, 32, 32)
    # Evaluation is deterministic: the same images twice.
    again, _ = next(iter(datamodule.val_dataloader()))
    assert torch.equal(images, again)
    assert datamodule.class_names[0] == "amber_field"


def test_predict_split_yields_indices_and_paths(standin_dir):
    datamodule = make_datamodule(standin_dir)
    datamodule.setup("predict")
    images, indices = next(iter(datamodule.predict_dataloader()))
    assert indices.tolist() == list(range(6))
    assert datamodule.test_paths[0] == "test/00000001.jpg"


def test_missing_data_dir_names_the_path_and_the_layout(tmp_path):
    datamodule = make_datamodule(tmp_path / "nowhere")
    with pytest.raises(LitVisionError, match=r"nowhere is missing\. Looked for: class per folder.*train.txt"):
        datamodule.setup("fit")


@pytest.mark.parametrize(
    "line, expected",
    [
        ("train/a/amber_field/00000001.jpg", "line 2: expected '<image path"),
        ("train/a/amber_field/00000001.jpg zero", "line 2: expected '<image path"),
        ("train/a/amber_field/00000002.jpg 7", r"line 2: label 7 is outside \[0, 4\)"),
        ("train/a/amber_field/00000001.jpg 0", "line 2: .*listed twice \\(first on line 1\\)"),
    ],
)
def test_bad_list_lines_name_file_and_line(standin_dir, tmp_path, line, expected):
    data = copy_dataset(standin_dir, tmp_path)
    lines = (data / "train.txt").read_text().splitlines()
    (data / "train.txt").write_text("\n".join([lines[0], line, *lines[2:]]) + "\n")
    with pytest.raises(LitVisionError, match=f"train.txt.*{expected}"):
        make_datamodule(data).setup("fit")


def test_missing_listed_image_is_named(standin_dir, tmp_path):
    data = copy_dataset(standin_dir, tmp_path)
    (data / "images" / "val" / "00000003.jpg").unlink()
    with pytest.raises(LitVisionError, match="val/00000003.jpg.*missing"):
        make_datamodule(data).setup("validate")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_corrupt_image_is_named_even_from_a_worker(standin_dir, tmp_path, num_workers):
    data = copy_dataset(standin_dir, tmp_path)
    (data / "images" / "val" / "00000002.jpg").write_bytes(b"not a jpeg at all")
    datamodule = make_datamodule(data, num_workers=num_workers)
    datamodule.setup("validate")
    with pytest.raises(LitVisionError, match="val/00000002.jpg: it is not an image any decoder here reads"):
        next(iter(datamodule.val_dataloader()))


def test_inconsistent_categories_are_reported(standin_dir, tmp_path):
    data = copy_dataset(standin_dir, tmp_path)
    (data / "categories.txt").write_text("/a/amber_field 0\n/b/blue_lagoon 1\n")
    with pytest.raises(LitVisionError, match="categories.txt names 2 classes but data.num_classes is 4"):
        make_datamodule(data).setup("fit")


@pytest.mark.parametrize(
    "settings, expected",
    [
        (dict(batch_size=0), "data.batch_size must be a positive integer, got 0"),
        (dict(num_workers=-1), "data.num_workers must be >= 0"),
        (dict(resize_size=16), r"data.resize_size \(16\) must be >= data.crop_size \(32\)"),
        (dict(download=True, standin=True), "exclusive"),
    ],
)
def test_bad_settings_are_refused(tmp_path, settings, expected):
    with pytest.raises(LitVisionError, match=expected):
        make_datamodule(tmp_path, **settings)


@pytest.mark.parametrize(
    "settings, expected",
    [
        (dict(scale=(0, 1)), r"data.augmentation.scale must satisfy 0 < low <= high <= 1 .*got \[0.0, 1.0\]"),
        (dict(scale=(0.9, 0.5)), r"data.augmentation.scale .*got \[0.9, 0.5\]"),
        (dict(scale=(0.5,)), r"data.augmentation.scale must be a pair \[low, high\], got \(0.5,\)"),
        (dict(ratio=(1.2, 0.8)), r"data.augmentation.ratio must satisfy 0 < low <= high .*got \[1.2, 0.8\]"),
        (dict(degrees=-5), r"data.augmentation.degrees must lie in \[0, 180\], got -5"),
        (dict(gain=1.5), r"data.augmentation.gain must lie in \[0, 1\], got 1.5"),
    ],
)
def test_bad_augmentation_settings_are_refused(settings, expected):
    with pytest.raises(LitVisionError, match=expected):
        Augmentation(**settings)


def test_bad_augment_on_names_the_choices(tmp_path):
    with pytest.raises(LitVisionError, match="data.augment_on must be one of auto, device, worker_batched, worker; got 'gpu'"):
        make_datamodule(tmp_path, augment_on="gpu")


# What each format keeps of an RGB picture: lossless ones every pixel, lossy ones nearly.
FORMATS = [
    # name,          Pillow mode, format, tolerance (mean absolute error, 0-255)
    ("png",           "RGB",  "PNG",  0),
    ("png grey",      "L",    "PNG",  0),
    ("png alpha",     "RGBA", "PNG",  0),
    ("gif palette",   "P",    "GIF",  0),
    ("bmp",           "RGB",  "BMP",  0),
    ("webp",          "RGB",  "WEBP", 12),
    ("jpeg cmyk",     "CMYK", "JPEG", 12),
    ("jpeg",          "RGB",  "JPEG", 12),
]  # fmt: skip


@pytest.mark.parametrize("mode, image_format, tolerance", [f[1:] for f in FORMATS], ids=[f[0] for f in FORMATS])
def test_any_image_format_is_read_whatever_the_file_name(tmp_path, mode, image_format, tolerance):
    rng = np.random.default_rng(0)
    pixels = np.kron(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), np.ones((8, 8, 1), dtype=np.uint8))
    picture = Image.fromarray(pixels).convert(mode)
    path = tmp_path / "named_like_a.jpg"
    picture.save(path, format=image_format)
    expected = torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1)

    image = load_image(path)

    assert image.dtype == torch.uint8 and image.shape == (3, 48, 40)
    assert (image.float() - expected.float()).abs().mean() <= tolerance


def test_list_file_with_a_byte_order_mark_crlf_and_blank_lines(standin_dir, tmp_path):
    data = copy_dataset(standin_dir, tmp_path)
    expected = read_labelled_list(data / "train.txt", 4)
    text = (data / "train.txt").read_text()
    (data / "train.txt").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode() + b"\r\n\r\n\n")
    assert read_labelled_list(data / "train.txt", 4) == expected
    (data / "categories.txt").write_bytes(b"\xef\xbb\xbf" + (data / "categories.txt").read_bytes())
    assert read_categories(data / "categories.txt", 4) == read_categories(standin_dir / "categories.txt", 4)
    make_datamodule(data).setup("fit")  # the first listed image is found


def break_images(data):
    """An empty training image, an undecodable validation one and a PNG named .jpg (fine)."""
    train = [line.split()[0] for line in (data / "train.txt").read_text().splitlines()]
    val = [line.split()[0] for line in (data / "val.txt").read_text().splitlines()]
    (data / "images" / train[3]).write_bytes(b"")
    (data / "images" / val[1]).write_bytes(b"<html>not found</html>")
    Image.open(data / "images" / train[5]).save(data / "images" / train[5], format="PNG")
    return train[3], val[1], train[5]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_preflight_names_every_unreadable_image_in_one_message(standin_dir, tmp_path, num_workers):
    data = copy_dataset(standin_dir, tmp_path)
    empty, garbage, png = break_images(data)
    with pytest.raises(LitVisionError) as caught:
        make_datamodule(data, num_workers=num_workers).check_images("fit")
    message = str(caught.value)
    assert message.startswith("2 of the 80 listed images cannot be read")
    assert f"{empty} (listed in {data / 'train.txt'}): it is empty (0 bytes)" in message
    assert f"{garbage} (listed in {data / 'val.txt'}): it is not an image" in message
    assert png not in message and "data.verify: false" in message
    # validate reads the val list only: the empty training image is not its concern.
    with pytest.raises(LitVisionError, match="1 of the 16 listed images") as caught:
        make_datamodule(data).check_images("validate")


def test_preflight_runs_once_per_unchanged_dataset(standin_dir, tmp_path, monkeypatch):
    data = copy_dataset(standin_dir, tmp_path)
    decoded = []
    real_decode = preflight.decode_rgb
    monkeypatch.setattr(preflight, "decode_rgb", lambda path: decoded.append(path) or real_decode(path))
    make_datamodule(data).check_images("fit")
    assert len(decoded) == 80
    make_datamodule(data).check_images("fit")
    assert len(decoded) == 80  # stamped: not decoded again
    # An image replaced in place (new size and time) is checked again, and named.
    first = data / "images" / (data / "train.txt").read_text().split()[0]
    first.write_bytes(b"truncated")
    with pytest.raises(LitVisionError, match=f"1 of the 80 listed images.*{first.name}"):
        make_datamodule(data).check_images("fit")


def test_verify_false_skips_the_preflight_check(standin_dir, tmp_path):
    data = copy_dataset(standin_dir, tmp_path)
    break_images(data)
    with pytest.raises(LitVisionError, match="cannot be read"):
        make_datamodule(data).prepare_data()
    make_datamodule(data, verify=False).prepare_data()  # no error: the check is off


def test_the_standin_config_names_the_folder_runs_may_generate_into():
    """`generate_standin_for_run` creates only STANDIN_DIR from nothing; the recipe's data piece
    must name that very folder, or the quickstart would refuse to start on a fresh clone."""
    from pathlib import Path

    import yaml

    from lit_vision.data.standin import STANDIN_DIR

    config = yaml.safe_load((Path(__file__).parents[1] / "configs" / "data" / "standin.yaml").read_text())
    assert config["standin"] is True and config["data_dir"] == STANDIN_DIR


def test_data_preparation_leaves_the_global_random_state_alone(standin_dir, tmp_path):
    """The pre-flight check iterates a DataLoader, which draws its base seed from torch's global
    generator: a run that checked its images would otherwise train on other random numbers."""
    import random

    copy = tmp_path / "copy"
    shutil.copytree(standin_dir, copy, ignore=shutil.ignore_patterns("cache"))
    data = MiniPlacesDataModule(data_dir=str(copy), num_classes=4, num_workers=0, resize_size=36, crop_size=32)
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    data.prepare_data()  # checks all 80 images (no stamp yet)
    data.setup("fit")
    assert list((copy / "cache").glob("verified-*"))
    after = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    untouched = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(after[0], untouched[0]) and np.array_equal(after[1], untouched[1]) and after[2] == untouched[2]
