"""One suite for every architecture: an architecture is tested by being registered
(`@register_model`, listed by `list_models()`), nothing else to add. Small inputs (64×64,
10 classes) keep the suite in seconds on a 2-core CPU."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lit_vision.errors import LitVisionError
from lit_vision.models import ImageClassifier, create_model, list_models
from lit_vision.models.registry import model_class

ARCHITECTURES = list_models()


def takes_conv(name: str) -> bool:
    """Whether the architecture lets `conv` choose its convolution (its network says so by
    accepting the argument)."""
    try:
        create_model(name, num_classes=2, conv="torch")
    except TypeError:
        return False
    return True


CONV_ARCHITECTURES = [n for n in ARCHITECTURES if takes_conv(n)]

NUM_CLASSES, SIZE = 10, 64


def build(name: str, **kwargs) -> ImageClassifier:
    torch.manual_seed(0)
    return create_model(name, num_classes=NUM_CLASSES, **kwargs)


def test_registry_lists_the_product_architectures():
    assert ARCHITECTURES[:5] == ["SimpleNet", "CustomNet1", "CustomNet2", "ResNet18", "ViT"]
    assert all(issubclass(model_class(n), ImageClassifier) for n in ARCHITECTURES)


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(LitVisionError, match="Unknown model 'ResNet50'.*SimpleNet, CustomNet1"):
        create_model("ResNet50")


def test_the_shared_base_has_no_network():
    with pytest.raises(LitVisionError, match="ImageClassifier is the shared base.*--model NAME"):
        ImageClassifier()


# Parameter counts for 100 classes at each architecture's defaults (README's table).
PARAMETERS_100_CLASSES = {
    "SimpleNet": 365_028,
    "CustomNet1": 366_244,
    "CustomNet2": 8_088_996,
    "ResNet18": 11_227_812,
    "ViT": 1_959_076,
    "PreActResNet18": 11_218_340,
}


@pytest.mark.parametrize("name", sorted(PARAMETERS_100_CLASSES))
def test_parameter_counts_match_the_readme(name):
    model = create_model(name, num_classes=100)
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


# The two large nets take seconds each on 2 cores; the small ones keep the check in the quick suite.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("CustomNet2", "ResNet18", "PreActResNet18") else n for n in ARCHITECTURES])
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
def test_hand_written_conv_matches_torch_conv(name):
    """conv='hand_written' builds the same parameters; with the same weights the logits agree."""
    ref = build(name, conv="torch").eval()
    custom = build(name, conv="hand_written").eval()
    custom.load_state_dict(ref.state_dict())
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(custom(images), ref(images), rtol=1e-4, atol=1e-4)
    custom.train()
    F.cross_entropy(custom(images), torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in custom.parameters())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_weight_decay_spares_biases_norms_and_named_parameters(name):
    """Every trainable parameter lands in exactly one group; the decayed group holds only
    matrices and kernels, and nothing the network's `no_weight_decay()` names."""
    model = build(name, weight_decay=0.05)
    groups = model.parameter_groups()
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.net.parameters())
    skip = getattr(model.net, "no_weight_decay", lambda: set())()
    names = {id(p): n for n, p in model.net.named_parameters()}
    for group in groups:
        decayed = group["weight_decay"] > 0
        assert group["weight_decay"] in (0.0, 0.05)
        for p in group["params"]:
            assert decayed == (p.ndim > 1 and names[id(p)] not in skip), names[id(p)]


def test_vit_position_embedding_is_not_decayed():
    model = build("ViT", weight_decay=0.05)
    (decayed,) = [g for g in model.parameter_groups() if g["weight_decay"] > 0]
    assert all(p is not model.net.pos_embed for p in decayed["params"])
    assert model.net.pos_embed.ndim > 1  # it would be decayed without the hook


# ------------------------------------------------------------------ CLI
@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_one_step_fit_through_the_cli(name, tiny_config, run_cli, tmp_path):
    """`lit-vision fit --model NAME` trains one step on the tiny stand-in and saves a
    checkpoint whose hyperparameters rebuild the same architecture."""
    assert run_cli("fit", "--config", tiny_config, "--model", name, "--trainer.max_steps", "1") == 0
    (checkpoint,) = (tmp_path / "checkpoints").rglob("last.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["_class_path"] == f"lit_vision.models.{name}"
    assert saved["global_step"] == 1
    rebuilt = model_class(name).load_from_checkpoint(checkpoint, map_location="cpu")
    assert rebuilt(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 4)
