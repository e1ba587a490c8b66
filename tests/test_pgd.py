"""PGDAttack: the ε-ball and [0, 1] hold (and a batch outside them is refused), no-op settings are
refused, restarts keep each image's successful run, the attack works on a trained model, and it
leaves the model as it found it (parameters' gradients, train/eval flags, BatchNorm statistics),
also under inference mode and bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.attacks import (
    ASSIGNMENT_PGD_EPSILON,
    ASSIGNMENT_PGD_STEP_SIZE,
    ASSIGNMENT_PGD_STEPS,
    PGDAttack,
    check_within_budget,
    step_size_for,
)
from lit_vision.errors import LitVisionError

NUM_CLASSES = 10
SIZE = 16


def tiny_net(batchnorm: bool = False) -> nn.Module:
    layers = [nn.Conv2d(3, 16, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(16))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * 16, NUM_CLASSES)]
    return nn.Sequential(*layers)


def synthetic(n: int, generator: torch.Generator, prototypes: torch.Tensor):
    """Separable classes: a fixed random image per class plus a little noise, in [0, 1]."""
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    noise = 0.08 * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    return (prototypes[labels] + noise).clamp(0, 1), labels


@pytest.fixture(scope="module")
def trained():
    """A tiny CNN trained for ~1 s to near-perfect accuracy on separable synthetic data."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    prototypes = 0.3 + 0.4 * torch.rand(NUM_CLASSES, 3, SIZE, SIZE, generator=g)
    net = tiny_net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        x, y = synthetic(64, g, prototypes)
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    net.eval()
    x, y = synthetic(256, g, prototypes)
    return net, x, y


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


def test_defaults_are_the_assignments_strength_in_pixel_units():
    attack = PGDAttack()
    assert attack.num_steps == ASSIGNMENT_PGD_STEPS == 10
    assert 5.5 / 255 < attack.epsilon == ASSIGNMENT_PGD_EPSILON < 6 / 255
    assert ASSIGNMENT_PGD_STEP_SIZE == pytest.approx(step_size_for(ASSIGNMENT_PGD_EPSILON, 10, 1.0))
    assert step_size_for(8 / 255, 1, 1.25) == pytest.approx(10 / 255)  # fast FGSM's 1.25 ε
    assert attack.target == "least_likely" and not attack.random_start


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epsilon": -0.1}, "epsilon"),
        ({"epsilon": 0.0}, "epsilon must be > 0"),
        ({"step_size": 0.0}, "step_size must be > 0"),
        ({"restarts": 0}, "restarts"),
        ({"restarts": 3}, "random_start"),
        ({"epsilon": float("nan")}, "epsilon"),
        ({"epsilon": 8.0}, "pixel units"),
        ({"step_size": -1e-3}, "step_size"),
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"target": "most_likely"}, "target"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, match):
    with pytest.raises(LitVisionError, match=match):
        PGDAttack(**kwargs)


def test_true_label_needs_labels(trained):
    net, x, _ = trained
    with pytest.raises(LitVisionError, match="labels"):
        PGDAttack(target="true_label").perturb(net, x[:4])


@pytest.mark.parametrize("target", ["least_likely", "true_label"])
@pytest.mark.parametrize("random_start", [False, True])
def test_within_epsilon_and_unit_range(trained, target, random_start):
    net, x, y = trained
    # Include saturated pixels so that the [0, 1] clamp matters.
    x = x[:32].clone()
    x[:, :, :2] = 0.0
    x[:, :, -2:] = 1.0
    eps = 8 / 255
    adv = PGDAttack(eps, 2 / 255, 5, target=target, random_start=random_start).perturb(net, x, y[:32])
    assert adv.shape == x.shape and adv.dtype == torch.float32
    assert (adv - x).abs().max().item() <= eps + 1e-6
    assert adv.min().item() >= 0 and adv.max().item() <= 1
    assert not adv.requires_grad and adv.grad_fn is None
    assert (adv != x).any()


def test_uint8_input_is_converted_to_unit_range(trained):
    net, x, y = trained
    images = (x[:8] * 255).round().to(torch.uint8)
    adv = PGDAttack(4 / 255, 1 / 255, 3).perturb(net, images)
    assert adv.is_floating_point()
    assert (adv - images.float() / 255).abs().max().item() <= 4 / 255 + 1e-6


def test_a_batch_outside_its_budget_is_refused():
    clean = torch.full((2, 3, 4, 4), 0.5)
    check_within_budget(clean + 4 / 255, clean, 4 / 255)
    with pytest.raises(RuntimeError, match="L∞ distance"):
        check_within_budget(clean + 5 / 255, clean, 4 / 255)
    with pytest.raises(RuntimeError, match="pixel range"):
        check_within_budget(torch.full_like(clean, 1.01), torch.ones_like(clean), 4 / 255)


def test_restarts_are_never_weaker_and_keep_successful_runs(trained):
    net, x, y = trained
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    attack = dict(epsilon=0.04, step_size=0.01, num_steps=2, target="true_label", random_start=True)
    once = PGDAttack(**attack).attack(net, x, y, generator=g())
    five = PGDAttack(**attack, restarts=5).attack(net, x, y, generator=g())
    fooled_once = once.logits.argmax(1) != y
    fooled_five = five.logits.argmax(1) != y
    assert (fooled_five | ~fooled_once).all(), "an image fooled by the first run stays fooled"
    assert fooled_five.sum() > fooled_once.sum(), "more starts fool more images on this model"
    assert torch.equal(five.images[fooled_once], once.images[fooled_once])
    with torch.no_grad():
        assert torch.equal(net(five.images).argmax(1), five.logits.argmax(1))
    assert (five.images - x).abs().max().item() <= 0.04 + 1e-6


def test_least_likely_attack_moves_predictions_to_the_target(trained):
    net, x, y = trained
    clean_acc = accuracy(net, x, y)
    assert clean_acc > 0.9, "the fixture's model should have learnt the synthetic classes"
    with torch.no_grad():
        target = net(x).argmin(1)
    result = PGDAttack(0.1, 0.02, 10, target="least_likely").attack(net, x)
    assert torch.equal(result.target, target)  # chosen once, on the clean image
    with torch.no_grad():
        clean_share = (net(x).argmax(1) == target).float().mean().item()
        adv_pred = net(result.images).argmax(1)
    adv_share = (adv_pred == target).float().mean().item()
    assert adv_share > clean_share + 0.2
    assert (adv_pred == y).float().mean().item() < clean_acc
    assert torch.equal(result.logits.argmax(1), adv_pred)


def test_true_label_attack_lowers_accuracy(trained):
    net, x, y = trained
    adv = PGDAttack(0.1, 0.02, 10, target="true_label").perturb(net, x, y)
    assert accuracy(net, adv, y) < accuracy(net, x, y) - 0.2


def test_parameter_gradients_untouched(trained):
    net, x, y = trained
    params = list(net.parameters())
    for p in params:
        p.grad = None
    params[0].grad = torch.full_like(params[0], 0.5)  # one with a gradient, the rest None
    PGDAttack(8 / 255, 2 / 255, 3, target="true_label").perturb(net, x[:16], y[:16])
    assert torch.equal(params[0].grad, torch.full_like(params[0], 0.5))
    assert all(p.grad is None for p in params[1:])
    params[0].grad = None


def test_modes_and_batchnorm_statistics_restored():
    net = tiny_net(batchnorm=True)
    net.train()
    frozen_bn = net[1]
    frozen_bn.eval()  # deliberately frozen inside a train-mode model
    seen_modes = []
    net[0].register_forward_hook(lambda module, args, out: seen_modes.append(module.training))
    before = {name: m.training for name, m in net.named_modules()}
    stats = [t.clone() for t in (frozen_bn.running_mean, frozen_bn.running_var, frozen_bn.num_batches_tracked)]
    x = torch.rand(8, 3, SIZE, SIZE)
    PGDAttack(8 / 255, 2 / 255, 3).perturb(net, x)
    assert {name: m.training for name, m in net.named_modules()} == before
    assert net.training and not frozen_bn.training
    assert seen_modes and not any(seen_modes), "the attack must run the model in eval mode"
    after = (frozen_bn.running_mean, frozen_bn.running_var, frozen_bn.num_batches_tracked)
    assert all(torch.equal(a, b) for a, b in zip(stats, after))


def test_modes_restored_when_the_model_raises():
    net = tiny_net()
    net.train()
    with pytest.raises(RuntimeError):
        PGDAttack().perturb(net, torch.rand(2, 4, SIZE, SIZE))  # wrong channel count
    assert all(m.training for m in net.modules())


def test_works_under_inference_mode(trained):
    net, x, y = trained
    expected = PGDAttack(0.05, 0.01, 4, target="true_label").perturb(net, x[:16], y[:16])
    with torch.inference_mode():
        images, labels = x[:16].clone(), y[:16].clone()  # inference tensors, as in Lightning's test loop
        adv = PGDAttack(0.05, 0.01, 4, target="true_label").perturb(net, images, labels)
    assert torch.allclose(adv, expected)
    with torch.no_grad():
        assert torch.allclose(PGDAttack(0.05, 0.01, 4).perturb(net, x[:16]), PGDAttack(0.05, 0.01, 4).perturb(net, x[:16]))


def test_works_under_bf16_autocast(trained):
    net, x, y = trained
    with torch.autocast("cpu", dtype=torch.bfloat16):
        adv = PGDAttack(0.1, 0.02, 10, target="true_label").perturb(net, x, y)
    assert adv.dtype == torch.float32
    assert (adv - x).abs().max().item() <= 0.1 + 1e-6
    assert accuracy(net, adv, y) < accuracy(net, x, y)
