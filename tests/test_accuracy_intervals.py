"""An accuracy from one evaluation carries its binomial spread: `validate` and `test` print each
top-1/top-5 with its Wilson 95% interval over the images they really evaluated."""

from __future__ import annotations

import re

import pytest

from lit_vision.utils.intervals import wilson_interval


@pytest.mark.parametrize("correct,n", [(0, 10), (10, 10), (3, 7), (449, 500), (1, 1), (50, 128)])
def test_wilson_closed_form_equals_scipys(correct, n):
    stats = pytest.importorskip("scipy.stats")
    reference = stats.binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    interval = wilson_interval(correct, n)
    assert interval.low == pytest.approx(reference.low, abs=1e-12)
    assert interval.high == pytest.approx(reference.high, abs=1e-12)


@pytest.mark.parametrize("subcommand,stage", [("validate", "val"), ("test", "test")])
def test_evaluation_prints_each_accuracy_with_its_interval_over_the_images_seen(
    subcommand, stage, tiny_config, run_cli, capsys
):
    # 2 batches of 4: the interval is over 8 images, not over the split's 16.
    code = run_cli(subcommand, "--config", tiny_config, "--data.batch_size", "4", "--trainer.limit_val_batches", "2",
                   "--trainer.limit_test_batches", "2")  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    for metric in ("top1", "top5"):
        line = re.search(rf"{stage}/{metric} (\S+): 95% interval \[(\S+), (\S+)\] \(Wilson, (\d+) images\)", err)
        assert line, err[-2000:]
        value, low, high, images = float(line[1]), float(line[2]), float(line[3]), int(line[4])
        assert images == 8
        expected = wilson_interval(round(value * images), images)
        assert (low, high) == (pytest.approx(expected.low, abs=1e-4), pytest.approx(expected.high, abs=1e-4))
