"""`data.placement: resident`: the decoded split held on the device, batches gathered from it in the
shared epoch order — every sample once per epoch as on the loader path, disjoint rank shards,
the right pixels, a mid-epoch resume that continues the permutation (through Lightning, with our
`configure_optimizers` that triggers Lightning issue 20550), a clear error when memory is short,
and no host read of a device value inside a training epoch."""

from __future__ import annotations

from collections import Counter

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DistributedSampler

from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.callbacks.finite_loss import FiniteLossCheck
from lit_vision.data import MiniPlacesDataModule, resident
from lit_vision.data.resident import ResidentLoader, ResidentOrder
from lit_vision.errors import LitVisionError
from lit_vision.models import SimpleNet

from conftest import TINY_CLASSES


def epoch_of(order: ResidentOrder) -> list[int]:
    return torch.cat(list(order)).tolist()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_an_epoch_takes_the_loader_paths_sample_multiset_in_disjoint_rank_shards(world_size):
    num_samples = 13
    shards = []
    for rank in range(world_size):
        order = ResidentOrder(num_samples, 2, shuffle=True, seed=5, rank=rank, world_size=world_size)
        order.set_epoch(3)
        shards.append(epoch_of(order))
    # The loader path under DDP: DistributedSampler (Lightning's), the same padding rule.
    loader_path = [
        list(DistributedSampler(range(num_samples), num_replicas=world_size, rank=rank, shuffle=True, seed=5))
        for rank in range(world_size)
    ]
    assert sorted(Counter(sum(shards, [])).values()) == sorted(Counter(sum(loader_path, [])).values())
    assert set(sum(shards, [])) == set(range(num_samples))
    assert [len(s) for s in shards] == [len(s) for s in loader_path]
    if world_size > 1:  # without padding (12 of them), the shards are disjoint
        unpadded = [ResidentOrder(12, 2, True, 5, rank, world_size) for rank in range(world_size)]
        seen = [set(epoch_of(order)) for order in unpadded]
        assert sum(len(s) for s in seen) == 12 and set().union(*seen) == set(range(12))


def test_the_order_changes_per_epoch_and_drop_last_drops_the_partial_batch():
    order = ResidentOrder(10, 4, shuffle=True, seed=0, drop_last=True)
    first = epoch_of(order)
    order.set_epoch(1)
    second = epoch_of(order)
    assert len(order) == 2 and len(first) == len(second) == 8
    assert first != second
    evaluation = ResidentOrder(10, 4, shuffle=False)
    assert epoch_of(evaluation) == list(range(10)) and len(evaluation) == 3


def test_a_restored_position_continues_the_same_permutation_lazily():
    full = epoch_of(ResidentOrder(20, 4, True, seed=1))
    first = ResidentOrder(20, 4, True, seed=1)
    batches = iter(first)
    taken = [next(batches).tolist() for _ in range(2)]
    state = first.state_dict()
    assert state["position"] == 8 and state["epoch"] == 0 and not state["complete"]
    resumed = ResidentOrder(20, 4, True, seed=1)
    batches = iter(resumed)  # as Lightning does: iter() before the checkpoint is restored
    resumed.load_state_dict(state)
    rest = torch.cat(list(batches)).tolist()
    assert sum(taken, []) + rest == full
    # Another world size continues at the same entry of the permutation (as the loader path does).
    ranks = [ResidentOrder(20, 2, True, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for order in ranks:
        order.load_state_dict(state)
    assert sorted(sum((epoch_of(order) for order in ranks), [])) == sorted(full[8:])
    with pytest.raises(LitVisionError, match="training set of 20 images, but this run's training set has 21"):
        ResidentOrder(21, 4, True, seed=1).load_state_dict(state)


def test_evaluation_order_starts_over_on_every_pass():
    """The sanity check stops after a few batches; the next validation must still see every sample."""
    order = ResidentOrder(16, 4, shuffle=False)
    batches = iter(order)
    [next(batches) for _ in range(2)]  # a sanity check of 2 batches, abandoned
    assert epoch_of(order) == list(range(16))
    assert epoch_of(order) == list(range(16))


def test_the_saved_seed_wins_as_on_the_loader_path():
    first = ResidentOrder(20, 4, True, seed=3)
    batches = iter(first)
    taken = next(batches).tolist()
    resumed = ResidentOrder(20, 4, True, seed=99)  # seed_everything: true draws a new seed
    resumed.load_state_dict(first.state_dict())
    assert taken + epoch_of(resumed) == epoch_of(ResidentOrder(20, 4, True, seed=3))


def test_batches_hold_the_cached_pixels_and_labels_of_their_indices():
    images = torch.randint(0, 256, (9, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(9) * 10
    loader = ResidentLoader(images, labels, ResidentOrder(9, 4, True, seed=2), channels_last=True)
    for batch_images, batch_labels in loader:
        assert torch.equal(batch_images, images[loader.last_indices])
        assert torch.equal(batch_labels, labels[loader.last_indices])
        assert batch_images.is_contiguous(memory_format=torch.channels_last)


def test_too_little_free_memory_names_the_bytes_and_the_option_to_use(standin_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(resident, "free_memory_bytes", lambda device: 1000)
    data = datamodule(standin_dir, tmp_path)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False)
    with pytest.raises(LitVisionError) as error:
        trainer.fit(SimpleNet(num_classes=TINY_CLASSES), datamodule=data)
    message = str(error.value)
    assert "needs 0.00 GB of cpu memory" in message and "only 0.00 GB is free" in message
    assert "data.placement: loader" in message and "train-" in message  # the split's cache file


def test_auto_is_the_loader_on_every_accelerator(standin_dir, tmp_path):
    data = datamodule(standin_dir, tmp_path)
    data.hparams.placement = "auto"
    assert data.placement == "loader"  # no trainer
    data.trainer = L.Trainer(accelerator="cpu", logger=False)
    assert data.placement == "loader" and data.augment_placement == "worker_batched"
    data.trainer = type("GPUTrainer", (), {"accelerator": object()})()
    # resident was measured on the CPU only: a GPU run gets the measured loader path unless named
    assert data.placement == "loader" and data.augment_placement == "device"


def test_resident_refuses_worker_augmentation():
    with pytest.raises(LitVisionError, match="data.augment_on: worker_batched cannot run"):
        MiniPlacesDataModule(placement="resident", augment_on="worker_batched")
    with pytest.raises(LitVisionError, match="data.placement must be one of auto, loader, resident"):
        MiniPlacesDataModule(placement="gpu")


def datamodule(standin_dir, tmp_path, **kwargs) -> MiniPlacesDataModule:
    return MiniPlacesDataModule(
        data_dir=str(standin_dir), num_classes=TINY_CLASSES, batch_size=16, num_workers=0, crop_size=32,
        resize_size=36, cache_dir=str(tmp_path / "cache"), placement="resident", **kwargs,
    )  # fmt: skip


class RecordIndices(Callback):
    """The samples of every training batch, by global step."""

    def __init__(self) -> None:
        self.by_step: dict[int, list[int]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.by_step[trainer.global_step] = trainer.train_dataloader.last_indices.tolist()


def fit(standin_dir, tmp_path, max_steps: int, ckpt_path=None, callbacks=(), **trainer_args) -> L.Trainer:
    L.seed_everything(0)
    model = SimpleNet(num_classes=TINY_CLASSES, optimizer="sgd", lr=0.05, warmup_epochs=0.5)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=list(callbacks), **trainer_args,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule(standin_dir, tmp_path), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.slow
def test_a_mid_epoch_resume_continues_the_permutation_at_its_position(standin_dir, tmp_path):
    # 64 images / batch 16 = 4 steps per epoch; a checkpoint at step 6 is mid-epoch 1.
    whole = RecordIndices()
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=6, save_top_k=-1)
    fit(standin_dir, tmp_path, 10, callbacks=[whole, saver])
    assert sorted(sum((whole.by_step[s] for s in (5, 6, 7, 8)), [])) == list(range(64))  # epoch 1: each once
    resumed = RecordIndices()
    trainer = fit(standin_dir, tmp_path, 10, ckpt_path=tmp_path / "ckpt" / "step=6.ckpt", callbacks=[resumed],
                  enable_checkpointing=False)  # fmt: skip
    assert sorted(resumed.by_step) == [7, 8, 9, 10]
    assert all(resumed.by_step[s] == whole.by_step[s] for s in (7, 8, 9, 10)), (resumed.by_step, whole.by_step)
    assert trainer.global_step == 10


class ForbidHostReads(Callback):
    """From global step `after` until the epoch ends, any read of a tensor's value on the host
    (the calls that synchronise with a GPU) raises."""

    NAMES = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__")

    def __init__(self, after: int) -> None:
        self.after, self.saved, self.steps_forbidden = after, {}, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.after and not self.saved:
            for name in self.NAMES:
                self.saved[name] = getattr(torch.Tensor, name)

                def forbidden(*args, _name=name, **kwargs):
                    raise AssertionError(f"torch.Tensor.{_name} inside a training epoch")

                setattr(torch.Tensor, name, forbidden)
        if self.saved:
            self.steps_forbidden += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.restore()  # before Lightning's teardown moves the model (`.cpu()`)

    def restore(self) -> None:
        for name, method in self.saved.items():
            setattr(torch.Tensor, name, method)
        self.saved = {}


@pytest.mark.slow
def test_no_host_read_inside_an_epoch_with_adversarial_training(standin_dir, tmp_path):
    guard = ForbidHostReads(after=1)
    attack = AdversarialTraining(fraction=1.0, epsilon=(0.03, 0.03), steps=(1, 1), random_start=True, target="true_label")
    try:
        # As on a GPU: the finite-loss record read every N steps (here: beyond the epoch),
        # logging every N steps, a progress bar off (its per-step refresh reads the loss).
        trainer = fit(
            standin_dir, tmp_path, 4, callbacks=[guard, attack, FiniteLossCheck(every_n_steps=50)],
            log_every_n_steps=50, enable_checkpointing=False,
        )  # fmt: skip
    finally:
        guard.restore()
    assert guard.steps_forbidden == 3 and trainer.global_step == 4
    assert attack.batches_perturbed == 4
    assert np.isfinite(float(trainer.callback_metrics["train/loss_epoch"]))


DDP_PROBE = '''
import json
from lightning.pytorch.callbacks import Callback


class IndexProbe(Callback):
    """Each rank records the samples of its training batches and of its validation batches."""

    def __init__(self, folder: str) -> None:
        self.folder, self.train, self.val = folder, [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train.append(trainer.train_dataloader.last_indices.tolist())

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.val = []  # the last validation only (the sanity check runs one first)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.val.append(trainer.val_dataloaders.last_indices.tolist())

    def on_train_end(self, trainer, pl_module) -> None:
        with open(f"{self.folder}/rank{trainer.global_rank}.json", "w") as handle:
            json.dump({"train": self.train, "val": self.val, "world_size": trainer.world_size}, handle)
'''


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_process_ddp_ranks_take_disjoint_shards_that_cover_the_epoch(tiny_config, tmp_path):
    import json
    import os
    import sys
    import textwrap

    import yaml
    from test_ddp import run_group

    (tmp_path / "probe.py").write_text(textwrap.dedent(DDP_PROBE))
    probe = tmp_path / "probe.yaml"
    probe.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "probe.IndexProbe", "init_args": {"folder": str(tmp_path)}}]}}))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("MASTER_PORT", None)
    fit = run_group(
        [sys.executable, "-m", "lit_vision", "fit", "--config", str(tiny_config), "--config", str(probe),
         "--data.placement", "resident", "--data.cache_dir", str(tmp_path / "cache"),
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "1",
         "--trainer.logger", "false"],
        cwd=tmp_path, env=env, timeout=240,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stdout[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(seen["world_size"] == 2 for seen in ranks)
    train = [set(sum(seen["train"], [])) for seen in ranks]
    # 64 training images, 32 per rank, batches of 16: disjoint shards covering the epoch.
    assert [len(seen["train"]) for seen in ranks] == [2, 2]
    assert not train[0] & train[1] and train[0] | train[1] == set(range(64))
    val = [sum(seen["val"], []) for seen in ranks]
    assert sorted(val[0] + val[1]) == list(range(16))  # 16 val images, 8 per rank
