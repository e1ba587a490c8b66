"""`model.compile: step`: the compiled training step gives the eager step's loss and parameters, a
compiled run resumes from an eager checkpoint and an eager run from a compiled one, checkpoints
keep the uncompiled keys, and the schedule changes the learning rate without a recompile.
Each test compiles (≈20–60 s on a CPU the first time): slow."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import TINY_CLASSES
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch._dynamo.utils import counters

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data.augment_settings import Augmentation
from lit_vision.models import SimpleNet
from lit_vision.models.compiled_step import install_compiled_update, match_optimizer_to_mode, match_schedule_to_mode

pytestmark = pytest.mark.slow

# No random augmentation: the eager and compiled runs (and a resumed one) then see the same pixels.
IDENTITY = Augmentation(flip=False, degrees=0.0, scale=(1.0, 1.0), ratio=(1.0, 1.0), gain=0.0)


class OptimizerTypes(Callback):
    """What the optimiser and the schedule hold as each step starts and when training ends:
    the learning rate's type and value, the implementation flags, the schedule's bases' types."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def record(self, trainer) -> None:
        groups = trainer.optimizers[0].param_groups
        schedule = trainer.lr_scheduler_configs[0].scheduler
        self.seen.append({
            "step": trainer.global_step,
            "lr": {type(g["lr"]).__name__ for g in groups},
            "lr_value": float(groups[0]["lr"]),
            "flags": {(g["foreach"], g["fused"]) for g in groups},
            "base_lrs": {type(b).__name__ for b in schedule.base_lrs},
            "initial_lr": {type(g["initial_lr"]).__name__ for g in groups},
            "graphs": counters["stats"]["unique_graphs"],
        })  # fmt: skip

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.record(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.record(trainer)


def fit(
    standin_dir, tmp_path, compile, max_steps: int, folder: str, ckpt_path=None, optimizer="sgd", lr=0.05, probe=None
) -> SimpleNet:
    L.seed_everything(0)
    model = SimpleNet(num_classes=TINY_CLASSES, optimizer=optimizer, lr=lr, warmup_epochs=0.5, compile=compile)
    data = MiniPlacesDataModule(
        data_dir=str(standin_dir), num_classes=TINY_CLASSES, batch_size=16, num_workers=0, crop_size=32,
        resize_size=36, cache_dir=str(tmp_path / "cache"), placement="resident", augmentation=IDENTITY,
    )  # fmt: skip
    saver = ModelCheckpoint(dirpath=tmp_path / folder, filename="{step}", every_n_train_steps=2, save_top_k=-1)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[saver] + ([probe] if probe else []),
    )  # fmt: skip
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    assert trainer.global_step == max_steps
    return model


def weights(model_or_checkpoint) -> dict[str, torch.Tensor]:
    state = model_or_checkpoint if isinstance(model_or_checkpoint, dict) else model_or_checkpoint.state_dict()
    return {k: v.detach().float().clone() for k, v in state.items()}


def assert_close(a: dict, b: dict, tolerance: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < tolerance, worst


def momentum(checkpoint: dict) -> dict[str, torch.Tensor]:
    return {str(k): v["momentum_buffer"] for k, v in checkpoint["optimizer_states"][0]["state"].items()}


def test_compiled_step_matches_eager_and_resumes_from_and_into_eager(standin_dir, tmp_path):
    torch.set_num_threads(2)
    eager = fit(standin_dir, tmp_path, False, 6, "eager")  # checkpoints at steps 2, 4, 6
    eager_at_4 = torch.load(tmp_path / "eager" / "step=4.ckpt", weights_only=True)
    frames_before = counters["frames"]["ok"]
    # Steps 3-6 compiled, from the eager run's step-2 checkpoint...
    compiled = fit(standin_dir, tmp_path, "step", 6, "compiled", ckpt_path=tmp_path / "eager" / "step=2.ckpt")
    assert counters["frames"]["ok"] > frames_before and "_compiled_loss" in compiled.__dict__
    assert compiled.trainer.optimizers[0]._lit_vision_compiled
    assert sorted(p.name for p in (tmp_path / "compiled").iterdir()) == ["step=4.ckpt", "step=6.ckpt"]  # resumed at 2
    compiled_at_4 = torch.load(tmp_path / "compiled" / "step=4.ckpt", weights_only=True)
    assert_close(weights(compiled_at_4["state_dict"]), weights(eager_at_4["state_dict"]))
    assert_close(momentum(compiled_at_4), momentum(eager_at_4))
    assert_close(weights(compiled), weights(eager))
    assert compiled_at_4["state_dict"].keys() == eager_at_4["state_dict"].keys()  # no `_orig_mod.` prefixes
    assert compiled_at_4["hyper_parameters"]["compile"] == "step"
    # ...and steps 5-6 eager again, from the compiled run's step-4 checkpoint.
    back = fit(standin_dir, tmp_path, False, 6, "back", ckpt_path=tmp_path / "compiled" / "step=4.ckpt")
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["step=6.ckpt"]
    assert_close(weights(back), weights(eager))
    lr = back.trainer.optimizers[0].param_groups[0]["lr"]
    assert isinstance(lr, float) and lr == eager.trainer.optimizers[0].param_groups[0]["lr"]


# AdamW: the optimiser whose default path a tensor learning rate changes (foreach → single tensor).
ADAMW = {"optimizer": "adamw", "lr": 2e-3}
EAGER_GROUPS = {"lr": {"float"}, "flags": {(None, None)}, "base_lrs": {"float"}, "initial_lr": {"float"}}
COMPILED_GROUPS = {"lr": {"Tensor"}, "flags": {(None, True)}, "base_lrs": {"float"}, "initial_lr": {"float"}}


def groups_as(seen: dict, expected: dict) -> bool:
    return {k: seen[k] for k in expected} == expected


def assert_resumed_steps(resumed: OptimizerTypes, reference: OptimizerTypes, groups: dict) -> None:
    """The resumed run's steps 2, 3, 4 hold `groups`' types and flags, at the reference run's
    learning rates."""
    assert [seen["step"] for seen in resumed.seen] == [2, 3, 4]
    for seen in resumed.seen:
        assert groups_as(seen, groups), seen
    reference_lrs = {seen["step"]: seen["lr_value"] for seen in reference.seen}
    for seen in resumed.seen:
        assert seen["lr_value"] == pytest.approx(reference_lrs[seen["step"]], rel=1e-6)


def test_an_eager_resume_of_a_fresh_compiled_checkpoint_steps_with_float_learning_rates(standin_dir, tmp_path):
    """A checkpoint of a run that was compiled from its first step (its schedule saved tensor
    bases) resumed eagerly: every step uses Python-float learning rates and torch's default
    implementation choice (on CUDA a tensor learning rate takes AdamW off foreach), the
    learning rates follow the compiled run's, and the weights end where the compiled run's did."""
    torch.set_num_threads(2)
    compiled_probe, eager_probe = OptimizerTypes(), OptimizerTypes()
    fit(standin_dir, tmp_path, "step", 4, "compiled", probe=compiled_probe, **ADAMW)  # saves steps 2 and 4
    assert all(groups_as(seen, COMPILED_GROUPS) for seen in compiled_probe.seen), compiled_probe.seen
    saved = torch.load(tmp_path / "compiled" / "step=2.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["compile"] == "step"
    eager = fit(standin_dir, tmp_path, False, 4, "eager", ckpt_path=tmp_path / "compiled" / "step=2.ckpt",
                probe=eager_probe, **ADAMW)  # fmt: skip
    assert_resumed_steps(eager_probe, compiled_probe, EAGER_GROUPS)
    saved_eager = torch.load(tmp_path / "eager" / "step=4.ckpt", weights_only=True)
    assert {type(b) for b in saved_eager["lr_schedulers"][0]["base_lrs"]} == {float}
    assert {type(g["lr"]) for g in saved_eager["optimizer_states"][0]["param_groups"]} == {float}
    compiled_at_4 = torch.load(tmp_path / "compiled" / "step=4.ckpt", weights_only=True)
    assert_close(weights(eager), weights(compiled_at_4["state_dict"]), tolerance=1e-4)


def test_a_compiled_resume_of_a_fresh_eager_checkpoint_steps_compiled_with_tensor_learning_rates(standin_dir, tmp_path):
    """The other direction: an eager run's checkpoint resumed with `compile: step` steps with
    0-d tensor learning rates, the fused AdamW update compiled once (the schedule fills the
    tensor from float bases, no recompile and no read-back per step), the eager run's learning
    rates, and ends where the eager run's weights did; its own checkpoint then resumes eagerly
    with floats again."""
    torch.set_num_threads(2)
    eager_probe, compiled_probe, back_probe = OptimizerTypes(), OptimizerTypes(), OptimizerTypes()
    fit(standin_dir, tmp_path, False, 6, "eager", probe=eager_probe, **ADAMW)  # saves steps 2, 4 and 6
    assert all(groups_as(seen, EAGER_GROUPS) for seen in eager_probe.seen), eager_probe.seen
    compiled = fit(standin_dir, tmp_path, "step", 4, "compiled", ckpt_path=tmp_path / "eager" / "step=2.ckpt",
                   probe=compiled_probe, **ADAMW)  # fmt: skip
    assert compiled.trainer.optimizers[0]._lit_vision_compiled and "_compiled_loss" in compiled.__dict__
    assert_resumed_steps(compiled_probe, eager_probe, COMPILED_GROUPS)
    assert len({seen["graphs"] for seen in compiled_probe.seen[1:]}) == 1  # compiled at step 2, then reused
    eager_at_4 = torch.load(tmp_path / "eager" / "step=4.ckpt", weights_only=True)
    assert_close(weights(compiled), weights(eager_at_4["state_dict"]), tolerance=1e-4)
    fit(standin_dir, tmp_path, False, 6, "back", ckpt_path=tmp_path / "compiled" / "step=4.ckpt",
        probe=back_probe, **ADAMW)  # fmt: skip
    for seen in back_probe.seen:
        assert groups_as(seen, EAGER_GROUPS), seen


def test_an_eager_resume_of_a_schedule_saved_with_tensor_bases_steps_with_floats():
    """A compiled checkpoint written before the schedule's bases were kept as floats holds
    tensor `base_lrs`, `_last_lr` and `initial_lr` (the fresh checkpoints above no longer do):
    resumed eagerly, the schedule's next steps still give float learning rates."""
    weight = torch.nn.Parameter(torch.ones(3))
    compiled = torch.optim.AdamW([weight], lr=torch.tensor(0.01), fused=True)
    old_schedule = torch.optim.lr_scheduler.LambdaLR(compiled, lambda step: 1.0 / (step + 1))
    assert all(isinstance(b, torch.Tensor) for b in old_schedule.base_lrs)  # what such a checkpoint holds
    eager = torch.optim.AdamW([weight], lr=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(eager, lambda step: 1.0 / (step + 1))
    eager.load_state_dict(compiled.state_dict())
    schedule.load_state_dict(old_schedule.state_dict())
    match_optimizer_to_mode(eager, False, "adamw")
    match_schedule_to_mode(schedule)
    for _ in range(2):
        weight.grad = torch.ones(3)
        eager.step()
        schedule.step()
        group = eager.param_groups[0]
        assert isinstance(group["lr"], float) and isinstance(group["initial_lr"], float), group
        assert (group["foreach"], group["fused"]) == (None, None)
    assert all(isinstance(b, float) for b in schedule.base_lrs + schedule.get_last_lr())
    assert eager.param_groups[0]["lr"] == pytest.approx(0.01 / 3)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_the_schedule_moves_a_tensor_learning_rate_without_recompiling(name):
    torch.manual_seed(0)
    nets = [torch.nn.Linear(8, 3) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "adamw": lambda p: torch.optim.AdamW(p, lr=0.01)}
    eager, compiled = make[name](nets[0].parameters()), make[name](nets[1].parameters())
    match_optimizer_to_mode(compiled, True, name)
    install_compiled_update(compiled, "default")
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1 / (step + 1)) for o in (eager, compiled)]
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    graphs = []
    for _ in range(4):
        for net, optimizer, schedule in zip(nets, (eager, compiled), schedules):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
            schedule.step()
        graphs.append(counters["stats"]["unique_graphs"])
    assert isinstance(compiled.param_groups[0]["lr"], torch.Tensor)
    assert float(compiled.param_groups[0]["lr"]) == pytest.approx(eager.param_groups[0]["lr"])
    assert graphs[1] == graphs[-1], graphs  # compiled once; later learning rates reuse the graph
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_compiled_step_under_ddp_averages_gradients_like_eager(tiny_config, tmp_path):
    """Two CPU processes (gloo): the compiled step's backward still feeds DDP's gradient
    all-reduce — rank 0's weights after 6 steps equal the eager DDP run's. Had the compiled
    step bypassed the reducer, each rank would have trained on its own shard alone."""
    import os
    import sys

    import yaml
    from test_ddp import run_group

    # A callback in each rank reports whether that rank's step really ran compiled.
    (tmp_path / "ran_compiled.py").write_text(
        "from lightning.pytorch.callbacks import Callback\n\n\n"
        "class RanCompiled(Callback):\n"
        "    def on_train_end(self, trainer, pl_module):\n"
        "        compiled = '_compiled_loss' in pl_module.__dict__ and trainer.optimizers[0]._lit_vision_compiled\n"
        "        with open(f'compiled{trainer.global_rank}.txt', 'w') as handle:\n"
        "            handle.write(str(bool(compiled)))\n"
    )
    probe = tmp_path / "probe.yaml"
    probe.write_text(yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "ran_compiled.RanCompiled"}]}}))
    env = {k: v for k, v in os.environ.items() if k != "MASTER_PORT"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    last = {}
    for mode in ("false", "step"):
        run = run_group(
            [sys.executable, "-m", "lit_vision", "fit", "--config", str(tiny_config), "--config", str(probe),
             "--experiment", f"ddp_{mode}",
             "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "3",
             "--trainer.limit_val_batches", "1", "--model.init_args.compile", mode,
             "--model.init_args.optimizer", "sgd", "--model.init_args.lr", "0.05"],
            cwd=tmp_path, env=env, timeout=400,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:]
        (path,) = (tmp_path / "checkpoints" / f"ddp_{mode}").rglob("last.ckpt")
        last[mode] = torch.load(path, weights_only=True, map_location="cpu")
        assert last[mode]["global_step"] == 6  # 64 images / 2 ranks / batch 16, 3 epochs
        ran = [(tmp_path / f"compiled{rank}.txt").read_text() for rank in (0, 1)]
        assert ran == [str(mode == "step")] * 2, ran
    # SGD (AdamW's update m/(√v + ε) magnifies float noise in near-zero gradients): the momentum
    # shows gradients far above the tolerance, so a rank training on its own shard alone would
    # differ from the averaged run by much more than 1e-5.
    buffers = [state["momentum_buffer"] for state in last["false"]["optimizer_states"][0]["state"].values()]
    assert max(buffer.abs().max().item() for buffer in buffers) > 1e-2
    assert_close(weights(last["step"]["state_dict"]), weights(last["false"]["state_dict"]))
