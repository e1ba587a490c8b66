"""Run folders: every fit gets checkpoints/<experiment>/version_N paired with logs/<experiment>/
version_N, never another run's; claims race safely; `--ckpt_path last` takes the newest run's
last.ckpt and says so; evaluation runs log apart; and the console: fit says where its files
went, a message after a progress bar starts on its own line, no promotional tips."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from lit_vision.cli.plot import find_runs
from lit_vision.run_folders import claim_version

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _claim_many(folder: str, start, count: int, queue) -> None:
    start.wait()
    queue.put([claim_version(Path(folder)) for _ in range(count)])


def test_simultaneous_claims_get_distinct_versions(tmp_path):
    """Six processes released together, five claims each: 30 different folders."""
    context = multiprocessing.get_context("fork")
    start, queue = context.Event(), context.Queue()
    processes = [context.Process(target=_claim_many, args=(str(tmp_path), start, 5, queue)) for _ in range(6)]
    for process in processes:
        process.start()
    start.set()
    claimed = [version for _ in processes for version in queue.get(timeout=60)]
    for process in processes:
        process.join(timeout=60)
    assert sorted(claimed) == list(range(30))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"version_{n}" for n in range(30))


def test_claims_skip_numbers_taken_in_the_twin_root(tmp_path):
    (tmp_path / "logs" / "version_4").mkdir(parents=True)
    (tmp_path / "checkpoints" / "version_1").mkdir(parents=True)
    assert claim_version(tmp_path / "checkpoints", tmp_path / "logs") == 5


@pytest.mark.slow
def test_a_second_fit_of_the_same_experiment_touches_nothing_of_the_first(tiny_config, run_cli, tmp_path, capsys):
    assert run_cli("fit", "--config", tiny_config) == 0
    first = digests(tmp_path / "checkpoints" / "tiny" / "version_0") | digests(tmp_path / "logs" / "tiny" / "version_0")
    assert any(name.endswith("last.ckpt") for name in first) and any("best-" in name for name in first)
    capsys.readouterr()
    assert run_cli("fit", "--config", tiny_config) == 0
    assert capsys.readouterr().err.rstrip().endswith(
        "fit done: checkpoints in checkpoints/tiny/version_1; logs in logs/tiny/version_1."
    )
    assert digests(tmp_path / "checkpoints" / "tiny" / "version_0") | digests(
        tmp_path / "logs" / "tiny" / "version_0"
    ) == first  # byte for byte
    assert (tmp_path / "checkpoints" / "tiny" / "version_1" / "last.ckpt").is_file()
    assert list((tmp_path / "logs" / "tiny" / "version_1").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_ckpt_path_last_takes_the_newest_run_holding_one_and_evaluation_logs_apart(
    tiny_config, run_cli, tmp_path, capsys
):
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_steps", "2") == 0
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_steps", "3", "--trainer.logger", "false") == 0
    # A newer run that has not saved yet (or was killed first) holds no last.ckpt: skipped.
    (tmp_path / "checkpoints" / "tiny" / "version_2").mkdir()
    capsys.readouterr()
    assert run_cli("validate", "--config", tiny_config, "--ckpt_path", "last") == 0
    err = capsys.readouterr().err
    assert f"--ckpt_path last: using {Path('checkpoints/tiny/version_1/last.ckpt')}" in err
    # validate logged under eval/, so the experiment's folder plots its training run only.
    assert list((tmp_path / "logs" / "tiny" / "eval" / "version_0").glob("events.out.tfevents.*"))
    assert find_runs(tmp_path / "logs" / "tiny") == [tmp_path / "logs" / "tiny" / "version_0"]
    assert find_runs(tmp_path / "logs" / "tiny" / "eval") == [tmp_path / "logs" / "tiny" / "eval" / "version_0"]


FAILING = '''
from lightning.pytorch.callbacks import Callback
from lit_vision.errors import LitVisionError


class FailMidEpoch(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 1:
            raise LitVisionError("the probe stops this run mid-epoch")
'''


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_console_messages_start_on_their_own_line_and_no_tips(tiny_config, tmp_path):
    (tmp_path / "failing.py").write_text(textwrap.dedent(FAILING))
    failing = tmp_path / "failing.yaml"
    failing.write_text(yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "failing.FailMidEpoch"}]}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "lit_vision", "fit", "--config", str(tiny_config), "--config", str(failing),
         "--trainer.enable_progress_bar", "true"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=150,
    )  # fmt: skip
    output = result.stdout
    assert result.returncode == 2, output[-3000:]
    assert "Epoch 0:" in output  # the progress bar drew
    (line,) = [line for line in output.split("\n") if "the probe stops this run" in line]
    assert line == "lit-vision: error: the probe stops this run mid-epoch", output[-2000:]
    assert "Tip:" not in output and "litlogger" not in output and "litmodels" not in output


def test_a_fast_dev_run_claims_no_folder_and_names_none(tiny_config, run_cli, tmp_path, capsys):
    """Lightning's fast_dev_run writes no checkpoint and no log: the closing line must not point
    at an empty folder, and the version it claimed is given back (the next fit is version_0)."""
    assert run_cli("fit", "--config", tiny_config, "--trainer.fast_dev_run", "1") == 0
    err = capsys.readouterr().err
    assert "fast_dev_run checks the run end to end and writes no checkpoint or log" in err
    assert "checkpoints in" not in err
    assert list(tmp_path.glob("*/tiny/version_*")) == []  # checkpoints/ and logs/
