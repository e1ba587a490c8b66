"""Kill and resume: a training process SIGKILLed at different moments resumes with
`--ckpt_path last` from the step last.ckpt holds and finishes; and a save that dies halfway
never leaves a truncated last.ckpt in place of the previous good one."""

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
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    record = tmp_path / "starts.txt"
    probe = tmp_path / "probe.yaml"
    probe.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "probe.Probe", "init_args": {"record": str(record), "sleep": 0.1}}]}}))  # fmt: skip
    command = [sys.executable, "-m", "lit_vision", "fit", "--config", str(tiny_config), "--config", str(probe),
               "--trainer.max_steps", str(MAX_STEPS), "--trainer.max_epochs", "100",
               "--checkpoint_every_n_steps", "3", "--trainer.logger", "false"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    last = tmp_path / "checkpoints" / "tiny" / "last.ckpt"
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
        first = start()
        wait_for(last.exists, first, 120, "the first last.ckpt")
        kill(first)
        step_1 = global_step(last)
        assert 0 < step_1 < MAX_STEPS

        # 2. Resumed, then killed a moment after its first save (mid-step or mid-validation).
        second = start("--ckpt_path", "last")
        wait_for(lambda: global_step(last) > step_1, second, 120, "a save after resuming")
        time.sleep(0.35)
        kill(second)
        step_2 = global_step(last)
        assert step_1 < step_2 < MAX_STEPS

        # 3. Resumed again, runs to the end.
        third = start("--ckpt_path", "last")
        _, stderr = third.communicate(timeout=150)
        assert third.returncode == 0, stderr
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert global_step(last) == MAX_STEPS
    # Each run started where last.ckpt stood when the previous one was killed.
    assert [int(line) for line in record.read_text().split()] == [0, step_1, step_2]
    assert not list(last.parent.glob(".*.tmp"))  # no temporary files left by the kills


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
    last = tmp_path / "checkpoints" / "tiny" / "last.ckpt"
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
