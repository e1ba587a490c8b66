"""What a study leaves beside its trials' logs, in logs/<experiment>/tune/<study>/:

- trials.csv and trials.md: every trial (number, state, value, parameters, seeds' values, run
  folders, why it was pruned, failed or retried), also printed;
- best.yaml: the best trial's complete config, as `lit-vision fit --print_config` writes it for
  the recipe plus the trial's values, so `lit-vision fit --config best.yaml` takes it as it is;
- optimization_history.png and param_importances.png: Optuna's plots (matplotlib).

It also brings each trial's own `trial.json` up to date with the trial's final state in the
study (a trial whose process died says FAIL and which trial retried it).
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from pathlib import Path

from lit_vision import console
from lit_vision.studies.pruning import TRIAL_FILE, write_trial_file
from lit_vision.studies.space import Space, flag, resolved_config
from lit_vision.utils.files import atomic_write_text
from lit_vision.utils.tables import format_table


def log_dirs(trial) -> list[str]:
    return [trial.user_attrs[k] for k in sorted(trial.user_attrs) if k.startswith("log_dir")]


def retry_of(trial) -> int | None:
    """The trial this one runs again: after a dead process (Optuna's RetryHeartbeatStaleTrialCallback)
    or a run stopped by a signal (the study's own re-queue)."""
    return trial.system_attrs.get("failed_trial", trial.user_attrs.get("retry_of"))


def trial_notes(study) -> dict[int, str]:
    trials = study.get_trials(deepcopy=False)
    retried_by = {retry_of(t): t.number for t in trials if retry_of(t) is not None}
    notes = {}
    for t in trials:
        parts = []
        if t.user_attrs.get("reason"):
            parts.append(t.user_attrs["reason"])
        elif t.state.name == "FAIL":
            parts.append("its process stopped before the trial ended (killed or lost)")
        if retry_of(t) is not None:
            parts.append(f"retry of trial {retry_of(t)}")
        if t.number in retried_by:
            parts.append(f"retried as trial {retried_by[t.number]}")
        notes[t.number] = "; ".join(parts)
    return notes


def trial_rows(study) -> list[dict]:
    notes = trial_notes(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name, "value": "" if t.value is None else f"{t.value:.4f}"}
        row.update({k: v for k, v in t.params.items()})
        seeds = t.user_attrs.get("seed_values")
        if seeds:
            row["seeds' values"] = " ".join(f"{v:.4f}" for v in seeds)
        if t.datetime_start and t.datetime_complete:
            row["seconds"] = f"{(t.datetime_complete - t.datetime_start).total_seconds():.0f}"
        row["run"] = " ".join(os.path.relpath(d) for d in log_dirs(t))
        row["note"] = notes[t.number]
        rows.append(row)
    return rows


def update_trial_files(study) -> None:
    """Each trial's folder says the trial's final state (as the study holds it)."""
    notes = trial_notes(study)
    for t in study.get_trials(deepcopy=False):
        for folder in log_dirs(t):
            path = Path(folder) / TRIAL_FILE
            if not Path(folder).is_dir():
                continue  # on another machine
            previous = json.loads(path.read_text()) if path.exists() else {}
            content = {**previous, "study": study.study_name, "trial": t.number, "params": t.params, "state": t.state.name}
            if t.value is not None:
                content["value"] = t.value
            if notes[t.number]:
                content["note"] = notes[t.number]
            if content != previous:
                write_trial_file(folder, content)


def write_best_recipe(study, recipe_args: list[str], space: Space, folder: Path) -> Path | None:
    """best.yaml: the merged config of the recipe plus the best trial's values."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial
        return None
    code, text, err = resolved_config(recipe_args, [flag(k, v) for k, v in best.params.items()])
    if code != 0:
        console.say(f"best.yaml not written: the CLI refused the best trial's values: {err.strip()}")
        return None
    path = folder / "best.yaml"
    header = (
        f"# The best trial ({best.number}) of study {study.study_name!r}: {space.metric} = {best.value:.4f} "
        f"({space.direction}).\n# Its values on top of: lit-vision fit {' '.join(recipe_args)}\n"
        f"#   {' '.join(flag(k, v) for k, v in best.params.items())}\n"
        f"# Train it: lit-vision fit --config {os.path.relpath(path)}\n"
    )
    return atomic_write_text(path, header + text)


def write_plots(study, folder: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances as PNG (importances need two
    complete trials and a parameter that varied among them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from optuna.trial import TrialState

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, plot in (("optimization_history", vis.plot_optimization_history), ("param_importances", vis.plot_param_importances)):
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if name == "param_importances" and len(complete) < 2:
                # Optuna would draw equal bars from one trial: a plot that means nothing.
                console.say(f"{name}.png not drawn: it needs two complete trials ({len(complete)} so far).")
                (folder / f"{name}.png").unlink(missing_ok=True)  # an older one would no longer be this study's
                continue
            try:
                axes = plot(study)
            except (ValueError, RuntimeError) as error:
                console.say(f"{name}.png not drawn: {error}")
                (folder / f"{name}.png").unlink(missing_ok=True)
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            written.append(path)
    return written


def write_report(study, recipe_args: list[str], space: Space, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    update_trial_files(study)
    rows = trial_rows(study)
    text = io.StringIO()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / "trials.csv", text.getvalue())
    table = format_table(rows)
    atomic_write_text(folder / "trials.md", table + "\n")
    print(table, flush=True)
    best = write_best_recipe(study, recipe_args, space, folder)
    plots = write_plots(study, folder)
    return {"best": best, "plots": plots, "table": folder / "trials.csv"}
