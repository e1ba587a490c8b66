"""One suite for every architecture: an architecture is tested by being exported from
`lit_vision.models` (its `__all__`), nothing else to add. Small inputs (64×64, 10
classes) keep the suite in seconds on a 2-core CPU."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch.nn import functional as F

import lit_vision.models as models
from lit_vision.models.classifier import ImageClassifier

ARCHITECTURES = sorted(
    name
    for name in models.__all__
    if inspect.isclass(getattr(models, name))
    and issubclass(getattr(models, name), ImageClassifier)
    and getattr(models, name) is not ImageClassifier
)
# Constructor arguments an architecture needs in a test (no network, no files).
TEST_KWARGS: dict[str, dict] = {"ResNet18": {"weights": "none"}}
CONV_ARCHITECTURES = [n for n in ARCHITECTURES if "conv" in inspect.signature(getattr(models, n)).parameters]

NUM_CLASSES, SIZE = 10, 64


def build(name: str, **kwargs) -> ImageClassifier:
    torch.manual_seed(0)
    return getattr(models, name)(num_classes=NUM_CLASSES, **{**TEST_KWARGS.get(name, {}), **kwargs})


def test_registry_lists_the_issue_architectures():
    assert {"SimpleNet", "CustomNet1", "CustomNet2", "ResNet18", "ViT"} <= set(ARCHITECTURES)


# Parameter counts for 100 classes at each architecture's defaults (README's table).
PARAMETERS_100_CLASSES = {
    "SimpleNet": 365_028,
    "CustomNet1": 366_244,
    "CustomNet2": 8_088_996,
    "ResNet18": 11_227_812,
    "ViT": 1_959_076,
}


@pytest.mark.parametrize("name", sorted(PARAMETERS_100_CLASSES))
def test_parameter_counts_match_the_readme(name):
    model = getattr(models, name)(num_classes=100, **TEST_KWARGS.get(name, {}))
    assert sum(p.numel() for p in model.net.parameters()) == PARAMETERS_100_CLASSES[name]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_output_shape_and_pixel_inputs(name):
    model = build(name).eval()
    images = torch.randint(0, 256, (3, 3, SIZE, SIZE), dtype=torch.uint8)
    with torch.no_grad():
        logits_u8 = model(images)
        logits_f = model(images.float() / 255)
    assert logits_u8.shape == (3, NUM_CLASSES)
    assert torch.isfinite(logits_u8).all()
    torch.testing.assert_close(logits_u8, logits_f)  # uint8 and [0, 1] float mean the same pixels


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_overfits_one_batch(name):
    """A few Adam steps on one fixed batch must drive its loss well down. Each image gets
    its own tint over noise, so even SimpleNet (no BatchNorm, slow to start) shows progress
    in 12 steps; the BatchNorm nets and the ViT reach ~0 loss."""
    model = build(name).train()
    generator = torch.Generator().manual_seed(1)
    tints = torch.rand(8, 3, 1, 1, generator=generator)
    images = 0.5 * tints + 0.5 * torch.rand(8, 3, 32, 32, generator=generator)  # 32 px: fast
    labels = torch.arange(8) % NUM_CLASSES
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_hyperparameters_rebuild_the_model(name):
    """A checkpoint alone rebuilds its model: saved hyperparameters are plain values that
    recreate the same architecture and accept the same state dict."""
    model = build(name)
    allowed = (int, float, str, bool, type(None), list, tuple)
    assert all(isinstance(v, allowed) for v in model.hparams.values()), dict(model.hparams)
    clone = type(model)(**dict(model.hparams))
    clone.load_state_dict(model.state_dict())


@pytest.mark.parametrize("name", CONV_ARCHITECTURES)
def test_custom_conv_matches_torch_conv(name):
    """conv='custom' builds the same parameters; with the same weights the logits agree."""
    ref = build(name, conv="torch").eval()
    custom = build(name, conv="custom").eval()
    custom.load_state_dict(ref.state_dict())
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(custom(images), ref(images), rtol=1e-4, atol=1e-4)
    custom.train()
    F.cross_entropy(custom(images), torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in custom.parameters())


# ------------------------------------------------------------------ CLI
CONFIGS = ["customnet1", "customnet2", "resnet18_finetune", "vit"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize("config", CONFIGS)
def test_config_fits_and_checkpoint_validates_through_the_cli(config, tmp_path, monkeypatch):
    """`lit-vision fit --config configs/X.yaml` on a tiny stand-in (one epoch), then
    `lit-vision validate --ckpt_path last.ckpt` reproduces the epoch's validation metrics."""
    import os

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_vision.cli import main

    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    monkeypatch.chdir(tmp_path)
    tiny = [
        "--config", f"{configs}/{config}.yaml", "--experiment", "run",
        "--data.download", "false", "--data.standin", "true", "--data.data_dir", str(tmp_path / "standin"),
        "--data.num_classes", "4", "--model.init_args.num_classes", "4",
        "--data.standin_train_per_class", "6", "--data.standin_val_per_class", "4", "--data.standin_test_images", "2",
        "--data.batch_size", "8", "--data.num_workers", "0", "--data.pin_memory", "false",
        "--data.resize_size", "36", "--data.crop_size", "32",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    if config == "resnet18_finetune":
        # The local-file path through the CLI, with a random torchvision resnet18 as the "ImageNet" file.
        from torchvision.models import resnet18

        torch.save(resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
        tiny += ["--model.init_args.weights", str(tmp_path / "resnet18.pth")]
    main(["fit", *tiny, "--trainer.max_epochs", "2" if config == "resnet18_finetune" else "1"])
    checkpoint = tmp_path / "checkpoints" / "run" / "last.ckpt"
    assert checkpoint.exists()
    fitted = torch.load(checkpoint, map_location="cpu", weights_only=True)

    validate_args = [*tiny, "--ckpt_path", str(checkpoint)]
    if config == "resnet18_finetune":
        validate_args += ["--model.init_args.weights", "none"]  # the checkpoint holds every weight
    main(["validate", *validate_args])
    fit_run, validate_run = sorted((tmp_path / "logs" / "run").iterdir())  # version_0, version_1

    def scalars(run, tag):
        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        return [event.value for event in events.Scalars(tag)]

    # last.ckpt is written after every epoch's validation (and at the end of training), so it
    # holds the last epoch's weights; the fit logged one validation per epoch.
    epoch = fitted["epoch"]
    assert epoch == len(scalars(fit_run, "val/top1")) - 1
    fit_top1 = scalars(fit_run, "val/top1")[epoch]
    assert scalars(validate_run, "val/top1") == [pytest.approx(fit_top1, abs=1e-6)]
    # The loss pins the weights down far more finely than accuracy on a few images.
    (validated_loss,) = scalars(validate_run, "val/loss")
    assert validated_loss == pytest.approx(scalars(fit_run, "val/loss")[epoch], rel=1e-5)
