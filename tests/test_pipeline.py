"""The fast input pipeline: batched device augmentation, the decoded cache, the DataModule hook."""

from __future__ import annotations

import pytest
import torch

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data.batch_augment import BatchAugment


def make_datamodule(data_dir, **overrides) -> MiniPlacesDataModule:
    settings = dict(data_dir=str(data_dir), num_classes=4, batch_size=8, num_workers=0,
                    resize_size=36, crop_size=32, pin_memory=False)  # fmt: skip
    settings.update(overrides)
    return MiniPlacesDataModule(**settings)


def images(batch=4, size=32) -> torch.Tensor:
    return (torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)


def test_identity_parameters_reproduce_the_input():
    augment = BatchAugment(crop=32, scale=(1, 1), ratio=(1, 1), degrees=0, gain=0, flip=False)
    x = images()
    assert torch.allclose(augment(x) * 255, x.float(), atol=0.5)


def test_flip_and_quarter_turn_match_exact_tensor_ops():
    x = images()
    theta = BatchAugment(crop=32, scale=(1, 1), ratio=(1, 1), degrees=0, gain=0, flip=True)
    out = theta(x, generator=torch.Generator().manual_seed(1)) * 255
    for i in range(len(x)):
        assert torch.allclose(out[i], x[i].float(), atol=0.5) or torch.allclose(out[i], x[i].float().flip(-1), atol=0.5)
    quarter = BatchAugment(crop=32, scale=(1, 1), ratio=(1, 1), degrees=90, gain=0, flip=False)
    quarter.sample_theta = lambda b, h, w, device, generator=None: torch.tensor([[[0.0, -1, 0], [1, 0, 0]]]).repeat(b, 1, 1)
    turned = quarter(x) * 255
    assert torch.allclose(turned, x.float().rot90(1, dims=(-2, -1)), atol=0.5) or torch.allclose(
        turned, x.float().rot90(-1, dims=(-2, -1)), atol=0.5
    )


def test_each_sample_gets_its_own_parameters_and_output_is_pixel_space():
    x = images(batch=1).repeat(16, 1, 1, 1)
    out = BatchAugment(crop=24)(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    distinct = {tuple(o.flatten()[:50].tolist()) for o in out}
    assert len(distinct) == 16


def test_crop_area_and_rotation_ranges():
    augment = BatchAugment(crop=32)
    theta = augment.sample_theta(4096, 36, 36, "cpu", torch.Generator().manual_seed(0))
    # |det| of the 2×2 part = crop area / image area (a rotation has det 1, the flip -1).
    area = theta[:, :, :2].det().abs()
    assert 0.25 - 1e-4 <= area.min() and area.max() <= 1 + 1e-4
    assert (theta[:, :, :2].det() < 0).float().mean().item() == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("augment_on", ["device", "worker"])
@pytest.mark.parametrize("cache", [False, True])
def test_datamodule_modes_emit_uint8_crops(standin_dir, tmp_path, augment_on, cache):
    datamodule = make_datamodule(standin_dir, augment_on=augment_on, cache=cache, cache_dir=str(tmp_path / "cache"))
    datamodule.prepare_data()
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    v, _ = next(iter(datamodule.val_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 32, 32) and v.shape == (8, 3, 32, 32)
    if cache:
        assert len(list((tmp_path / "cache").glob("*.u8"))) == 2
        assert not list((tmp_path / "cache").glob(".*partial*"))


def test_cache_matches_the_jpeg_path_and_is_reused(standin_dir, tmp_path):
    plain = make_datamodule(standin_dir)
    plain.setup("validate")
    cached = make_datamodule(standin_dir, cache=True, cache_dir=str(tmp_path))
    cached.setup("validate")  # builds on first use even without prepare_data
    (path,) = tmp_path.glob("val-*.u8")
    stamp = path.stat().st_mtime_ns
    for i in (0, 5, 15):
        assert torch.equal(plain.val_set[i][0], cached.val_set[i][0])
        assert plain.val_set[i][1] == cached.val_set[i][1]
    again = make_datamodule(standin_dir, cache=True, cache_dir=str(tmp_path))
    again.setup("validate")
    assert path.stat().st_mtime_ns == stamp


class _Trainer:
    def __init__(self, training: bool, global_rank: int = 0) -> None:
        self.training = training
        self.global_rank = global_rank


def test_device_augmentation_runs_in_training_only(standin_dir):
    datamodule = make_datamodule(standin_dir)
    batch = [images(8, 32), torch.zeros(8, dtype=torch.long)]
    datamodule.trainer = _Trainer(training=False)
    assert datamodule.on_after_batch_transfer(list(batch), 0)[0].dtype == torch.uint8
    datamodule.trainer = _Trainer(training=True)
    out = datamodule.on_after_batch_transfer(list(batch), 0)[0]
    assert out.dtype == torch.float32 and out.shape == (8, 3, 32, 32)
    worker = make_datamodule(standin_dir, augment_on="worker")
    worker.trainer = _Trainer(training=True)
    assert worker.on_after_batch_transfer(list(batch), 0)[0].dtype == torch.uint8


def test_ranks_draw_different_augmentations_reproducibly(standin_dir):
    """Every DDP rank has the same global seed; the augmentation must still differ per rank,
    and be the same again for the same seed and rank."""
    batch = [images(8, 32), torch.zeros(8, dtype=torch.long)]

    def augmented(rank: int) -> torch.Tensor:
        torch.manual_seed(0)  # what seed_everything does on every rank
        datamodule = make_datamodule(standin_dir)
        datamodule.trainer = _Trainer(training=True, global_rank=rank)
        return datamodule.on_after_batch_transfer(list(batch), 0)[0]

    assert torch.equal(augmented(0), augmented(0))
    assert not torch.equal(augmented(0), augmented(1))


def test_default_workers_and_bad_mode(tmp_path):
    assert 1 <= make_datamodule(tmp_path, num_workers=None).num_workers <= 8
    from lit_vision.errors import LitVisionError

    with pytest.raises(LitVisionError, match="augment_on"):
        make_datamodule(tmp_path, augment_on="gpu")
