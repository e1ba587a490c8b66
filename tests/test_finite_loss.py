"""A non-finite training loss stops the run with a message naming the step and batch, before
the bad step touches the weights, and last.ckpt keeps the last good state; read every N steps
(as on an accelerator), it still names the bad step and no checkpoint is written after it."""

from __future__ import annotations

import math

import pytest
import torch

from lit_vision.models import SimpleNet

# Both tests are CLI fits.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")]


class NaNFromStep(SimpleNet):
    """SimpleNet whose training loss turns NaN from global step `nan_from_step` on."""

    def __init__(self, *args, nan_from_step: int = 5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.nan_from_step = nan_from_step

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * math.nan if self.global_step >= self.nan_from_step else loss


MODEL = f"{NaNFromStep.__module__}.{NaNFromStep.__qualname__}"


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_config, run_cli, tmp_path, capsys):
    # 64 training images / batch 16 = 4 steps per epoch; last.ckpt every 2 steps and at epoch end.
    code = run_cli(
        "fit", "--config", tiny_config, "--model", MODEL, "--model.init_args.num_classes", "4",
        "--model.init_args.nan_from_step", "5", "--trainer.max_steps", "12", "--trainer.max_epochs", "3",
        "--checkpoint_every_n_steps", "2", "--trainer.logger", "false",
    )  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2
    assert "training loss is not finite (nan) at global step 5, epoch 1, batch 1" in error, error
    assert "Traceback" not in error
    last = tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == 4  # the end of epoch 0, before the NaN
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())
    (best,) = (tmp_path / "checkpoints" / "tiny" / "version_0").glob("best-*.ckpt")
    assert torch.load(best, weights_only=True, map_location="cpu")["global_step"] == 4


def test_finite_training_is_untouched(tiny_config, run_cli, tmp_path):
    code = run_cli("fit", "--config", tiny_config, "--model", MODEL, "--model.init_args.num_classes", "4",
                   "--model.init_args.nan_from_step", "1000", "--trainer.max_steps", "3", "--trainer.logger", "false")  # fmt: skip
    assert code == 0
    assert torch.load(tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_read_every_n_steps_names_the_bad_step_and_writes_no_checkpoint_after_it(standin_dir, tmp_path):
    """As on an accelerator: the device's record read every 4 steps; the step-6 checkpoint
    (every 3 steps) comes first, and its save is what stops the run."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lit_vision.callbacks.finite_loss import FiniteLossCheck
    from lit_vision.data import MiniPlacesDataModule
    from lit_vision.errors import LitVisionError

    L.seed_everything(0)
    model = NaNFromStep(num_classes=4, optimizer="adamw", lr=2e-3, warmup_epochs=0, nan_from_step=4)
    data = MiniPlacesDataModule(data_dir=str(standin_dir), num_classes=4, batch_size=16, num_workers=0,
                                crop_size=32, resize_size=36, placement="loader")  # fmt: skip
    saver = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=3, save_top_k=-1)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=12, logger=False, enable_progress_bar=False, limit_val_batches=0,
        callbacks=[FiniteLossCheck(every_n_steps=4), saver],
    )  # fmt: skip
    with pytest.raises(LitVisionError) as error:
        trainer.fit(model, datamodule=data)
    message = str(error.value)
    assert "not finite (nan) at global step 4, epoch 1, batch 0" in message, message
    assert "found at global step 6 (the loss is read back every 4 steps" in message
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["step=3.ckpt"]
