"""`bench gpu`'s model rows as a user's recipe states them: the recipe files are read through the
package's one config reader, and the SimpleNet row builds the hand-written convolution by its
current option names (tiny CPU runs; no GPU needed)."""

from __future__ import annotations

import argparse
import warnings

import torch

from lit_vision.bench.gpu import recipes
from lit_vision.bench.gpu.ops import simplenet_conv_rows


def test_a_recipe_names_its_shared_pieces_and_a_missing_one_is_said(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "small.yaml").write_text("batch_size: 48\n")
    (tmp_path / "simplenet.yaml").write_text("model:\n  class_path: SimpleNet\n  init_args: {lr: 0.5}\ndata: data/small.yaml\n")
    (tmp_path / "vit.yaml").write_text("model: {class_path: ViT}\ndata: data/missing.yaml\n")
    monkeypatch.setattr(recipes, "CONFIG_DIR", tmp_path)
    assert recipes.recipe("SimpleNet") == (48, {"lr": 0.5})
    assert recipes.recipe("ViT") == (256, {})
    said = capsys.readouterr().out
    assert "could not read a recipe for ViT" in said and f"{tmp_path / 'vit.yaml'} names data: data/missing.yaml" in said


def test_the_simplenet_row_runs_the_hand_written_convolution_without_deprecated_names():
    args = argparse.Namespace(image_size=16, batch_size=2, warmup=0, steps=1)
    with warnings.catch_warnings():
        # The earlier spelling `conv: im2col` warns (FutureWarning): as an error, it fails the row.
        warnings.simplefilter("error", FutureWarning)
        rows = simplenet_conv_rows(args, 2, torch.device("cpu"))
    assert [row.get("error") for row in rows] == [None, None]
    assert all(row["op"].startswith("SimpleNet step, conv: hand_written (auto) vs torch") for row in rows)
