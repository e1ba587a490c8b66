"""`python -m lit_vision.data.digits`: scikit-learn's real digits written in MiniPlaces layout,
read back by the DataModule; a clear error without scikit-learn or over a foreign folder."""

from __future__ import annotations

import sys

import pytest
import torch

from lit_vision.data.digits import DIGIT_NAMES, main, write_digits
from lit_vision.errors import LitVisionError

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits16(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("d") / "digits16", size=16)


def test_layout_split_and_categories(digits16):
    from lit_vision.data import MiniPlacesDataModule

    train = (digits16 / "train.txt").read_text().splitlines()
    val = (digits16 / "val.txt").read_text().splitlines()
    assert len(train) + len(val) == 1797 and abs(len(val) - 0.2 * 1797) < 10
    assert not {line.split()[0] for line in train} & {line.split()[0] for line in val}
    labels = [int(line.split()[1]) for line in val]
    assert all(30 <= labels.count(k) <= 40 for k in range(10))  # stratified: ~36 per digit
    assert (digits16 / "categories.txt").read_text().splitlines()[3] == "/t/three 3"

    data = MiniPlacesDataModule(data_dir=str(digits16), num_classes=10, batch_size=8, num_workers=0,
                                resize_size=16, crop_size=16, pin_memory=False)  # fmt: skip
    data.setup("validate")
    assert data.class_names == DIGIT_NAMES
    images, _ = next(iter(data.val_dataloader()))
    assert images.shape == (8, 3, 16, 16) and images.dtype == torch.uint8
    assert images.float().std() > 30  # real strokes, not a blank page


def test_split_is_deterministic_and_seeded(tmp_path, digits16):
    again = write_digits(tmp_path / "again", size=16)
    assert (again / "val.txt").read_text() == (digits16 / "val.txt").read_text()
    other = write_digits(tmp_path / "other", size=16, seed=1)
    assert (other / "val.txt").read_text() != (digits16 / "val.txt").read_text()
    assert write_digits(digits16, size=16) == digits16  # an identical folder is reused


def test_refuses_a_foreign_folder_and_other_settings(tmp_path, digits16, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "mine")])
    assert exit_info.value.code == 2
    assert "refusing to write into it" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(LitVisionError, match="'size': 16.*'size': 32"):
        write_digits(digits16, size=32)
    with pytest.raises(LitVisionError, match="--size"):
        write_digits(tmp_path / "x", size=4)


def test_missing_scikit_learn_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(LitVisionError, match=r"pip install 'lit-vision\[digits\]'"):
        write_digits(tmp_path / "digits")
    assert not (tmp_path / "digits").exists()
