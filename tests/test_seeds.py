"""`--seeds 0,1,2` on fit / validate / test and the intervals every summary carries: the t-interval
over seeds and the Wilson interval of one evaluation's accuracy."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vision.errors import LitVisionError
from lit_vision.studies.seeds import take_seeds
from lit_vision.studies.summary import accuracy_intervals
from lit_vision.utils.intervals import accuracy_interval, t_interval, wilson_interval


# ---------------------------------------------------------------------- intervals
def test_wilson_interval_matches_its_formula():
    correct, n, z = 89, 100, 1.959963984540054
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    interval = wilson_interval(correct, n)
    assert interval.low == pytest.approx(centre - half, abs=1e-9)
    assert interval.high == pytest.approx(centre + half, abs=1e-9)
    # At 100% the interval stays inside [0, 1] and is not a point (the normal one would be).
    full = accuracy_interval(1.0, 16)
    assert full.high == pytest.approx(1.0) and 0.75 < full.low < 0.85
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_t_interval_over_seeds():
    summary = t_interval([0.80, 0.84, 0.88])
    assert summary.mean == pytest.approx(0.84) and summary.std == pytest.approx(0.04)
    half = 4.302652729911275 * 0.04 / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert (summary.interval.low, summary.interval.high) == pytest.approx((0.84 - half, 0.84 + half))
    single = t_interval([0.5])
    assert single.n == 1 and single.std is None and single.interval is None


# ---------------------------------------------------------------------- the flag
def test_intervals_go_to_the_accuracies_over_every_evaluated_image():
    """The test's adversarial accuracies cover every image the test saw (its max_images ends the
    test); validation's cover only its first batches, so they get no interval over the split."""
    record = {
        "metrics": {"val/top1": 0.9, "val/adv_top1": 0.4, "test/top1": 0.8, "test/robust_top1": 0.5,
                    "test/suite_top1_apgd_ce": 0.6, "test/adv_top1_least_likely": 0.7, "test/suite_seconds": 3.0},
        "images": {"val": 200, "test": 100},
    }  # fmt: skip
    found = accuracy_intervals(record)
    assert set(found) == {"val/top1", "test/top1", "test/robust_top1", "test/suite_top1_apgd_ce", "test/adv_top1_least_likely"}
    robust = found["test/robust_top1"]
    assert {"low": robust["low"], "high": robust["high"]} == wilson_interval(50, 100).as_dict() and robust["images"] == 100


def test_seeds_flag_is_split_from_the_command_line():
    assert take_seeds(["--config", "a.yaml", "--seeds", "0,1,2", "--trainer.max_epochs", "2"]) == (
        [0, 1, 2], ["--config", "a.yaml", "--trainer.max_epochs", "2"],
    )  # fmt: skip
    assert take_seeds(["--seeds=3,4"]) == ([3, 4], [])
    assert take_seeds(["--config", "a.yaml"]) == (None, ["--config", "a.yaml"])
    for bad in ("0,x", "1,1", ""):
        with pytest.raises(LitVisionError, match="--seeds"):
            take_seeds(["--seeds", bad])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0,zero"], "--seeds 0,zero: expected distinct integers"),
        (["--seeds", "0,1", "--seed_everything", "3"], "--seeds and --seed_everything both set the seed"),
        (["--seeds", "0,1", "--ckpt_path", "last"], "fit --seeds starts one new run per seed"),
    ],
)
def test_bad_seeds_is_one_paragraph_and_exit_2(tiny_config, run_cli, capsys, extra, message):
    assert run_cli("fit", "--config", tiny_config, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lit-vision: error: {message}") and len(err.splitlines()) == 1, err


# ---------------------------------------------------------------------- end to end
def last_scalar(run: Path, tag: str) -> float:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return events.Scalars(tag)[-1].value


@pytest.mark.slow
def test_fit_over_seeds_gives_n_runs_and_their_summary(tiny_config, tmp_path, run_cli, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the runs are child processes
    assert run_cli("fit", "--config", tiny_config, "--seeds", "0,1", "--trainer.max_epochs", "2") == 0
    out = capsys.readouterr().out
    runs = sorted((tmp_path / "logs" / "tiny").glob("version_*"))
    assert [r.name for r in runs] == ["version_0", "version_1"]
    assert all((tmp_path / "checkpoints" / "tiny" / r.name / "last.ckpt").exists() for r in runs)
    folder = tmp_path / "logs" / "tiny" / "seeds" / "version_0+1"
    result = json.loads((folder / "summary.json").read_text())
    assert result["seeds"] == [0, 1] and [Path(r["log_dir"]).name for r in result["runs"]] == ["version_0", "version_1"]
    # The two seeds really differ, and the summary's mean is the mean of what the runs logged.
    for tag in ("val/top1", "val/loss"):
        logged = [last_scalar(run, tag) for run in runs]
        assert result["summary"][tag]["n"] == 2
        assert result["summary"][tag]["mean"] == pytest.approx(sum(logged) / 2, abs=1e-6)
    assert last_scalar(runs[0], "val/loss") != last_scalar(runs[1], "val/loss")
    # Each run's accuracy carries its Wilson interval over the 16 validation images.
    wilson = result["runs"][0]["wilson95"]["val/top1"]
    assert wilson["images"] == 16 and wilson["low"] <= wilson["value"] <= wilson["high"]
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert {row["metric"] for row in rows} >= {"val/top1", "val/top5", "val/loss"}
    assert "95% CI" in out and "n=16" in out


@pytest.mark.slow
def test_validate_over_seeds_evaluates_each_seeds_own_model(tiny_config, tmp_path, run_cli, capsys, monkeypatch):
    """`fit --seeds 0,1` then `validate --seeds 0,1 --ckpt_path last`: seed S's evaluation reads
    the model trained with seed S (not the newest run twice); a checkpoint file is evaluated
    once per seed; a seed that was never trained is one paragraph naming it."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert run_cli("fit", "--config", tiny_config, "--seeds", "1,0") == 0  # seed 0's run is the newest
    trained = {1: tmp_path / "logs" / "tiny" / "version_0", 0: tmp_path / "logs" / "tiny" / "version_1"}
    capsys.readouterr()
    assert run_cli("validate", "--config", tiny_config, "--ckpt_path", "last", "--seeds", "0,1") == 0
    evaluated = dict(zip((0, 1), sorted((tmp_path / "logs" / "tiny" / "eval").glob("version_*"))))
    for seed, run in evaluated.items():
        assert f"tiny/version_{trained[seed].name[-1]}/last.ckpt" in (run / "config.yaml").read_text()
        # The same weights on the same images: the evaluation repeats the fit's last validation.
        assert last_scalar(run, "val/loss") == pytest.approx(last_scalar(trained[seed], "val/loss"), abs=1e-5)
    assert last_scalar(evaluated[0], "val/loss") != last_scalar(evaluated[1], "val/loss")

    checkpoint = tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt"
    assert run_cli("validate", "--config", tiny_config, "--ckpt_path", str(checkpoint), "--seeds", "0,1") == 0
    result = json.loads((tmp_path / "logs" / "tiny" / "eval" / "seeds" / "version_2+3" / "summary.json").read_text())
    # Validation of one checkpoint without randomness: both seeds measure the same.
    assert result["summary"]["val/top1"]["std"] == pytest.approx(0.0)
    assert result["runs"][0]["images"] == {"val": 16}

    capsys.readouterr()
    assert run_cli("validate", "--config", tiny_config, "--ckpt_path", "best", "--seeds", "0,2") == 2
    assert "run trained with seed 2" in capsys.readouterr().err
