"""`lit-vision tune`: the search space, a study of ordinary fits with pruning, one study store
shared by two processes, and a study resumed after SIGKILL.

The end-to-end tests run the real command (in-process or as `python -m lit_vision`), whose trials
are child `lit-vision fit` processes on the tiny stand-in; each trial takes seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from lit_vision.errors import LitVisionError  # noqa: E402
from lit_vision.studies.space import flag, load_space  # noqa: E402


@pytest.fixture
def one_thread_children(monkeypatch):
    """The trials' processes use one thread each: faster for tiny tensors on shared cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def write_space(folder: Path, params: dict, **top) -> Path:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({**top, "params": params}))
    return path


# ---------------------------------------------------------------------- the space file
def test_space_reads_log_float_int_and_categorical(tmp_path):
    path = tmp_path / "space.yaml"
    # `1e-4` without a dot is a string to YAML 1.1: it is taken as the number it means.
    path.write_text(
        "metric: val/loss\ndirection: minimize\nparams:\n"
        "  model.init_args.lr: {low: 1e-4, high: 1.0e-2, log: true}\n"
        "  trainer.max_epochs: {low: 2, high: 8, step: 2}\n"
        "  model.init_args.optimizer: {choices: [adamw, sgd]}\n"
    )
    space = load_space(path)
    lr, epochs, optimizer = (p.distribution for p in space.params)
    assert isinstance(lr, optuna.distributions.FloatDistribution) and lr.log and lr.low == 1e-4
    assert isinstance(epochs, optuna.distributions.IntDistribution) and epochs.step == 2
    assert isinstance(optimizer, optuna.distributions.CategoricalDistribution)
    assert optimizer.choices == ("adamw", "sgd")
    assert (space.metric, space.direction) == ("val/loss", "minimize")
    assert flag("model.init_args.lr", 0.001) == "--model.init_args.lr=0.001"
    assert flag("trainer.enable_progress_bar", False) == "--trainer.enable_progress_bar=false"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"model.init_args.lr": {"low": 0.0, "high": 1.0, "log": True}}, "model.init_args.lr"),
        ({"model.init_args.lr": {"low": 1.0, "high": 0.1}}, "model.init_args.lr"),
        ({"model.init_args.lr": {"low": 0.1, "hihg": 1.0}}, "hihg"),
        ({"model.init_args.optimizer": {"choices": []}}, "model.init_args.optimizer"),
        ({"model.init_args.optimizer": "adamw"}, "model.init_args.optimizer"),
    ],
)
def test_space_mistakes_name_the_key(tmp_path, params, named):
    with pytest.raises(LitVisionError) as error:
        load_space(write_space(tmp_path, params))
    assert named in str(error.value) and "space.yaml" in str(error.value)


@pytest.mark.slow
def test_unknown_key_is_one_paragraph_naming_it(tiny_config, tmp_path, run_cli, capsys):
    space = write_space(tmp_path, {"model.init_args.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
                                   "model.init_args.lrr": {"low": 1.0e-4, "high": 1.0e-2}})  # fmt: skip
    assert run_cli("tune", "--config", tiny_config, "--space", space, "--trials", "1") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lit-vision: error: ") and len(err.splitlines()) == 1, err
    assert "params.model.init_args.lrr" in err and str(space) in err and "did you mean --model.init_args.lr" in err
    assert not list(Path("logs").glob("tiny/version_*"))  # no trial ran


# ---------------------------------------------------------------------- a study end to end
@pytest.mark.slow
def test_three_trials_prune_the_bad_one_and_the_best_recipe_fits(tiny_config, tmp_path, run_cli, one_thread_children):
    space = write_space(
        tmp_path,
        {"model.init_args.optimizer": {"choices": ["adamw", "sgd"]},
         "model.init_args.lr": {"low": 1.0e-4, "high": 1.0, "log": True}},
        metric="val/loss", direction="minimize",
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / 'study.db'}"
    # Optuna's own queue fixes the values: two sensible trials (never pruned: the pruner waits
    # for 2 complete ones), then one whose learning rate blows the loss up (AdamW at lr 1:
    # val/loss ~1e12 after one epoch, not NaN).
    queued = optuna.create_study(study_name="s", storage=url, direction="minimize")
    for values in ({"model.init_args.optimizer": "adamw", "model.init_args.lr": 1e-3},
                   {"model.init_args.optimizer": "sgd", "model.init_args.lr": 3e-3},
                   {"model.init_args.optimizer": "adamw", "model.init_args.lr": 1.0}):  # fmt: skip
        queued.enqueue_trial(values)
    code = run_cli(
        "tune", "--config", tiny_config, "--space", space, "--trials", "3", "--storage", url, "--study", "s",
        "--pruner_startup_trials", "2", "--trainer.max_epochs", "2",
    )  # fmt: skip
    assert code == 0
    study = optuna.load_study(study_name="s", storage=url)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert isinstance(trials[0].distributions["model.init_args.lr"], optuna.distributions.FloatDistribution)
    assert trials[0].distributions["model.init_args.lr"].log
    assert isinstance(trials[0].distributions["model.init_args.optimizer"], optuna.distributions.CategoricalDistribution)
    assert [t.state.name for t in trials[:2]] == ["COMPLETE", "COMPLETE"]
    bad = trials[2]
    assert bad.state.name == "PRUNED" and bad.user_attrs["pruned_at_epoch"] == 0
    # The pruned trial's own folder says so, and it ran one epoch of its two.
    record = json.loads((Path(bad.user_attrs["log_dir_0"]) / "trial.json").read_text())
    assert record["state"] == "PRUNED" and "pruned after epoch 0" in record["reason"] and record["trial"] == 2
    assert record["params"]["model.init_args.lr"] == 1.0
    # Each trial is an ordinary fit in its own version folder.
    assert len({t.user_attrs["log_dir_0"] for t in trials}) == 3
    folder = tmp_path / "logs" / "tiny" / "tune" / "s"
    rows = (folder / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and "PRUNED" in rows[3]
    assert (folder / "optimization_history.png").stat().st_size > 0
    assert (folder / "param_importances.png").stat().st_size > 0
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["model"]["init_args"]["lr"] == study.best_trial.params["model.init_args.lr"]
    # The best recipe is a config `lit-vision fit --config` takes as it is.
    versions = set(os.listdir(tmp_path / "logs" / "tiny"))
    assert run_cli("fit", "--config", folder / "best.yaml", "--trainer.max_epochs", "1") == 0
    new = set(os.listdir(tmp_path / "logs" / "tiny")) - versions
    assert len(new) == 1 and (tmp_path / "checkpoints" / "tiny" / new.pop() / "last.ckpt").exists()


def tune_command(config: Path, space: Path, url: str, trials: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lit_vision", "tune", "--config", str(config), "--space", str(space),
            "--trials", str(trials), "--storage", url, "--study", "s", "--pruner", "none",
            "--trainer.max_epochs", "1", *extra]  # fmt: skip


@pytest.mark.slow
def test_two_processes_share_one_sqlite_store(tiny_config, tmp_path, monkeypatch, one_thread_children):
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {"model.init_args.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}})
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    command = tune_command(tiny_config, space, url, 4)
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=900)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    # --trials is the study's total; each process stops once the store holds it (a process
    # that started its trial before the total was reached finishes it: at most one more each).
    assert 4 <= len(finished) <= 5 and len(trials) == len(finished)
    # No trial ran twice: one run folder per trial, one trial per run folder, both processes took part.
    folders = [t.user_attrs["log_dir_0"] for t in trials]
    assert len(set(folders)) == len(trials)
    assert sorted(p.name for p in (tmp_path / "logs" / "tiny").glob("version_*")) == sorted(Path(f).name for f in folders)
    assert len({t.user_attrs["study_process"] for t in trials}) == 2


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def process_gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkilled_study_resumes_with_the_same_command(tiny_config, tmp_path, monkeypatch, one_thread_children):
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {"model.init_args.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}})
    url = f"sqlite:///{tmp_path / 'study.db'}"
    command = tune_command(tiny_config, space, url, 2, "--heartbeat", "1")
    study_process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill the study's process while its first trial is training.
    trial_file = tmp_path / "logs" / "tiny" / "version_0" / "trial.json"
    running = wait_until(lambda: trial_file.exists() and json.loads(trial_file.read_text()), 600, "trial 0 to start")
    assert running["state"] == "RUNNING"
    study_process.send_signal(signal.SIGKILL)
    study_process.wait()
    # Its trial's run does not go on training as an orphan: it is told to stop (SIGTERM).
    wait_until(lambda: process_gone(running["pid"]), 120, "the orphaned trial run to stop")
    time.sleep(4)  # past the grace period (3 heartbeats of 1 s): the trial is seen as dead
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert trials[0].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == trials[0].params
    assert len([t for t in trials if t.state.name == "COMPLETE"]) == 2
    # The killed trial's folder says what became of it.
    record = json.loads(trial_file.read_text())
    assert record["state"] == "FAIL" and f"retried as trial {retries[0].number}" in record["note"]
    table = (tmp_path / "logs" / "tiny" / "tune" / "s" / "trials.csv").read_text()
    assert "FAIL" in table and "retried as trial" in table


@pytest.mark.slow
def test_sigterm_stops_the_trial_and_queues_it_again(tiny_config, tmp_path, monkeypatch, one_thread_children):
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {"model.init_args.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}})
    url = f"sqlite:///{tmp_path / 'study.db'}"
    command = tune_command(tiny_config, space, url, 2, "--trainer.max_epochs", "50")
    study_process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Once the trial's fit has written its first last.ckpt, stop the study as a scheduler would.
    wait_until((tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt").exists, 600, "the first epoch")
    study_process.send_signal(signal.SIGTERM)
    err = study_process.communicate(timeout=300)[1]
    assert study_process.returncode == 143, err
    assert "the same command resumes the study" in err
    running = json.loads((tmp_path / "logs" / "tiny" / "version_0" / "trial.json").read_text())
    assert process_gone(running["pid"])
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert trials[0].state.name == "FAIL" and "SIGTERM" in trials[0].user_attrs["reason"]
    assert trials[1].state.name == "WAITING" and trials[1].user_attrs["retry_of"] == 0
    assert trials[1].system_attrs["fixed_params"] == trials[0].params  # Optuna's queue: run with these values
    assert json.loads((tmp_path / "logs" / "tiny" / "version_0" / "trial.json").read_text())["state"] == "FAIL"
