"""Kill, stop and resume: a training process SIGKILLed at different moments resumes with
`--ckpt_path last` from the step last.ckpt holds and finishes; SIGTERM and SIGINT save
last.ckpt at the step they arrive, exit 143 / 130, and the resumed run starts at exactly
that step; a save that dies halfway never leaves a truncated last.ckpt in place of the
previous good one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from lit_vision.checkpoints import AtomicCheckpointIO

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

MAX_STEPS = 40  # 4 steps per epoch on the tiny stand-in: 10 epochs

PROBE = '''
import time
from lightning.pytorch.callbacks import Callback


class Probe(Callback):
    """Records the global step every fit starts from; sleeps after each batch so that a
    test can kill the process at a chosen moment."""

    def __init__(self, record: str, sleep: float = 0.0) -> None:
        self.record, self.sleep = record, sleep

    def on_train_start(self, trainer, pl_module) -> None:
        with open(self.record, "a") as handle:
            handle.write(f"{trainer.global_step}\\n")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.sleep)
'''


def global_step(path: Path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


def last_of(root: Path, version: int) -> Path:
    return root / "checkpoints" / "tiny" / f"version_{version}" / "last.ckpt"


def probe_config(folder: Path, record: Path, sleep: float) -> Path:
    """A probe callback in `folder` (importable as `probe`) and a YAML that adds it."""
    (folder / "probe.py").write_text(textwrap.dedent(PROBE))
    config = folder / f"probe-{sleep}.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "probe.Probe", "init_args": {"record": str(record), "sleep": sleep}}]}}))  # fmt: skip
    return config


def python_path_with(folder: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def wait_for(condition, process, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"training exited ({process.returncode}) before {what}:\n{process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_twice_then_resume_from_last(tiny_config, tmp_path):
    record = tmp_path / "starts.txt"
    probe = probe_config(tmp_path, record, 0.1)
    command = [sys.executable, "-m", "lit_vision", "fit", "--config", str(tiny_config), "--config", str(probe),
               "--trainer.max_steps", str(MAX_STEPS), "--trainer.max_epochs", "100",
               "--checkpoint_every_n_steps", "3", "--trainer.logger", "false"]  # fmt: skip
    env = python_path_with(tmp_path)
    processes = []

    def start(*extra: str) -> subprocess.Popen:
        process = subprocess.Popen([*command, *extra], cwd=tmp_path, env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        processes.append(process)
        return process

    def kill(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL

    try:
        # 1. Killed as soon as the first last.ckpt exists (right after a save).
        # Each run writes into a version folder of its own: 0, then 1 and 2 for the resumes.
        first = start()
        wait_for(last_of(tmp_path, 0).exists, first, 120, "the first last.ckpt")
        kill(first)
        step_1 = global_step(last_of(tmp_path, 0))
        assert 0 < step_1 < MAX_STEPS

        # 2. Resumed, then killed a moment after its first save (mid-step or mid-validation).
        second = start("--ckpt_path", "last")
        wait_for(last_of(tmp_path, 1).exists, second, 120, "a save after resuming")
        time.sleep(0.35)
        kill(second)
        step_2 = global_step(last_of(tmp_path, 1))
        assert step_1 < step_2 < MAX_STEPS

        # 3. Resumed again, runs to the end.
        third = start("--ckpt_path", "last")
        _, stderr = third.communicate(timeout=150)
        assert third.returncode == 0, stderr
        assert f"using {Path('checkpoints/tiny/version_1/last.ckpt')}" in stderr  # says what it resumed
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    last = last_of(tmp_path, 2)
    assert global_step(last) == MAX_STEPS
    # Each run started where last.ckpt stood when the previous one was killed.
    assert [int(line) for line in record.read_text().split()] == [0, step_1, step_2]
    assert not list(last.parent.parent.glob("*/.*.tmp"))  # no temporary files left by the kills


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("signum, exit_code, workers", [(signal.SIGTERM, 143, 1), (signal.SIGINT, 130, 0)],
                         ids=["SIGTERM", "SIGINT"])  # fmt: skip
def test_signal_saves_last_ckpt_exits_nonzero_and_resume_continues_there(signum, exit_code, workers, tiny_config,
                                                                          tmp_path):  # fmt: skip
    """The signal goes to the whole process group, as a scheduler's (or a terminal's Ctrl-C)
    does, DataLoader workers included. No periodic save is due: last.ckpt is the signal's."""
    max_steps, record = 16, tmp_path / "starts.txt"
    command = [sys.executable, "-m", "lit_vision", "fit", "--config", str(tiny_config),
               "--trainer.max_steps", str(max_steps), "--trainer.max_epochs", "100", "--trainer.logger", "false",
               "--checkpoint_every_n_steps", "1000", "--data.num_workers", str(workers)]  # fmt: skip
    env = python_path_with(tmp_path)
    slow, fast = probe_config(tmp_path, record, 0.25), probe_config(tmp_path, record, 0.0)
    process = subprocess.Popen([*command, "--config", str(slow)], cwd=tmp_path, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(record.exists, process, 120, "training to start")
        time.sleep(1.2)  # a few steps into the first epoch (4 steps per epoch)
        os.killpg(process.pid, signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == exit_code, stderr
    stopped_at = global_step(last_of(tmp_path, 0))
    assert 0 < stopped_at < max_steps
    name = signal.Signals(signum).name
    assert f"stopped by {name} at global step {stopped_at}; saved" in stderr and "last.ckpt" in stderr, stderr
    assert "Traceback" not in stderr

    resumed = subprocess.run([*command, "--config", str(fast), "--ckpt_path", "last"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=150)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [int(line) for line in record.read_text().split()] == [0, stopped_at]  # exactly where it stopped
    assert global_step(last_of(tmp_path, 1)) == max_steps


def test_a_save_that_dies_halfway_leaves_the_previous_last_ckpt(tiny_config, run_cli, tmp_path, monkeypatch, capsys):
    """The third save of last.ckpt writes half its bytes and then fails as a full disk does:
    the run stops with one message naming the file, and last.ckpt is still the second save."""
    real_save = torch.save
    saves = []

    def dying_save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) < 3:
            return real_save(obj, f, *args, **kwargs)
        import io

        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: buffer.tell() // 2])
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(torch, "save", dying_save)
    code = run_cli("fit", "--config", tiny_config, "--trainer.max_steps", "4", "--trainer.limit_val_batches", "0",
                   "--checkpoint_every_n_steps", "1", "--trainer.logger", "false")  # fmt: skip
    monkeypatch.setattr(torch, "save", real_save)
    assert code == 2
    message = capsys.readouterr().err
    assert "No space left" in message and "last.ckpt" in message
    assert len(saves) == 3
    last = last_of(tmp_path, 0)
    assert global_step(last) == 2
    assert not list(last.parent.glob(".*.tmp"))


def test_atomic_checkpoint_io_replaces_whole_files_only(tmp_path, monkeypatch):
    io_plugin = AtomicCheckpointIO()
    path = tmp_path / "sub" / "last.ckpt"
    io_plugin.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()

    def half_then_fail(obj, handle, *args, **kwargs):
        handle.write(b"\x00" * 100)
        raise KeyboardInterrupt  # what Ctrl-C during the write looks like

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        io_plugin.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert io_plugin.load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


WAITER = '''
import pathlib
import time
from lightning.pytorch.callbacks import Callback


class WaitInValidation(Callback):
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        pathlib.Path(self.marker).touch()
        time.sleep(60)
'''


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_during_validate_exits_143_at_once(tiny_config, tmp_path):
    """Outside training there is nothing to save: the command stops at once, not with exit 0."""
    (tmp_path / "waiter.py").write_text(textwrap.dedent(WAITER))
    marker = tmp_path / "validating"
    waiter = tmp_path / "waiter.yaml"
    waiter.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "waiter.WaitInValidation", "init_args": {"marker": str(marker)}}]}}))  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_vision", "validate", "--config", str(tiny_config), "--config", str(waiter)],
        cwd=tmp_path, env=python_path_with(tmp_path), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(marker.exists, process, 120, "validation to start")
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 143, stderr
    assert "lit-vision: stopped by SIGTERM; nothing was saved." in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_resuming_a_finished_run_says_so_and_claims_no_folder(tiny_config, run_cli, tmp_path, capsys):
    assert run_cli("fit", "--config", tiny_config, "--trainer.limit_val_batches", "1") == 0
    capsys.readouterr()
    assert run_cli("fit", "--config", tiny_config, "--ckpt_path", "last") == 0
    err = capsys.readouterr().err
    last = Path("checkpoints/tiny/version_0/last.ckpt")
    assert f"{last} is a finished run: it reached --trainer.max_epochs 1 (1 epoch done)" in err
    assert "no new run folder was claimed" in err and "add `--trainer.max_epochs 2`" in err
    assert "fit done" not in err
    for root in ("checkpoints", "logs"):
        assert sorted(p.name for p in (tmp_path / root / "tiny").iterdir()) == ["version_0"], root
    # The advice works: a higher limit trains the extra epoch, in a run folder of its own.
    assert run_cli("fit", "--config", tiny_config, "--ckpt_path", "last", "--trainer.max_epochs", "2",
                   "--trainer.limit_val_batches", "1") == 0  # fmt: skip
    resumed = torch.load(last_of(tmp_path, 1), weights_only=True)
    assert resumed["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == 2
    assert global_step(last_of(tmp_path, 1)) == 2 * global_step(last_of(tmp_path, 0))


def test_a_run_short_of_its_limits_has_something_to_train():
    from lit_vision.cli.resume import NothingToTrain, check_something_to_train

    def checkpoint(epochs: int, steps: int) -> dict:
        return {"global_step": steps, "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": epochs}}}}}

    check_something_to_train(checkpoint(3, 30), "x.ckpt", 4, -1)  # an epoch to go
    check_something_to_train(checkpoint(3, 30), "x.ckpt", None, 40)  # steps to go, no epoch limit
    check_something_to_train(checkpoint(7, 70), "x.ckpt", None, -1)  # Lightning's default: 1000 epochs
    check_something_to_train({}, "x.ckpt", 1, -1)  # a checkpoint without loop state: Lightning decides
    with pytest.raises(NothingToTrain, match=r"reached --trainer.max_steps 40 \(40 steps done\)"):
        check_something_to_train(checkpoint(4, 40), "x.ckpt", 100, 40)
    with pytest.raises(NothingToTrain, match=r"x.ckpt is a finished run: it reached --trainer.max_epochs 4"):
        check_something_to_train(checkpoint(4, 40), "x.ckpt", 4, -1)
