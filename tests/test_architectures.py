"""One suite for every architecture: an architecture is tested by being exported from
`lit_vision.models` (its `__all__`), nothing else to add. Small inputs (64×64, 10
classes) keep the suite in seconds on a 2-core CPU."""

from __future__ import annotations

import importlib.util
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
HAVE_CUSTOM_CONV = importlib.util.find_spec("lit_vision.ops.conv") is not None

NUM_CLASSES, SIZE = 10, 64


def build(name: str, **kwargs) -> ImageClassifier:
    torch.manual_seed(0)
    return getattr(models, name)(num_classes=NUM_CLASSES, **{**TEST_KWARGS.get(name, {}), **kwargs})


def test_registry_lists_the_issue_architectures():
    assert {"SimpleNet", "CustomNet1", "CustomNet2", "ResNet18", "ViT"} <= set(ARCHITECTURES)


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


@pytest.mark.skipif(not HAVE_CUSTOM_CONV, reason="lit_vision.ops.conv (CustomConv2d) not there yet")
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
