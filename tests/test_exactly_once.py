"""Every training sample exactly once across a killed and resumed 2-process DDP epoch.

A 2-process CPU DDP `fit` (gloo, through the CLI) records, on each rank, the sample indices of
every batch it trained on together with the global step; a probe on rank 0 SIGKILLs the whole
process group in the middle of the second epoch, after last.ckpt was written mid-epoch. The
run resumes with `--ckpt_path last`. The batches that count for the interrupted epoch are those
the checkpoint holds (steps <= its global_step) plus those the resumed run trained: together
they must be every training index once. A resume that drops the loader state (the DataModule's
carry-over disabled, so only Lightning's own restore is left, which issue 20550 defeats) replays
the epoch from its start: the same check sees duplicates — it would catch a replay.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from test_ddp import run_group

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PROBE = '''
import os
import signal

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Dataset


class WithIndex(Dataset):
    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return (*self.dataset[index], index)


class IndexRecorder(Callback):
    """Writes `epoch step index...` per trained batch to rank<r>.txt (flushed: SIGKILL follows)."""

    def __init__(self, path: str, kill_at_step: int = 0, drop_loader_state: bool = False, term_at_step: int = 0) -> None:
        self.path, self.kill_at_step, self.drop_loader_state = path, kill_at_step, drop_loader_state
        self.term_at_step = term_at_step
        self.broadcasts = 0

    def setup(self, trainer, pl_module, stage) -> None:
        data = trainer.datamodule
        if hasattr(data.train_set, "with_index"):
            data.train_set.with_index = True  # the streaming dataset reads the stored index
        else:
            data.train_set = WithIndex(data.train_set)
        if self.drop_loader_state:
            data.load_state_dict = lambda state: None
        original = torch.distributed.broadcast

        def counted(*args, **kwargs):  # Lightning's per-batch SIGTERM broadcast goes through here
            self.broadcasts += 1
            return original(*args, **kwargs)

        torch.distributed.broadcast = counted

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.indices = batch.pop(2).tolist()
        with open(f"{self.path}{trainer.global_rank}.broadcasts", "a") as handle:
            handle.write(f"{self.broadcasts}\\n")  # since the previous batch (the first: since setup)
        self.broadcasts = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(f"{self.path}{trainer.global_rank}.txt", "a") as handle:
            handle.write(f"{trainer.current_epoch} {trainer.global_step} {' '.join(map(str, self.indices))}\\n")
            handle.flush()
            os.fsync(handle.fileno())
        if trainer.global_step == self.kill_at_step and trainer.global_rank == 0:
            os.killpg(os.getpgid(0), signal.SIGKILL)  # preemption: both ranks, no cleanup
        if trainer.global_step == self.term_at_step and trainer.global_rank == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # to rank 0 alone: rank 1 learns it from the agreement
'''

EPOCH_STEPS = 8  # 64 training images / 2 ranks / batch 4
KILL_AT = EPOCH_STEPS + 5  # the middle of the second epoch; last.ckpt is at step 12


def recorder(tmp_path: Path, name: str, **init_args) -> Path:
    path = tmp_path / f"{name}.yaml"
    callback = {"class_path": "probe.IndexRecorder", "init_args": {"path": str(tmp_path / name / "rank"), **init_args}}
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    (tmp_path / name).mkdir()
    return path


def fit(tmp_path: Path, config: Path, probe: Path, *extra: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("MASTER_PORT", None)
    command = [sys.executable, "-m", "lit_vision", "fit", "--config", str(config), "--config", str(probe),
               "--model", "SimpleNet", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
               "--trainer.strategy", "ddp", "--trainer.max_epochs", "2", "--data.batch_size", "4",
               "--checkpoint_every_n_steps", "2", "--trainer.enable_model_summary", "false", *extra]  # fmt: skip
    return run_group(command, cwd=tmp_path, env=env, timeout=240)


def trained(folder: Path, epoch: int, up_to_step: float = float("inf")) -> list[int]:
    """Indices of `epoch` trained by both ranks in steps <= up_to_step."""
    out = []
    for rank in (0, 1):
        for line in (folder / f"rank{rank}.txt").read_text().splitlines():
            e, step, *indices = map(int, line.split())
            if e == epoch and step <= up_to_step:
                out += indices
    return out


def killed_then_resumed(tmp_path: Path, config: Path, kill_extra=(), resume_extra=()):
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    killed = fit(tmp_path, config, recorder(tmp_path, "killed", kill_at_step=KILL_AT), *kill_extra)
    assert killed.returncode == -9 or killed.returncode == 137, killed.stdout[-3000:]
    (last,) = (tmp_path / "checkpoints").rglob("last.ckpt")
    checkpoint = torch.load(last, weights_only=True, map_location="cpu")
    saved_step = checkpoint["global_step"]
    assert saved_step == 12 and checkpoint["epoch"] == 1, (saved_step, checkpoint["epoch"])  # mid-epoch save
    resumed = fit(tmp_path, config, recorder(tmp_path, "resumed"), "--ckpt_path", "last", *resume_extra)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    return last, saved_step


def assert_exactly_once(indices: list[int], total: int) -> None:
    repeated = {i: n for i, n in Counter(indices).items() if n > 1}
    assert not repeated, f"trained more than once: {repeated}"
    assert sorted(indices) == list(range(total)), f"missing: {sorted(set(range(total)) - set(indices))}"


def test_folder_path_exactly_once_across_kill_and_resume_with_other_workers(tiny_config, tmp_path):
    last, saved_step = killed_then_resumed(
        tmp_path, tiny_config, kill_extra=("--data.num_workers", "0"), resume_extra=("--data.num_workers", "1")
    )
    assert_exactly_once(trained(tmp_path / "killed", epoch=0), 64)  # the uninterrupted epoch
    epoch1 = trained(tmp_path / "killed", 1, up_to_step=saved_step) + trained(tmp_path / "resumed", 1)
    assert len(trained(tmp_path / "killed", 1)) > len(trained(tmp_path / "killed", 1, saved_step))  # trained past it
    assert_exactly_once(epoch1, 64)

    # Negative control: the same checkpoint, resumed without the DataModule's carry-over.
    replay = fit(tmp_path, tiny_config, recorder(tmp_path, "replay", drop_loader_state=True), "--ckpt_path", str(last))
    assert replay.returncode == 0, replay.stdout[-3000:]
    replayed = trained(tmp_path / "killed", 1, up_to_step=saved_step) + trained(tmp_path / "replay", 1)
    with pytest.raises(AssertionError, match="trained more than once"):
        assert_exactly_once(replayed, 64)


def test_streaming_path_exactly_once_across_kill_and_resume(tiny_config, standin_dir, tmp_path):
    from lit_vision.data.optimize import optimize_dataset

    # 8 chunks of 8: LitData gives each rank 4 whole chunks, so nothing is dropped to even them out.
    stream = optimize_dataset(standin_dir, tmp_path / "stream", num_workers=1, chunk_size=8)
    stream_flags = ("--data.stream", str(stream))
    last, saved_step = killed_then_resumed(
        tmp_path, tiny_config, kill_extra=(*stream_flags, "--data.num_workers", "1"),
        # the same grid: another worker count is refused mid-epoch (tests/test_feed_outcomes.py)
        resume_extra=(*stream_flags, "--data.num_workers", "1"),
    )  # fmt: skip
    assert_exactly_once(trained(tmp_path / "killed", epoch=0), 64)
    epoch1 = trained(tmp_path / "killed", 1, up_to_step=saved_step) + trained(tmp_path / "resumed", 1)
    assert len(trained(tmp_path / "killed", 1)) > len(trained(tmp_path / "killed", 1, saved_step))
    assert_exactly_once(epoch1, 64)


def test_sigterm_to_one_rank_stops_both_at_the_same_step_and_resumes_exactly_once(tiny_config, tmp_path):
    """SIGTERM to rank 0 only: the ranks agree on the stop AGREEMENT_LAG steps later (without a
    blocking reduce per step), both stop at that step, last.ckpt holds it, exit 143; the resume
    trains the rest of the epoch, each index once."""
    from lit_vision.callbacks.preemption import AGREEMENT_LAG

    term_at = EPOCH_STEPS + 2
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    stopped = fit(tmp_path, tiny_config, recorder(tmp_path, "stopped", term_at_step=term_at))
    assert stopped.returncode == 143, stopped.stdout[-3000:]
    stop_step = term_at + AGREEMENT_LAG
    for rank in (0, 1):
        last_line = (tmp_path / "stopped" / f"rank{rank}.txt").read_text().splitlines()[-1]
        assert int(last_line.split()[1]) == stop_step, f"rank {rank} stopped at another step: {last_line[:20]}"
        # No blocking collective between batches: Lightning's per-batch SIGTERM broadcast is off.
        between = (tmp_path / "stopped" / f"rank{rank}.broadcasts").read_text().split()[1:]
        assert len(between) == stop_step - 1 and set(between) == {"0"}, between
    (last,) = (tmp_path / "checkpoints").rglob("last.ckpt")
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == stop_step
    resumed = fit(tmp_path, tiny_config, recorder(tmp_path, "resumed"), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert_exactly_once(trained(tmp_path / "stopped", 1) + trained(tmp_path / "resumed", 1), 64)
