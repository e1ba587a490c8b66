"""Multi-device through flags only: 2-process DDP on the CPU (gloo) through the CLI trains a
BatchNorm model and checkpoints; a single-process `validate` of that checkpoint reproduces the
val/top1 and val/loss the 2-process run logged; only rank 0 writes files;
`--trainer.sync_batchnorm true` turns the model's BatchNorm layers into SyncBatchNorm (torch
runs SyncBatchNorm on GPUs only, so on this CPU machine the flag is checked, not trained); and
two processes generating the stand-in into the same fresh folder leave one copy."""

from __future__ import annotations

import json
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

from lit_vision.cli import build_cli

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")]

PROBE = '''
import json
import torch
from lightning.pytorch.callbacks import Callback


class RankProbe(Callback):
    """Each rank records what it sees at the start of training."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_start(self, trainer, pl_module) -> None:
        seen = {
            "world_size": trainer.world_size,
            "sync_batchnorm": any(isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules()),
            "batchnorm": any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in pl_module.modules()),
            "val_batches": trainer.num_val_batches,
        }
        with open(f"{self.folder}/rank{trainer.global_rank}.json", "w") as handle:
            json.dump(seen, handle)
'''


def run_group(command: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run `command` in its own process group; on timeout or failure kill the whole group
    (DDP's rank 1 is a child of rank 0), so nothing outlives the test."""
    process = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"timed out after {timeout} s:\n{output[-4000:]}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of a failed run
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(command, process.returncode, output, "")


def scalars(run: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("model", "class_path"),
    [
        ("CustomNet1", "lit_vision.models.CustomNet1"),
        # Any timm architecture goes through the same strategy (a BatchNorm ResNet here).
        ("timm:resnet10t", "lit_vision.models.Timm"),
    ],
    ids=["CustomNet1", "timm"],
)
def test_two_process_ddp_fit_then_single_process_validate(model, class_path, tiny_config, tmp_path, monkeypatch):
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    probe = tmp_path / "probe.yaml"
    probe.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "probe.RankProbe", "init_args": {"folder": str(tmp_path)}}]}}))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("MASTER_PORT", None)  # Lightning picks a free port
    fit = run_group(
        [sys.executable, "-m", "lit_vision", "fit", "--config", str(tiny_config), "--config", str(probe),
         "--model", model, "--trainer.accelerator", "cpu", "--trainer.devices", "2",
         "--trainer.strategy", "ddp", "--trainer.max_epochs", "2"],
        cwd=tmp_path, env=env, timeout=240,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stdout[-4000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for seen in ranks:
        assert seen["world_size"] == 2 and seen["batchnorm"], seen
        assert seen["val_batches"] == [1]  # 16 val images / 2 ranks = 8 each: one batch of 16 fits
    # Rank 0 alone wrote, and both ranks used its run folders: one log version with one
    # config, one checkpoint version with one best and one last checkpoint.
    (run,) = (tmp_path / "logs" / "tiny").iterdir()
    assert run.name == "version_0" and (run / "config.yaml").is_file()
    (folder,) = (tmp_path / "checkpoints" / "tiny").iterdir()
    assert folder.name == "version_0"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and names[1] == "last.ckpt" and names[0].startswith("best-"), names

    last = folder / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True, map_location="cpu")
    assert checkpoint["hyper_parameters"]["_class_path"] == class_path
    assert checkpoint["epoch"] == 1
    logged_top1, logged_loss = scalars(run, "val/top1")[-1], scalars(run, "val/loss")[-1]
    (best_state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]
    # (current_score is only refreshed when a new best is saved: compare the best instead.)
    assert float(best_state["best_model_score"]) == pytest.approx(max(scalars(run, "val/top1")), abs=1e-6)

    # One process, the full validation set: the same numbers (no sample lost or repeated).
    monkeypatch.chdir(tmp_path)
    validate = build_cli(["validate", "--config", str(tiny_config), "--model", model,
                          "--ckpt_path", str(last), "--trainer.logger", "false"])  # fmt: skip
    metrics = validate.trainer.callback_metrics
    assert metrics["val/top1"].item() == pytest.approx(logged_top1, abs=1e-6)
    assert metrics["val/loss"].item() == pytest.approx(logged_loss, rel=1e-5)


def test_sync_batchnorm_flag_converts_batchnorm_layers(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--config", str(tiny_config), "--model", "CustomNet1", "--trainer.devices", "2",
                     "--trainer.strategy", "ddp", "--trainer.sync_batchnorm", "true"], run=False)  # fmt: skip
    layer_sync = cli.trainer.strategy._layer_sync
    assert layer_sync is not None
    model = layer_sync.apply(cli.model)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())


GENERATE = """
import sys, time
from pathlib import Path
from lit_vision.data.standin import generate_standin
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
generate_standin(sys.argv[1], num_classes=3, train_per_class=6, val_per_class=2, test_images=2)
"""


@pytest.mark.timeout(120)
def test_two_processes_generating_the_standin_at_once_leave_one_copy(tmp_path):
    root, go = tmp_path / "data" / "standin", tmp_path / "go"
    processes = [
        subprocess.Popen([sys.executable, "-c", GENERATE, str(root), str(go)], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        time.sleep(3)  # both are waiting at the start line (imports done)
        go.touch()
        results = [(p.wait(timeout=90), p.stderr.read()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert [code for code, _ in results] == [0, 0], results
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["standin"]  # no partial folders
    assert len((root / "train.txt").read_text().splitlines()) == 18
    images = sorted(p.relative_to(root).as_posix() for p in (root / "images").rglob("*.jpg"))
    assert len(images) == 18 + 6 + 2
