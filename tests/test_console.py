"""The CLI's quiet defaults: each known-noise filter hides its one message and nothing else, and
the model summary drops a FLOPs column that counted nothing."""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.utilities._pytree import _tree_flatten

from lit_vision import console
from lit_vision.callbacks.model_summary import SummaryWithoutZeroFlops


def test_the_pytree_deprecation_is_hidden_and_other_warnings_are_not():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _tree_flatten([1, 2])  # Lightning 2.6 builds a LeafSpec, which torch 2.14 deprecates
        assert any("LeafSpec" in str(w.message) for w in caught)  # it is there to hide
        caught.clear()
        console.silence_known_noise()
        _tree_flatten([1, 2])
        warnings.warn("a FutureWarning of the user's own", FutureWarning)
        console.ignore_lightning_warning("The dirpath has changed from")
        warnings.warn("The dirpath has changed from a to b", UserWarning)  # not from Lightning: shown
    assert [str(w.message) for w in caught] == ["a FutureWarning of the user's own", "The dirpath has changed from a to b"]


def test_the_summary_drops_a_flops_column_of_zeros_only(caplog):
    columns = [("Name", ["net"]), ("Params", ["318 K"]), ("FLOPs", ["0"])]
    with caplog.at_level(logging.INFO):
        SummaryWithoutZeroFlops.summarize(columns, 318_000, 318_000, 1.27, {"train": 3, "eval": 0}, 0)
        without = caplog.text
        caplog.clear()
        SummaryWithoutZeroFlops.summarize(columns[:2] + [("FLOPs", ["2.1 M"])], 318_000, 318_000, 1.27,
                                          {"train": 3, "eval": 0}, 2_100_000)  # fmt: skip
        counted = caplog.text
    assert "318 K" in without and "Total params" in without
    assert "FLOPs" not in without and "Total Flops" not in without
    assert "2.1 M" in counted and "Total Flops" in counted
