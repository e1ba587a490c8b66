"""The training input pipeline: one `Augmentation` for the per-image and batched paths, where
augmentation runs (`data.augment_on`), worker-side generators, the decoded cache."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data.augment_settings import Augmentation
from lit_vision.data.batch_augment import BatchAugment
from lit_vision.data.collate import WorkerBatchAugment
from lit_vision.data.transforms import SquareResize, train_transform
from lit_vision.utils.generators import keyed_generator

IDENTITY = Augmentation(flip=False, degrees=0, scale=(1, 1), ratio=(1, 1), gain=0)


def make_datamodule(data_dir, **overrides) -> MiniPlacesDataModule:
    # The loader paths, named: these tests are about them whatever data.placement: auto comes to pick.
    settings = dict(data_dir=str(data_dir), num_classes=4, batch_size=8, num_workers=0,
                    resize_size=36, crop_size=32, pin_memory=False, placement="loader")  # fmt: skip
    settings.update(overrides)
    return MiniPlacesDataModule(**settings)


def images(batch=4, size=32) -> torch.Tensor:
    return (torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)


def ramp(size=64) -> torch.Tensor:
    """A uint8 image whose value is proportional to x (all channels): widths are readable."""
    row = torch.linspace(0, 255, size)
    return row.expand(3, size, size).round().to(torch.uint8)


def both_paths(augmentation: Augmentation, x: torch.Tensor, crop: int = 32) -> dict[str, torch.Tensor]:
    """`x` augmented by the batched and by the per-image path, as float in [0, 255]."""
    torch.manual_seed(0)
    per_image = train_transform(augmentation, crop)
    return {
        "batched": BatchAugment(crop, augmentation)(x, torch.Generator().manual_seed(0)) * 255,
        "per image": torch.stack([per_image(image) for image in x]).float(),
    }


# --- each setting takes effect, on both paths


def test_identity_settings_give_the_centre_resized_square():
    wide = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = SquareResize(32)(wide).float()
    batched = BatchAugment(32, IDENTITY)(SquareResize(32)(wide)[None])[0] * 255
    per_image = train_transform(IDENTITY, 32)(SquareResize(32)(wide)).float()
    assert expected.shape == (3, 32, 32)
    assert torch.allclose(batched, expected, atol=0.5) and torch.equal(per_image, expected)


def test_flip_only_gives_the_image_or_its_mirror():
    x = images(32)
    for path, out in both_paths(Augmentation(flip=True, degrees=0, scale=(1, 1), ratio=(1, 1), gain=0), x).items():
        mirrored = [torch.allclose(o, i.float().flip(-1), atol=0.5) for o, i in zip(out, x)]
        unchanged = [torch.allclose(o, i.float(), atol=0.5) for o, i in zip(out, x)]
        assert all(m or u for m, u in zip(mirrored, unchanged)), path
        assert 4 <= sum(mirrored) <= 28, path


def test_gain_only_scales_each_channel_by_its_own_factor():
    x = torch.full((16, 3, 32, 32), 100, dtype=torch.uint8)
    for path, out in both_paths(Augmentation(flip=False, degrees=0, scale=(1, 1), ratio=(1, 1), gain=0.3), x).items():
        factors = out.mean(dim=(2, 3)) / 100  # [B, 3]
        assert factors.min() >= 0.7 - 0.01 and factors.max() <= 1.3 + 0.01, path
        assert (factors[:, 0] - factors[:, 1]).abs().max() > 0.05, path  # channels differ
        assert out.std(dim=(2, 3)).max() < 0.6, path  # one factor per channel, not per pixel


def test_rotation_only_rotates_about_the_centre_and_fills_corners_with_zero():
    x = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    for degrees in (0, 45):
        settings = Augmentation(flip=False, degrees=degrees, scale=(1, 1), ratio=(1, 1), gain=0)
        for path, out in both_paths(settings, x).items():
            dark_corner = (out[:, :, 0, 0] < 200).all(dim=1).float().mean()
            assert torch.allclose(out[:, :, 16, 16], torch.full((64, 3), 255.0), atol=1), path
            assert (dark_corner > 0.8) if degrees else (dark_corner == 0), (path, degrees)


def test_crop_scale_sets_the_crop_width_on_both_paths():
    """Crop width as a fraction of the image (read off a horizontal ramp), without rotation:
    scale (1/4, 1/4) with ratio 1 gives half-width crops; the default scale and ratio draw
    the same width distribution on both paths."""
    x = ramp().expand(256, 3, 64, 64)
    quarter = Augmentation(flip=False, degrees=0, scale=(0.25, 0.25), ratio=(1, 1), gain=0)
    for path, out in both_paths(quarter, x, crop=64).items():
        width = (out[:, 0, :, -1] - out[:, 0, :, 0]).mean(dim=1) / 255
        assert torch.allclose(width, torch.full_like(width, 0.5), atol=0.03), path
    default_crop = Augmentation(flip=False, degrees=0, gain=0)
    widths = {path: ((out[:, 0, :, -1] - out[:, 0, :, 0]).mean(dim=1) / 255) for path, out in both_paths(default_crop, x, crop=64).items()}
    # narrowest: area 1/4 at aspect 0.8, width √0.2 ≈ 0.447 of the image
    assert 0.43 < widths["batched"].min() < 0.5 and widths["batched"].max() <= 1 + 1e-3
    assert widths["batched"].mean().item() == pytest.approx(widths["per image"].mean().item(), abs=0.04)
    assert widths["batched"].std().item() == pytest.approx(widths["per image"].std().item(), abs=0.04)


def test_flip_and_quarter_turn_match_exact_tensor_ops():
    x = images()
    quarter = BatchAugment(32, IDENTITY)
    identity_box = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    turn = torch.tensor([[[0.0, -1], [1, 0]]])
    quarter.sample_boxes = lambda b, h, w, device, generator=None: (identity_box.repeat(b, 1, 1), turn.repeat(b, 1, 1))
    turned = quarter(x) * 255
    assert torch.allclose(turned, x.float().rot90(1, dims=(-2, -1)), atol=0.5) or torch.allclose(
        turned, x.float().rot90(-1, dims=(-2, -1)), atol=0.5
    )


def test_each_sample_gets_its_own_parameters_and_output_is_pixel_space():
    x = images(batch=1).repeat(16, 1, 1, 1)
    out = BatchAugment(24)(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    distinct = {tuple(o.flatten()[:50].tolist()) for o in out}
    assert len(distinct) == 16


def test_crop_area_and_flip_rate():
    box, rotation = BatchAugment(32).sample_boxes(4096, 36, 36, "cpu", torch.Generator().manual_seed(0))
    # |det| of the box's 2×2 part = crop area / image area (negative when flipped).
    area = box[:, :, :2].det().abs()
    assert 0.25 - 1e-4 <= area.min() and area.max() <= 1 + 1e-4
    assert (box[:, :, :2].det() < 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    angles = torch.atan2(rotation[:, 1, 0], rotation[:, 0, 0]).rad2deg()
    assert -15 <= angles.min() < -14 and 14 < angles.max() <= 15 and torch.allclose(rotation.det(), torch.ones(4096))


def test_settings_reach_the_datamodule_paths(standin_dir):
    """With identity settings every placement hands the model the plain crop-size square (the
    same shuffled images for the same seed); with the defaults it does not."""
    outputs = {}
    for place in ("device", "worker_batched", "worker"):
        for name, settings in (("identity", IDENTITY), ("default", Augmentation())):
            datamodule = make_datamodule(standin_dir, augment_on=place, augmentation=settings)
            datamodule.setup("fit")
            datamodule.trainer = _Trainer(training=True)
            torch.manual_seed(0)
            batch = datamodule.on_after_batch_transfer(list(next(iter(datamodule.train_dataloader()))), 0)
            x = batch[0]
            outputs[place, name] = x.float() * (255 if x.is_floating_point() else 1)
    plain = outputs["worker", "identity"]
    for place in ("device", "worker_batched", "worker"):
        assert torch.allclose(outputs[place, "identity"], plain, atol=0.5), place
        assert not torch.allclose(outputs[place, "default"], plain, atol=20), place


def test_resize_size_sets_the_evaluation_view_only(standin_dir):
    """Evaluation keeps the centre crop_size of the resize_size square; training crops are drawn
    from the whole image, so resize_size leaves them unchanged."""
    val, train = {}, {}
    for resize in (32, 48):
        datamodule = make_datamodule(standin_dir, resize_size=resize, augment_on="worker_batched")
        datamodule.setup("fit")
        val[resize] = next(iter(datamodule.val_dataloader()))[0]
        torch.manual_seed(0)
        train[resize] = next(iter(datamodule.train_dataloader()))[0]
    assert not torch.equal(val[32], val[48])
    assert torch.equal(train[32], train[48])


# --- where augmentation runs


class _Accelerator:
    """Stands for a non-CPU accelerator."""


class _Trainer:
    def __init__(self, training: bool, global_rank: int = 0, accelerator=None) -> None:
        self.training = training
        self.global_rank = global_rank
        self.accelerator = accelerator


def test_auto_places_augmentation_in_the_workers_on_a_cpu_and_on_the_device_otherwise(standin_dir):
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    on_cpu = make_datamodule(standin_dir)
    on_cpu.trainer = trainer
    on_cpu.setup("fit")
    assert on_cpu.augment_placement == "worker_batched"
    loader = on_cpu.train_dataloader()
    assert isinstance(loader.collate_fn, WorkerBatchAugment) and loader.pin_memory is False
    x, _ = next(iter(loader))
    assert x.dtype == torch.float32 and x.shape == (8, 3, 32, 32)
    trainer.state.stage = "train"  # trainer.training: the hook must not augment again
    assert torch.equal(on_cpu.on_after_batch_transfer([x, None], 0)[0], x)
    # A CPU run's batches are channels-last (oneDNN's convolutions are faster on them).
    v, _ = next(iter(on_cpu.val_dataloader()))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert v.dtype == torch.uint8 and v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous()

    on_gpu = make_datamodule(standin_dir)
    on_gpu.trainer = _Trainer(training=True, accelerator=_Accelerator())
    on_gpu.setup("fit")
    assert on_gpu.augment_placement == "device"
    x, _ = next(iter(on_gpu.train_dataloader()))
    assert x.dtype == torch.uint8 and x.is_contiguous()
    assert on_gpu.on_after_batch_transfer([x, None], 0)[0].dtype == torch.float32

    forced = make_datamodule(standin_dir, augment_on="device")
    forced.trainer = trainer
    forced.setup("fit")
    assert forced.augment_placement == "device"
    assert next(iter(forced.train_dataloader()))[0].dtype == torch.uint8


def test_device_augmentation_runs_in_training_only(standin_dir):
    datamodule = make_datamodule(standin_dir, augment_on="device")
    batch = [images(8, 32), torch.zeros(8, dtype=torch.long)]
    datamodule.trainer = _Trainer(training=False)
    assert datamodule.on_after_batch_transfer(list(batch), 0)[0].dtype == torch.uint8
    datamodule.trainer = _Trainer(training=True)
    out = datamodule.on_after_batch_transfer(list(batch), 0)[0]
    assert out.dtype == torch.float32 and out.shape == (8, 3, 32, 32)
    for place in ("worker", "worker_batched"):
        other = make_datamodule(standin_dir, augment_on=place)
        other.trainer = _Trainer(training=True)
        assert other.on_after_batch_transfer(list(batch), 0)[0].dtype == torch.uint8


def test_device_ranks_draw_different_augmentations_reproducibly(standin_dir):
    """Every DDP rank has the same global seed; the augmentation must still differ per rank,
    and be the same again for the same seed and rank."""
    batch = [images(8, 32), torch.zeros(8, dtype=torch.long)]

    def augmented(rank: int) -> torch.Tensor:
        torch.manual_seed(0)  # what seed_everything does on every rank
        datamodule = make_datamodule(standin_dir, augment_on="device")
        datamodule.trainer = _Trainer(training=True, global_rank=rank)
        return datamodule.on_after_batch_transfer(list(batch), 0)[0]

    assert torch.equal(augmented(0), augmented(0))
    assert not torch.equal(augmented(0), augmented(1))


# --- worker-side batched augmentation


class _SameImage(torch.utils.data.Dataset):
    """One image, many times: any difference between outputs is the augmentation's draw."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int):
        return images(1, 32)[0], index


def _worker_batches(rank: int, seed: int = 0, workers: int = 2) -> list[torch.Tensor]:
    torch.manual_seed(seed)  # seed_everything: the loader derives its worker seeds from it
    collate = WorkerBatchAugment(BatchAugment(32), rank)
    loader = DataLoader(_SameImage(), batch_size=4, num_workers=workers, collate_fn=collate)
    return [x for x, _ in loader]


def test_worker_batches_use_the_device_distribution_with_the_keyed_generator():
    augment = BatchAugment(32)
    collate = WorkerBatchAugment(augment, rank=3)
    samples = [(images(1, 32)[0], i) for i in range(4)]
    torch.manual_seed(7)
    out, targets = collate(samples)
    expected = augment(images(1, 32).repeat(4, 1, 1, 1), keyed_generator("cpu", 7, 3, -1))
    assert torch.equal(out, expected) and targets.tolist() == [0, 1, 2, 3]
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_workers_and_ranks_draw_differently_and_reproducibly():
    first = _worker_batches(rank=0)
    assert len(first) == 4 and first[0].dtype == torch.float32
    # Batches 0 and 1 come from workers 0 and 1: same images, different draws.
    assert not torch.allclose(first[0], first[1], atol=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(first, _worker_batches(rank=0)))
    assert not any(torch.allclose(a, b, atol=1e-3) for a, b in zip(first, _worker_batches(rank=1)))
    assert not any(torch.allclose(a, b, atol=1e-3) for a, b in zip(first, _worker_batches(rank=0, seed=1)))


# --- the decoded cache


@pytest.mark.parametrize("augment_on", ["device", "worker_batched", "worker"])
@pytest.mark.parametrize("cache", [False, True])
def test_datamodule_placements_emit_crops(standin_dir, tmp_path, augment_on, cache):
    datamodule = make_datamodule(standin_dir, augment_on=augment_on, cache=cache, cache_dir=str(tmp_path / "cache"))
    datamodule.prepare_data()
    datamodule.setup("fit")
    x, _ = next(iter(datamodule.train_dataloader()))
    v, _ = next(iter(datamodule.val_dataloader()))
    assert x.dtype == (torch.float32 if augment_on == "worker_batched" else torch.uint8)
    assert x.shape == (8, 3, 32, 32) and v.shape == (8, 3, 32, 32) and v.dtype == torch.uint8
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
    # Another resize_size is another evaluation view: a cache of its own, not the stale one.
    wider = make_datamodule(standin_dir, resize_size=48, cache=True, cache_dir=str(tmp_path))
    wider.setup("validate")
    assert len(list(tmp_path.glob("val-*.u8"))) == 2
    assert not torch.equal(wider.val_set[0][0], cached.val_set[0][0])


def test_default_workers(tmp_path):
    assert 1 <= make_datamodule(tmp_path, num_workers=None).num_workers <= 8


# --- the command line


@pytest.mark.slow
def test_augmentation_is_set_from_the_command_line_and_saved_as_plain_types(tiny_config, run_cli, tmp_path):
    code = run_cli(
        "fit", "--config", tiny_config, "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--data.augmentation.degrees", "0", "--data.augmentation.scale", "[0.5, 1]", "--data.augmentation.flip", "false",
    )  # fmt: skip
    assert code == 0
    checkpoint = tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt"
    saved = torch.load(checkpoint, weights_only=True)["datamodule_hyper_parameters"]
    assert saved["augmentation"] == {"flip": False, "degrees": 0.0, "scale": [0.5, 1.0], "ratio": [0.8, 1.2], "gain": 0.15,
                                     "padding": 0}
    assert saved["augment_on"] == "auto"


def test_bad_augmentation_from_yaml_is_one_clear_message(tiny_config, run_cli, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  augmentation:\n    scale: [0.5, 2]\n")
    assert run_cli("fit", "--config", tiny_config, "--config", bad) == 2
    err = capsys.readouterr().err
    assert "data.augmentation.scale must satisfy 0 < low <= high <= 1" in err and "Traceback" not in err


@pytest.mark.slow
def test_cpu_training_bench_runs_both_loops(capsys):
    """`python -m lit_vision.bench train_cpu` at its smallest: both loops train and report."""
    from lit_vision.bench.__main__ import main

    main(["train_cpu", "--steps", "1", "--warmup", "1", "--rounds", "1", "--batch-size", "4", "--classes", "2", "--workers", "1"])
    table = capsys.readouterr().out
    assert "plain PyTorch loop" in table and "ours: Trainer.fit, augment_on=auto (worker_batched)" in table
