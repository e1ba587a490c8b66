"""Adversarial weight perturbation: the step's gradient is the one at w + gamma·‖w‖·g/‖g‖ per
weight tensor, the optimiser steps from w exactly, BatchNorm statistics are untouched by the
probe, and misuse (order, compiled step, bad gamma) is one clear error. Also through the CLI."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F

from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.callbacks.weight_perturbation import AdversarialWeightPerturbation, kept_norm_statistics
from lit_vision.errors import LitVisionError
from test_adversarial_callbacks import TinyClassifier, loader, trainer


class AtTheStep(Callback):
    """Records the weights and gradients the optimiser is about to step with."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.weights.append({n: p.detach().clone() for n, p in pl_module.named_parameters()})
        self.grads.append({n: p.grad.detach().clone() for n, p in pl_module.named_parameters()})


def expected_gradients(model: TinyClassifier, images: torch.Tensor, labels: torch.Tensor, gamma: float) -> dict:
    """The AWP gradient computed by hand on a copy: ascend each weight tensor, take the loss's gradient there."""
    probe = TinyClassifier()
    probe.load_state_dict(model.state_dict())
    probe.train()
    loss = F.cross_entropy(probe(images), labels)
    weights = {n: p for n, p in probe.named_parameters() if p.ndim > 1}
    grads = torch.autograd.grad(loss, list(weights.values()))
    with torch.no_grad():
        for p, g in zip(weights.values(), grads):
            p.add_(gamma * p.norm() * g / g.norm())
    probe.zero_grad()
    F.cross_entropy(probe(images), labels).backward()
    return {n: p.grad.detach().clone() for n, p in probe.named_parameters()}


def test_the_step_uses_the_gradient_at_perturbed_weights_and_steps_from_the_true_ones(tmp_path):
    torch.manual_seed(0)
    model, gamma = TinyClassifier(), 0.05
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = loader(1)
    images, labels = next(iter(data))
    expected = expected_gradients(model, images, labels, gamma)
    plain = expected_gradients(model, images, labels, 1e-12)  # ~ the unperturbed gradient
    seen = AtTheStep()
    awp = AdversarialWeightPerturbation(gamma=gamma)
    trainer(tmp_path, [awp, seen], max_steps=1).fit(model, data)
    assert awp.batches_perturbed == 1
    for name, value in start.items():
        assert torch.equal(seen.weights[0][name], value), f"{name}: the optimiser must step from the true weights"
        torch.testing.assert_close(seen.grads[0][name], expected[name], rtol=1e-4, atol=1e-6)
    # And the perturbation mattered: the gradient is not the one at the true weights.
    assert any(not torch.allclose(seen.grads[0][n], plain[n], rtol=1e-3, atol=1e-5) for n in start)


def test_it_probes_the_batch_adversarial_training_rebuilt(tmp_path):
    model = TinyClassifier()
    awp = AdversarialWeightPerturbation(gamma=0.01)
    attack = AdversarialTraining(fraction=1.0, epsilon=(0.03, 0.03), steps=(1, 1), target="true_label")
    probed: list[int] = []
    original = awp.on_train_batch_start

    def spy(trainer, pl_module, batch, batch_idx):
        probed.append(batch[1].shape[0])
        original(trainer, pl_module, batch, batch_idx)

    awp.on_train_batch_start = spy
    trainer(tmp_path, [attack, awp], max_steps=2).fit(model, loader(2))
    assert probed == [16, 16]  # [clean ‖ adversarial]: twice the batch of 8


def test_batchnorm_statistics_survive_the_probe():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2)).train()
    model(torch.rand(2, 3, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with kept_norm_statistics(model):
        model(torch.rand(4, 3, 8, 8) * 5)
        assert not torch.equal(model[1].running_mean, before["1.running_mean"])  # the forward did move them
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_listed_before_adversarial_training_is_an_error(tmp_path):
    attack = AdversarialTraining(fraction=1.0, epsilon=(0.03, 0.03), steps=(1, 1))
    with pytest.raises(LitVisionError, match="List AdversarialTraining first"):
        trainer(tmp_path, [AdversarialWeightPerturbation(), attack], max_steps=1).fit(TinyClassifier(), loader(1))


def test_a_compiled_step_is_refused(tmp_path):
    model = TinyClassifier()
    model.automatic_optimization = False  # what compile: step sets
    with pytest.raises(LitVisionError, match="automatic optimisation"):
        trainer(tmp_path, [AdversarialWeightPerturbation()], max_steps=1).fit(model, loader(1))


@pytest.mark.parametrize("kwargs", [{"gamma": 0.0}, {"gamma": -1e-3}, {"start_epoch": -1}, {"start_epoch": 1.5}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(LitVisionError, match="AdversarialWeightPerturbation"):
        AdversarialWeightPerturbation(**kwargs)


def test_start_epoch_leaves_earlier_epochs_unperturbed(tmp_path):
    awp = AdversarialWeightPerturbation(start_epoch=1)
    trainer(tmp_path, [awp], max_epochs=1).fit(TinyClassifier(), loader(2))
    assert awp.batches_perturbed == 0


@pytest.mark.slow
def test_fit_through_the_cli_with_adversarial_training_and_awp(tiny_config, run_cli, tmp_path):
    code = run_cli(
        "fit", "--config", tiny_config, "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.callbacks+=AdversarialTraining", "--trainer.callbacks.init_args.fraction", "1.0",
        "--trainer.callbacks+=AdversarialWeightPerturbation", "--trainer.callbacks.init_args.gamma", "0.01",
    )  # fmt: skip
    assert code == 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "tiny" / "version_0" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
