"""`lit-vision predict` on the user's own images (`ImagePredictions`): a mixed folder (JPEG,
PNG, grey, RGBA, palette, BMP, WebP, odd sizes, nested, a stray text file) and a single file,
through the CLI; unreadable input fails with a message naming it."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_vision.data.image_folder import ImageFiles, list_image_files, load_rgb
from lit_vision.data.transforms import eval_transform
from lit_vision.errors import LitVisionError


def mixed_folder(root: Path) -> list[str]:
    """Write images of several formats, modes and sizes; return their relative paths, sorted."""
    rng = np.random.default_rng(0)

    def pixels(h: int, w: int, channels: int) -> np.ndarray:
        return rng.integers(0, 256, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)

    images = {
        "beach.jpg": Image.fromarray(pixels(128, 128, 3)),
        "wide.png": Image.fromarray(pixels(30, 200, 3)),
        "grey.png": Image.fromarray(pixels(90, 60, 1), mode="L"),
        "nested/deeper/transparent.png": Image.fromarray(pixels(50, 51, 4), mode="RGBA"),
        "nested/palette.gif": Image.fromarray(pixels(40, 40, 3)).convert("P"),
        "nested/old.bmp": Image.fromarray(pixels(17, 300, 3)),
        "nested/photo.JPEG": Image.fromarray(pixels(400, 300, 3)),
        "modern.webp": Image.fromarray(pixels(64, 80, 3)),
    }
    for relative, image in images.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.fromarray(pixels(8, 8, 3)).save(root / ".hidden" / "thumb.png")
    return sorted(images)


def test_listing_finds_every_image_recursively(tmp_path):
    expected = mixed_folder(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)] == expected
    assert list_image_files(tmp_path / "beach.jpg") == [tmp_path / "beach.jpg"]


def test_every_format_becomes_an_rgb_crop_of_the_model_size(tmp_path):
    mixed_folder(tmp_path)
    dataset = ImageFiles(list_image_files(tmp_path), eval_transform(36, 32))
    for i in range(len(dataset)):
        image, index = dataset[i]
        assert index == i and image.dtype == torch.uint8 and image.shape == (3, 32, 32), dataset.files[i]


def test_bad_input_names_the_culprit(tmp_path):
    with pytest.raises(LitVisionError, match=f"{tmp_path / 'missing'} does not exist"):
        list_image_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(LitVisionError, match=f"{tmp_path / 'empty'} holds no image files"):
        list_image_files(tmp_path / "empty")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(LitVisionError, match=f"Cannot read image {broken}"):
        load_rgb(broken)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_predict_a_mixed_folder_and_a_single_file_through_the_cli(tiny_config, run_cli, tmp_path, standin_dir, caplog):
    photos = tmp_path / "photos"
    expected = mixed_folder(photos)
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_epochs", "1") == 0
    last = next((tmp_path / "checkpoints").rglob("last.ckpt"))
    categories = {
        line.split()[0].rsplit("/", 1)[-1] for line in (standin_dir / "categories.txt").read_text().splitlines()
    }

    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        code = run_cli("predict", "--config", tiny_config, "--ckpt_path", last, "--experiment", "folder",
                       "--trainer.callbacks+=ImagePredictions", "--trainer.callbacks.input_path", photos,
                       "--trainer.callbacks.print_rows", "3")  # fmt: skip
    assert code == 0
    log_dir = next((tmp_path / "logs" / "folder" / "eval").glob("version_*"))
    assert not (log_dir / "submission.txt").exists()  # the folder's rows are not the challenge's
    with open(log_dir / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == expected
    for row in rows:
        classes = [row[f"class_{j}"] for j in range(1, 5)]
        probabilities = [float(row[f"probability_{j}"]) for j in range(1, 5)]
        assert set(classes) == categories  # 4 classes: the top 5 is all of them, by name
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-4)
    saved = json.loads((log_dir / "predictions.json").read_text())
    assert [p["file"] for p in saved["predictions"]] == expected
    assert saved["predictions"][0]["top5"][0]["class"] == rows[0]["class_1"]
    printed = caplog.text
    assert expected[2] in printed and expected[3] not in printed and "2nd" in printed

    single = photos / "nested" / "old.bmp"
    assert run_cli("predict", "--config", tiny_config, "--ckpt_path", last, "--experiment", "single",
                   "--trainer.callbacks+=ImagePredictions", "--trainer.callbacks.input_path", single) == 0  # fmt: skip
    with open(next((tmp_path / "logs" / "single").rglob("predictions.csv"))) as handle:
        single_rows = list(csv.DictReader(handle))
    assert [row["file"] for row in single_rows] == ["old.bmp"]
    # The same image predicted alone or within the folder gets the same classes.
    assert single_rows[0]["class_1"] == next(r for r in rows if r["file"] == "nested/old.bmp")["class_1"]


@pytest.mark.slow
def test_predict_on_a_missing_folder_is_a_clear_error(tiny_config, run_cli, tmp_path, capsys):
    code = run_cli("predict", "--config", tiny_config, "--trainer.callbacks+=ImagePredictions",
                   "--trainer.callbacks.input_path", tmp_path / "nowhere")  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere'} does not exist" in error and "Traceback" not in error
