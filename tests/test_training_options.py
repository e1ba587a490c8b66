"""GPU-oriented training options, each trained for one tiny epoch on the CPU through the CLI."""

from __future__ import annotations

import pytest
import torch

from lit_vision.models import SimpleNet


def last_checkpoint(tmp_path) -> dict:
    return torch.load(tmp_path / "checkpoints" / "tiny" / "last.ckpt", map_location="cpu", weights_only=True)


def assert_clean_simplenet_keys(state_dict: dict) -> None:
    assert set(state_dict) == set(SimpleNet(num_classes=4).state_dict())


@pytest.mark.parametrize(
    "options",
    [
        ["--trainer.precision", "bf16-mixed"],
        ["--model.init_args.channels_last", "true"],
        ["--trainer.gradient_clip_val", "1.0", "--trainer.gradient_clip_algorithm", "norm"],
        ["--model.init_args.label_smoothing", "0.1"],
        ["--data.augment_on", "worker"],
        ["--data.cache", "true"],
    ],
    ids=["bf16", "channels_last", "grad_clip", "label_smoothing", "augment_on_worker", "cache"],
)
def test_option_trains_on_cpu(run_cli, tiny_config, tmp_path, options):
    extra = ["--data.cache_dir", str(tmp_path / "cache")] if "--data.cache" in options else []
    assert run_cli("fit", "--config", tiny_config, *options, *extra) == 0
    checkpoint = last_checkpoint(tmp_path)
    assert_clean_simplenet_keys(checkpoint["state_dict"])
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


def test_ema_weights_are_validated_and_saved(run_cli, tiny_config, tmp_path):
    code = run_cli(
        "fit", "--config", tiny_config,
        "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
        "--trainer.callbacks.decay", "0.5",
    )  # fmt: skip
    assert code == 0
    checkpoint = last_checkpoint(tmp_path)
    # Lightning's EMA callback stores the average as the state dict (what validation used)
    # and the raw weights beside it, so a resumed run continues from the raw ones.
    assert_clean_simplenet_keys(checkpoint["state_dict"])
    raw, average = checkpoint["current_model_state"], checkpoint["state_dict"]
    assert any(not torch.equal(raw[k], average[k]) for k in average)


@pytest.mark.slow
def test_compile_trains_and_keeps_clean_checkpoint_keys(run_cli, tiny_config, tmp_path):
    code = run_cli(
        "fit", "--config", tiny_config, "--model.init_args.compile", "true", "--model.init_args.channels_last", "true",
    )  # fmt: skip
    assert code == 0
    checkpoint = last_checkpoint(tmp_path)
    assert_clean_simplenet_keys(checkpoint["state_dict"])
    assert checkpoint["hyper_parameters"]["compile"] is True
    # The checkpoint rebuilds an (uncompiled until a trainer runs it) model on its own.
    model = SimpleNet.load_from_checkpoint(tmp_path / "checkpoints" / "tiny" / "last.ckpt", map_location="cpu")
    assert model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 4)
