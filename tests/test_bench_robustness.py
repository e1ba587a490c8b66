"""`python -m lit_vision.bench robustness` end to end on a tiny stand-in: its rows and its cost columns."""

import json

import pytest

from lit_vision.bench.__main__ import main
from lit_vision.errors import LitVisionError


@pytest.mark.slow
def test_rows_split_the_epoch_into_training_and_the_selection_attack(tmp_path):
    out = tmp_path / "rows.json"
    main([
        "robustness", "--data-dir", str(tmp_path / "standin"), "--standin", "--standin-per-class", "8",
        "--num-classes", "4", "--size", "16", "--epochs", "2", "--batch-size", "16",
        "--settings", "clean,fastweight1.0", "--suite", "none", "--select-batches", "1", "--json", str(out),
    ])  # fmt: skip
    rows = {row["setting"]: row for row in json.loads(out.read_text())["rows"]}
    clean, fast = rows["clean"], rows["fastweight1.0"]
    # Clean training validates nothing; the adversarial setting's PGD-10 selection costs time,
    # which lies inside its epoch (Lightning validates before the epoch ends).
    assert clean["select s/epoch"] == 0.0
    assert 0.0 < fast["select s/epoch"] < fast["CPU s/epoch"]
    assert fast["train vs clean"] == pytest.approx(
        (fast["CPU s/epoch"] - fast["select s/epoch"]) / clean["CPU s/epoch"]
    )
    assert fast["epoch vs clean"] == pytest.approx(fast["CPU s/epoch"] / clean["CPU s/epoch"])
    assert fast["epoch kept"] in (0, 1) and fast["images"] == clean["images"] > 0


def test_unknown_settings_are_refused_before_any_training(tmp_path):
    with pytest.raises(LitVisionError, match="Unknown setting 'fastest'"):
        main(["robustness", "--data-dir", str(tmp_path), "--settings", "clean,fastest", "--suite", "none"])
