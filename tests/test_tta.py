"""Flip test-time augmentation (`--model.init_args.tta flip`): in eval mode the module returns
the mean of the logits of each image and its mirror; training is untouched; metric names stay."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from lit_vision.cli import build_cli
from lit_vision.errors import LitVisionError
from lit_vision.models import SimpleNet


def tiny_model(tta: str) -> SimpleNet:
    torch.manual_seed(0)
    return SimpleNet(num_classes=4, tta=tta).eval()


def test_mirror_symmetric_input_gives_the_same_logits_with_and_without_tta():
    half = torch.randint(0, 256, (3, 3, 32, 16), dtype=torch.uint8)
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)
    assert torch.equal(symmetric, symmetric.flip(-1))
    with torch.no_grad():
        plain, flipped = tiny_model("none")(symmetric), tiny_model("flip")(symmetric)
    torch.testing.assert_close(flipped, plain, rtol=0, atol=1e-5)


def test_asymmetric_input_gives_the_mean_of_image_and_mirror_logits():
    images = torch.rand(3, 3, 32, 32)
    images[..., :16] = 0  # dark left half: far from its mirror
    plain_model, tta_model = tiny_model("none"), tiny_model("flip")
    with torch.no_grad():
        plain, flipped = plain_model(images), tta_model(images)
        expected = (plain + plain_model(images.flip(-1))) / 2
    # Random-init logits are small (~0.03): the tolerances sit well below the TTA change.
    assert (flipped - plain).abs().max() > 100 * (flipped - expected).abs().max()  # the option is not ignored
    torch.testing.assert_close(flipped, expected, rtol=0, atol=1e-6)


def test_training_mode_sees_the_image_alone():
    images = torch.rand(2, 3, 32, 32)
    plain_model, tta_model = tiny_model("none").train(), tiny_model("flip").train()
    with torch.no_grad():
        torch.testing.assert_close(tta_model(images), plain_model(images), rtol=0, atol=0)


def test_gradients_flow_through_both_halves():
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    tiny_model("flip")(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_unknown_tta_is_a_clear_error():
    with pytest.raises(LitVisionError, match="model.tta must be 'none' or 'flip', got 'rotate'"):
        SimpleNet(num_classes=4, tta="rotate")


def test_metric_names_stay_the_same_under_tta():
    data = TensorDataset(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 4)
    names = {}
    for tta in ("none", "flip"):
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.validate(tiny_model(tta), DataLoader(data, batch_size=4), verbose=False)
        names[tta] = set(trainer.callback_metrics)
    assert names["flip"] == names["none"] == {"val/loss", "val/top1", "val/top5"}


def test_checkpoint_does_not_carry_tta(tmp_path):
    model = tiny_model("flip")
    trainer = L.Trainer(accelerator="cpu", logger=False, max_steps=0, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    hparams = torch.load(tmp_path / "model.ckpt", weights_only=True)["hyper_parameters"]
    assert "tta" not in hparams and hparams["num_classes"] == 4


@pytest.mark.slow
def test_validate_with_tta_through_the_cli(tiny_config, run_cli, tmp_path):
    assert run_cli("fit", "--config", tiny_config, "--trainer.max_epochs", "1") == 0
    last = next((tmp_path / "checkpoints").rglob("last.ckpt"))
    losses = {}
    for tta in ("none", "flip"):
        cli = build_cli(
            ["validate", "--config", str(tiny_config), "--ckpt_path", str(last), "--model.init_args.tta", tta]
        )
        assert cli.model.hparams.tta == tta  # the command's choice, not the checkpoint's
        losses[tta] = cli.trainer.callback_metrics["val/loss"].item()
        config = yaml.safe_load((tmp_path / cli.trainer.log_dir / "config.yaml").read_text())
        assert config["model"]["init_args"]["tta"] == tta  # the run's config records it
    assert losses["flip"] != pytest.approx(losses["none"], abs=1e-6)


def test_attacks_see_the_averaged_model():
    """PGD from the same start follows the gradient of whatever the module returns: with TTA
    that is the mean over image and mirror, so the perturbation differs from the plain model's
    and the attack's logits are the averaged model's."""
    from lit_vision.attacks.pgd import PGDAttack

    images, labels = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    attack = PGDAttack(epsilon=8 / 255, step_size=2 / 255, num_steps=3, target="true_label")
    plain, tta = attack.attack(tiny_model("none"), images, labels), attack.attack(tiny_model("flip"), images, labels)
    assert (plain.images - tta.images).abs().max() > 1 / 255
    with torch.no_grad():
        torch.testing.assert_close(tta.logits, tiny_model("flip")(tta.images), rtol=0, atol=1e-5)
