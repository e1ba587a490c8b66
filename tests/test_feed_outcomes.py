"""Every way to feed the model trains like the image folders do — checked by outcome, not mechanism.

- A stream's training batches mix classes like the folder loader's (a class-sorted list written
  in list order gave 2-3 classes per batch of 64 where the folders give 10), and a seeded fit
  from the stream learns what the same fit from the folders learns.
- Every validation sees the whole split once, on every placement: after a sanity check that
  stopped part-way, at each `val_check_interval` validation, and in `validate`.
- Kill and resume, with one class per training image so that labels name samples: the samples
  the checkpoint holds plus those the resumed run trains are the epoch exactly once — across a
  change of placement or worker count — or the resume is refused before its first step with the
  saved and requested settings named (a stream on another worker grid, a stream's position on
  the folders and back). The "kill" is an exception raised after a mid-epoch checkpoint, in
  process, so that the matrix fits a small CPU.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lit_vision.data import MiniPlacesDataModule, stream_position
from lit_vision.data.optimize import optimize_dataset
from lit_vision.data.standin import generate_standin
from lit_vision.errors import LitVisionError
from lit_vision.models import SimpleNet

# ---------------------------------------------------------------------------------------------
# Class mix and learning


@pytest.fixture(scope="module")
def sorted_ten(tmp_path_factory) -> Path:
    """10 classes × 64 training images, listed class by class as MiniPlaces' train list is."""
    return generate_standin(tmp_path_factory.mktemp("data") / "ten", num_classes=10, train_per_class=64,
                            val_per_class=10, test_images=2, image_size=32)  # fmt: skip


def datamodule(root, **kwargs) -> MiniPlacesDataModule:
    settings = {"num_classes": 10, "batch_size": 64, "num_workers": 0, "resize_size": 32, "crop_size": 32,
                "augment_on": "worker", "pin_memory": False, "verify": False, **kwargs}  # fmt: skip
    return MiniPlacesDataModule(str(root), **settings)


def classes_per_batch(data: MiniPlacesDataModule) -> float:
    L.seed_everything(0)
    data.setup("fit")
    return statistics.mean(len(set(labels.tolist())) for _, labels in data.train_dataloader())


# One 64 MB chunk holds the whole set (a small dataset), or chunks of 64 images: ten chunks, one
# class each when written in list order, as a large class-sorted set's many chunks are.
@pytest.mark.parametrize("num_workers, chunk_size", [(0, None), (2, None), (2, 64)])
def test_stream_batches_mix_classes_like_the_folder_loader(sorted_ten, tmp_path, num_workers, chunk_size):
    stream = optimize_dataset(sorted_ten, tmp_path / "stream", num_workers=1, chunk_size=chunk_size)
    folder = classes_per_batch(datamodule(sorted_ten, num_workers=num_workers))
    streamed = classes_per_batch(datamodule(sorted_ten, stream=str(stream), num_workers=num_workers))
    assert folder > 9  # 64 draws from 10 classes
    assert streamed >= 0.8 * folder, f"{streamed:.1f} classes per stream batch, {folder:.1f} from the folders"


def test_a_stream_written_in_list_order_is_refused_for_training(sorted_ten, tmp_path):
    import json

    stream = optimize_dataset(sorted_ten, tmp_path / "stream", num_workers=1, chunk_size=64)
    meta_file = stream / "lit_vision.json"
    meta = json.loads(meta_file.read_text())
    assert meta["format_version"] == 2 and meta["train_order"] == {"shuffled": True, "seed": 0}
    meta["format_version"] = 1  # what the older optimize wrote
    del meta["train_order"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(LitVisionError, match=r"older `lit-vision optimize` \(format 1\).*Re-run `lit-vision optimize"):
        datamodule(sorted_ten, stream=str(stream)).setup("fit")
    data = datamodule(sorted_ten, stream=str(stream))
    data.setup("validate")  # evaluation order does not matter: still readable
    assert sum(len(labels) for _, labels in data.val_dataloader()) == 100


def test_the_stand_in_flag_may_stay_on_with_a_stream(sorted_ten, tmp_path):
    """README: `lit-vision optimize data/standin streams/standin`, then the quickstart config (which
    sets data.standin: true) with --data.stream: the stand-in's folder serves predict only."""
    stream = optimize_dataset(sorted_ten, tmp_path / "stream", num_workers=1)
    data = datamodule(sorted_ten, stream=str(stream), standin=True)
    data.prepare_data()
    data.setup("fit")
    assert len(data.class_names) == 10


def val_top1(data: MiniPlacesDataModule, epochs: int) -> float:
    L.seed_everything(0)
    model = SimpleNet(num_classes=10, optimizer="adamw", lr=2e-3, warmup_epochs=0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return float(trainer.callback_metrics["val/top1"])


@pytest.mark.slow
def test_a_seeded_fit_from_the_stream_learns_as_the_folder_fit(sorted_ten, tmp_path):
    stream = optimize_dataset(sorted_ten, tmp_path / "stream", num_workers=1)
    settings = {"batch_size": 32, "augment_on": "auto", "cache_dir": str(tmp_path / "cache")}
    folder = val_top1(datamodule(sorted_ten, **settings), epochs=4)
    streamed = val_top1(datamodule(sorted_ten, stream=str(stream), **settings), epochs=4)
    assert folder > 0.3, f"the folder fit itself did not learn ({folder:.2f}); the comparison means nothing"
    assert streamed >= folder - 0.1, f"val/top1 {streamed:.2f} from the stream, {folder:.2f} from the folders"


# ---------------------------------------------------------------------------------------------
# One class per image: labels name samples


@pytest.fixture(scope="module")
def one_per_class(tmp_path_factory) -> Path:
    """64 classes, one training and one validation image each (and two unlabelled)."""
    return generate_standin(tmp_path_factory.mktemp("data") / "named", num_classes=64, train_per_class=1,
                            val_per_class=1, test_images=2, image_size=32)  # fmt: skip


def named(root, tmp_path, **kwargs) -> MiniPlacesDataModule:
    settings = {"num_classes": 64, "batch_size": 8, "num_workers": 0, "resize_size": 32, "crop_size": 32,
                "pin_memory": False, "cache_dir": str(tmp_path / "cache"), **kwargs}  # fmt: skip
    return MiniPlacesDataModule(str(root), **settings)


class ValidationRecorder(Callback):
    """The labels (= sample names) of every validation, the sanity check's first."""

    def __init__(self) -> None:
        self.runs: list[list[int]] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.runs.append([])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.runs[-1] += batch[1].tolist()


@pytest.mark.parametrize("placement", ["loader", "resident"])
def test_every_validation_sees_the_whole_split(one_per_class, tmp_path, placement):
    recorder = ValidationRecorder()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2,
                        val_check_interval=0.5, callbacks=[recorder])  # fmt: skip
    data = named(one_per_class, tmp_path, placement=placement, augment_on="device")
    L.seed_everything(0)
    model = SimpleNet(num_classes=64, optimizer="adamw", lr=1e-3, warmup_epochs=0)
    trainer.fit(model, datamodule=data)
    trainer.validate(model, datamodule=data, verbose=False)
    sanity, *validations = recorder.runs
    assert len(set(sanity)) == 16  # the sanity check: its 2 batches of 8
    assert len(validations) == 3  # at half the epoch, at its end, and validate
    for seen in validations:
        assert sorted(seen) == list(range(64)), f"missing {sorted(set(range(64)) - set(seen))}"


class Preempted(Exception):
    pass


class TrainedSamples(Callback):
    """Labels (= sample names) of every trained batch by global step; raises at `stop_at`."""

    def __init__(self, stop_at: int = 0) -> None:
        self.stop_at, self.by_step = stop_at, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.by_step[trainer.global_step] = batch[1].tolist()
        if trainer.global_step == self.stop_at:
            raise Preempted


EPOCH_STEPS = 8  # 64 images, batch 8
# Mid-epoch 1, after its 3rd batch: an odd batch count, which a changed LitData worker grid
# does not continue exactly (an even one happens to).
SAVED_AT = 11
CHECKPOINT_EVERY = 11  # steps


def train(root, tmp_path, run: str, callback: TrainedSamples, ckpt_path=None, every=CHECKPOINT_EVERY, seed=0, **data_args) -> None:
    L.seed_everything(seed)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=every, save_top_k=-1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[callback, saver], default_root_dir=tmp_path / run)  # fmt: skip
    model = SimpleNet(num_classes=64, optimizer="sgd", lr=0.01, warmup_epochs=0)
    trainer.fit(model, datamodule=named(root, tmp_path, **data_args), ckpt_path=ckpt_path)


def killed(root, tmp_path, **data_args) -> TrainedSamples:
    before = TrainedSamples(stop_at=SAVED_AT + 1)
    with pytest.raises(Preempted):
        train(root, tmp_path, "killed", before, **data_args)
    assert (tmp_path / "ckpt" / f"step={SAVED_AT}.ckpt").is_file()
    return before


def resumed(root, tmp_path, seed=0, **data_args) -> TrainedSamples:
    after = TrainedSamples()
    train(root, tmp_path, "resumed", after, ckpt_path=tmp_path / "ckpt" / f"step={SAVED_AT}.ckpt", seed=seed, **data_args)
    return after


def interrupted_epoch(before: TrainedSamples, after: TrainedSamples) -> list[int]:
    held = [i for step in range(EPOCH_STEPS + 1, SAVED_AT + 1) for i in before.by_step[step]]
    return held + [i for step in sorted(after.by_step) for i in after.by_step[step]]


def assert_exactly_once(samples: list[int]) -> None:
    repeated = {i: n for i, n in Counter(samples).items() if n > 1}
    assert not repeated, f"trained more than once: {repeated}"
    assert sorted(samples) == list(range(64)), f"never trained: {sorted(set(range(64)) - set(samples))}"


FOLDER_CASES = {
    "loader 0 workers -> loader 2 workers": ({"placement": "loader", "num_workers": 0}, {"placement": "loader", "num_workers": 2}),
    "loader -> resident": ({"placement": "loader", "num_workers": 1}, {"placement": "resident", "augment_on": "device"}),
    "resident -> loader": ({"placement": "resident", "augment_on": "device"}, {"placement": "loader", "num_workers": 0}),
    "loader 2 workers -> resident": ({"placement": "loader", "num_workers": 2}, {"placement": "resident", "augment_on": "device"}),
    "resident -> loader 2 workers": ({"placement": "resident", "augment_on": "device"}, {"placement": "loader", "num_workers": 2}),
    "loader 2 workers -> loader 1 worker": ({"placement": "loader", "num_workers": 2}, {"placement": "loader", "num_workers": 1}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_a_killed_epoch_resumed_on_another_placement_or_worker_count_trains_each_sample_once(one_per_class, tmp_path, case):
    first, second = FOLDER_CASES[case]
    before = killed(one_per_class, tmp_path, **first)
    after = resumed(one_per_class, tmp_path, **second)
    assert sorted(after.by_step) == list(range(SAVED_AT + 1, 2 * EPOCH_STEPS + 1))
    assert_exactly_once(interrupted_epoch(before, after))


@pytest.fixture(scope="module")
def named_stream(one_per_class, tmp_path_factory) -> Path:
    # One chunk (the default 64 MB holds it all), as `lit-vision optimize` writes a small set.
    return optimize_dataset(one_per_class, tmp_path_factory.mktemp("streams") / "named", num_workers=1)


@pytest.mark.slow
@pytest.mark.parametrize("resume_seed", [0, 1])  # 1: seed_everything: true drew another seed; the saved one wins
def test_a_killed_stream_epoch_resumes_exactly_on_its_own_grid(one_per_class, named_stream, tmp_path, resume_seed):
    before = killed(one_per_class, tmp_path, stream=str(named_stream), num_workers=2)
    after = resumed(one_per_class, tmp_path, seed=resume_seed, stream=str(named_stream), num_workers=2)
    assert_exactly_once(interrupted_epoch(before, after))


@pytest.mark.slow
def test_a_killed_stream_epoch_on_another_worker_count_is_refused_before_a_step(one_per_class, named_stream, tmp_path, monkeypatch):
    before = killed(one_per_class, tmp_path, stream=str(named_stream), num_workers=1)
    after = TrainedSamples()
    with pytest.raises(LitVisionError, match=r"data.num_workers 1 in the checkpoint, 2 now.*Resume with data.num_workers 1"):
        train(one_per_class, tmp_path, "refused", after, ckpt_path=tmp_path / "ckpt" / f"step={SAVED_AT}.ckpt",
              stream=str(named_stream), num_workers=2)  # fmt: skip
    assert not after.by_step  # refused before its first step
    # Negative control: LitData's own resume on the changed grid does not train each sample once.
    monkeypatch.setattr(stream_position, "check_stream_grid", lambda *args: None)
    monkeypatch.setattr("lit_vision.data.train_position.check_stream_grid", lambda *args: None)
    unguarded = resumed(one_per_class, tmp_path, stream=str(named_stream), num_workers=2)
    with pytest.raises(AssertionError, match="trained more than once|never trained"):
        assert_exactly_once(interrupted_epoch(before, unguarded))


@pytest.mark.slow
def test_a_killed_epoch_switching_between_stream_and_folders_is_refused(one_per_class, named_stream, tmp_path):
    killed(one_per_class, tmp_path, stream=str(named_stream), num_workers=0)
    with pytest.raises(LitVisionError, match=r"saved with data.stream\), but this run reads image folders"):
        resumed(one_per_class, tmp_path, num_workers=0)
    for old in (tmp_path / "ckpt").iterdir():
        old.unlink()
    killed(one_per_class, tmp_path, num_workers=0)
    with pytest.raises(LitVisionError, match=r"middle of an epoch read from image folders .* reads data.stream"):
        resumed(one_per_class, tmp_path, stream=str(named_stream), num_workers=0)


@pytest.mark.slow
@pytest.mark.parametrize("resume_workers", [1, 2])
def test_an_epoch_end_stream_checkpoint_resumes_with_the_whole_next_epoch_on_any_grid(one_per_class, named_stream, tmp_path, resume_workers):
    with pytest.raises(Preempted):
        train(one_per_class, tmp_path, "killed", TrainedSamples(stop_at=EPOCH_STEPS + 1), every=EPOCH_STEPS,
              stream=str(named_stream), num_workers=1)  # fmt: skip
    after = TrainedSamples()
    train(one_per_class, tmp_path, "resumed", after, ckpt_path=tmp_path / "ckpt" / f"step={EPOCH_STEPS}.ckpt",
          stream=str(named_stream), num_workers=resume_workers)  # fmt: skip
    assert sorted(after.by_step) == list(range(EPOCH_STEPS + 1, 2 * EPOCH_STEPS + 1))
    assert_exactly_once([i for step in after.by_step for i in after.by_step[step]])


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["loader", "resident"])
def test_a_killed_epoch_resumed_with_more_images_per_step_is_refused_and_fewer_trains_each_once(one_per_class, tmp_path, placement):
    first = {"placement": placement, "augment_on": "device", "num_workers": 0}
    before = killed(one_per_class, tmp_path, **first)
    # Batch 16 after 3 of 8 batches of 8: Lightning would count 3 of 4 batches done and stop after
    # one more, leaving 24 images of the interrupted epoch untrained.
    refused = TrainedSamples()
    with pytest.raises(LitVisionError, match=r"data.batch_size 8 on 1 process\(es\) \(8 images per step\).*takes 16"):
        train(one_per_class, tmp_path, "refused", refused, ckpt_path=tmp_path / "ckpt" / f"step={SAVED_AT}.ckpt",
              **{**first, "batch_size": 16})  # fmt: skip
    assert not refused.by_step
    after = resumed(one_per_class, tmp_path, **{**first, "batch_size": 4})
    assert_exactly_once(interrupted_epoch(before, after))


@pytest.mark.slow
@pytest.mark.parametrize("first, second", [("loader", "resident"), ("resident", "loader"), ("resident", "resident")])
def test_an_epoch_end_checkpoint_resumes_with_the_whole_next_epoch_on_either_placement(one_per_class, tmp_path, first, second):
    with pytest.raises(Preempted):
        train(one_per_class, tmp_path, "killed", TrainedSamples(stop_at=EPOCH_STEPS + 1), every=EPOCH_STEPS,
              placement=first, augment_on="device")  # fmt: skip
    after = TrainedSamples()
    train(one_per_class, tmp_path, "resumed", after, ckpt_path=tmp_path / "ckpt" / f"step={EPOCH_STEPS}.ckpt",
          placement=second, augment_on="device", batch_size=16)  # fmt: skip  (an epoch's end: any batch size)
    assert len(after.by_step) == 4  # the whole next epoch, 64 images in batches of 16
    assert_exactly_once([i for step in after.by_step for i in after.by_step[step]])


@pytest.mark.slow
def test_a_killed_stream_epoch_resumed_on_another_stream_location_is_refused(one_per_class, named_stream, tmp_path):
    import shutil

    moved = shutil.copytree(named_stream, tmp_path / "moved")  # the same samples, another data.stream
    killed(one_per_class, tmp_path, stream=str(named_stream), num_workers=1)
    after = TrainedSamples()
    with pytest.raises(LitVisionError, match=r"position in the stream .*moved.* does not fit this run"):
        train(one_per_class, tmp_path, "refused", after, ckpt_path=tmp_path / "ckpt" / f"step={SAVED_AT}.ckpt",
              stream=str(moved), num_workers=1)  # fmt: skip
    assert not after.by_step
