"""The summary of one run repeated over seeds: for every final metric, n, mean, standard
deviation and the 95% t-interval of the mean; for every run, its accuracies with their Wilson 95%
interval over the images it evaluated. Printed as tables, written as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from lit_vision.utils.files import atomic_write_text
from lit_vision.utils.intervals import accuracy_interval, t_interval
from lit_vision.utils.tables import format_table

EVALUATION_PREFIXES = ("val/", "test/")
# Accuracies measured on every image of the stage (the Wilson interval needs that image count):
# top-1/top-5 anywhere; on test, also the adversarial evaluation's, which attacks every image the
# test sees (its max_images ends the test). Validation's adversarial figures cover only its first
# batches, so they get none.
PLAIN_ACCURACIES = ("top1", "top5")
TEST_ADVERSARIAL_ACCURACIES = ("robust_top1", "adv_top1", "adv_top5", "suite_top1_")


def over_every_image(stage: str, metric: str) -> bool:
    """Whether `stage/metric` is a fraction of every image the stage evaluated."""
    return metric in PLAIN_ACCURACIES or (stage == "test" and metric.startswith(TEST_ADVERSARIAL_ACCURACIES))


def final_metrics(record: dict) -> dict[str, float]:
    """The evaluation metrics of one run's record (val/..., test/...), by name."""
    return {k: v for k, v in record["metrics"].items() if k.startswith(EVALUATION_PREFIXES)}


def accuracy_intervals(record: dict) -> dict[str, dict]:
    """`{"val/top1": {"value", "low", "high", "images"}}` for the plain accuracies of one run."""
    found = {}
    for name, value in final_metrics(record).items():
        stage, _, metric = name.partition("/")
        images = record.get("images", {}).get(stage)
        if over_every_image(stage, metric) and images:
            interval = accuracy_interval(value, images)
            found[name] = {"value": value, "low": interval.low, "high": interval.high, "images": images}
    return found


def summarise(records: list[dict], seeds: list[int]) -> dict:
    """Per-run rows and per-metric summaries (only metrics every run logged)."""
    names = sorted(set.intersection(*(set(final_metrics(r)) for r in records))) if records else []
    runs = [
        {
            "seed": seed,
            "log_dir": record.get("log_dir"),
            "checkpoint_dir": record.get("checkpoint_dir"),
            "metrics": final_metrics(record),
            "images": record.get("images", {}),
            "wilson95": accuracy_intervals(record),
        }
        for seed, record in zip(seeds, records)
    ]
    summary = {name: t_interval([r["metrics"][name] for r in runs]).as_dict() for name in names}
    return {"seeds": seeds, "runs": runs, "summary": summary}


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"


def summary_rows(result: dict) -> list[dict]:
    return [
        {
            "metric": name,
            "n": s["n"],
            "mean": _cell(s["mean"]),
            "std": _cell(s["std"]),
            "95% CI": "" if s["ci95_low"] is None else f"[{_cell(s['ci95_low'])}, {_cell(s['ci95_high'])}]",
        }
        for name, s in result["summary"].items()
    ]


def run_rows(result: dict) -> list[dict]:
    rows = []
    for run in result["runs"]:
        row = {"seed": run["seed"], "run": os.path.relpath(run["log_dir"]) if run["log_dir"] else ""}
        for name, value in run["metrics"].items():
            w = run["wilson95"].get(name)
            row[name] = _cell(value) + (f" [{w['low']:.3f}, {w['high']:.3f}] n={w['images']}" if w else "")
        rows.append(row)
    return rows


def render(result: dict) -> str:
    """The printed form: the runs (accuracies with Wilson 95% over their images), then the
    summary over seeds (mean, std, 95% t-interval of the mean)."""
    return (
        f"runs (one per seed; accuracies with their Wilson 95% interval over n images):\n{format_table(run_rows(result))}\n\n"
        f"over {len(result['runs'])} seeds (mean, sample std, 95% t-interval of the mean):\n"
        f"{format_table(summary_rows(result))}"
    )


def write(result: dict, folder: Path) -> tuple[Path, Path]:
    """summary.json (everything) and summary.csv (one row per metric) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(folder / "summary.json", json.dumps(result, indent=2) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["metric", "n", "mean", "std", "ci95_low", "ci95_high"])
    writer.writeheader()
    for name, s in result["summary"].items():
        writer.writerow({"metric": name, **s})
    csv_path = atomic_write_text(folder / "summary.csv", text.getvalue())
    return json_path, csv_path
