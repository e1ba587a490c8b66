"""AdversarialTraining(objective="trades"): the KL-maximising attack, the [clean ‖ adversarial]
batch and the loss the model trains on (tiny model, CPU)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.attacks.trades import TradesLoss, kl_attack
from lit_vision.errors import LitVisionError
from test_adversarial_callbacks import BATCH, NUM_CLASSES, TinyClassifier, loader, trainer

EPS = 8 / 255


class LossRecorder(TinyClassifier):
    """Records, per training step, the batch, the objective it was given and the loss returned."""

    def training_step(self, batch, batch_idx: int):
        loss = super().training_step(batch, batch_idx)
        with torch.no_grad():
            logits = self(batch[0])  # no BatchNorm or dropout: the same logits as the step's
        self.steps.append((batch[1].clone(), logits, self.training_objective, loss.detach()))
        return loss


class ObjectiveSpy(TinyClassifier):
    """Records every assignment to an attribute that holds the model's loss objective, with the
    number of training batches begun when it happened."""

    def __setattr__(self, name, value):
        if "objective" in name and hasattr(self, "assignments"):
            self.assignments.append((name, value, len(self.seen)))
        super().__setattr__(name, value)


def kl(clean_logits, adversarial_logits) -> torch.Tensor:
    return F.kl_div(F.log_softmax(adversarial_logits, 1), F.softmax(clean_logits, 1), reduction="batchmean")


def test_trades_trains_on_ce_of_clean_plus_beta_kl_of_each_pair(tmp_path):
    torch.manual_seed(0)
    model = LossRecorder()
    model.steps = []
    # A large ε and β: the untrained tiny model's KL term must weigh visibly in the loss.
    callback = AdversarialTraining(fraction=1.0, epsilon=(0.25, 0.25), steps=(2, 2), step_scale=2.5, random_start=True,
                                   objective="trades", trades_beta=50.0)  # fmt: skip
    trainer(tmp_path, [callback], limit_train_batches=2).fit(model, train_dataloaders=loader(2))

    assert len(model.steps) == 2
    for labels, logits, objective, loss in model.steps:
        assert logits.shape[0] == 2 * BATCH and torch.equal(labels[:BATCH], labels[BATCH:])  # [clean ‖ copy of each]
        assert objective == callback.trades_objective
        expected = F.cross_entropy(logits[:BATCH], labels[:BATCH]) + 50.0 * kl(logits[:BATCH], logits[BATCH:])
        assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
        assert loss.item() != pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-2), "not the mix objective"
    # The objective belongs to the fit: nothing is left set on the model afterwards.
    assert model.training_objective is None


def test_the_objective_is_handed_to_the_model_once_per_fit_not_per_batch(tmp_path):
    torch.manual_seed(0)
    model = ObjectiveSpy()
    model.assignments = []
    # fraction 0.5 over 4 batches: perturbed and clean batches both occur.
    callback = AdversarialTraining(fraction=0.5, epsilon=(EPS, EPS), steps=(1, 1), objective="trades", seed=1)
    assert {callback.plan(0, i) is None for i in range(4)} == {True, False}
    trainer(tmp_path, [callback], limit_train_batches=4).fit(model, train_dataloaders=loader(4))
    assert len(model.seen) == 4
    # Installed once before the first batch, cleared once after the last: never touched in between.
    assert [batches for _, _, batches in model.assignments] == [0, 4]
    assert {name for name, _, _ in model.assignments} == {"training_objective"}
    assert model.assignments[0][1] == callback.trades_objective and model.assignments[1][1] is None


def test_a_failed_fit_leaves_no_objective_on_the_model(tmp_path):
    class Failing(TinyClassifier):
        def training_step(self, batch, batch_idx):
            raise ValueError("boom")

    model = Failing()
    callback = AdversarialTraining(fraction=1.0, epsilon=(EPS, EPS), steps=(1, 1), objective="trades")
    with pytest.raises(ValueError, match="boom"):
        trainer(tmp_path, [callback], limit_train_batches=1).fit(model, train_dataloaders=loader(1))
    assert model.training_objective is None


def test_trades_clean_batches_train_on_the_models_cross_entropy():
    callback = AdversarialTraining(objective="trades", trades_beta=6.0)
    torch.manual_seed(0)
    logits, labels = torch.randn(2 * BATCH, NUM_CLASSES), torch.randint(0, NUM_CLASSES, (2 * BATCH,))
    clean = callback.trades_objective(logits, labels, 0.1)
    assert clean.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item())
    callback._trades_pairs = BATCH  # as on_train_batch_start records a rebuilt batch
    assert callback.trades_objective(logits, labels, 0.1).item() == pytest.approx(
        TradesLoss(6.0, pairs=BATCH)(logits, labels, 0.1).item()
    )


class LossInputs(TinyClassifier):
    """Records what `training_loss` receives and returns, and the loss each step returns
    (compile: step takes its optimiser step inside training_step: logits cannot be recomputed)."""

    def training_loss(self, logits, labels):
        loss = super().training_loss(logits, labels)
        self.losses.append((logits.detach().clone(), labels.clone(), loss.detach()))
        return loss

    def training_step(self, batch, batch_idx: int):
        loss = super().training_step(batch, batch_idx)
        self.returned.append(loss.detach())
        return loss


@pytest.mark.slow
def test_trades_under_compile_step_trains_on_the_trades_loss(tmp_path):
    torch.manual_seed(0)
    model = LossInputs(compile="step")
    model.losses, model.returned = [], []
    callback = AdversarialTraining(fraction=1.0, epsilon=(0.25, 0.25), steps=(2, 2), step_scale=2.5, random_start=True,
                                   objective="trades", trades_beta=50.0)  # fmt: skip
    trainer(tmp_path, [callback], limit_train_batches=2).fit(model, train_dataloaders=loader(2))
    assert not model.automatic_optimization and "_compiled_loss" in model.__dict__
    assert len(model.losses) == len(model.returned) == 2  # the loss ran eagerly, through training_loss
    for (logits, labels, loss), returned in zip(model.losses, model.returned):
        expected = F.cross_entropy(logits[:BATCH], labels[:BATCH]) + 50.0 * kl(logits[:BATCH], logits[BATCH:])
        assert loss.item() == pytest.approx(expected.item(), rel=1e-4) and returned.item() == pytest.approx(loss.item())
    assert model.training_objective is None


def test_mix_objective_leaves_the_models_loss_alone(tmp_path):
    torch.manual_seed(0)
    model = LossRecorder()
    model.steps = []
    callback = AdversarialTraining(fraction=1.0, epsilon=(EPS, EPS), steps=(1, 1), target="true_label")
    trainer(tmp_path, [callback], limit_train_batches=1).fit(model, train_dataloaders=loader(1))
    ((labels, logits, objective, loss),) = model.steps
    assert objective is None and loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-4)


def test_kl_attack_raises_the_kl_within_the_ball():
    torch.manual_seed(0)
    model = TinyClassifier().eval()
    images, _ = next(iter(loader(1)))
    with torch.no_grad():
        clean = model(images)
    start = kl_attack(model, images, EPS, EPS / 4, num_steps=0, random_start=True, generator=torch.Generator().manual_seed(1))
    result = kl_attack(model, images, EPS, EPS / 4, num_steps=10, random_start=True, generator=torch.Generator().manual_seed(1))
    unit = images.float() / 255
    assert (result.images - unit).abs().max() <= EPS + 1e-5 and 0 <= result.images.min() and result.images.max() <= 1
    assert kl(clean, result.logits) > 3 * kl(clean, start.logits)
    assert torch.equal(result.target, clean.argmax(1))
    # Without a random start the attack still moves: KL's gradient is zero at the image itself.
    still = kl_attack(model, images, EPS, EPS / 4, num_steps=10, random_start=False, generator=torch.Generator().manual_seed(1))
    assert kl(clean, still.logits) > kl(clean, start.logits)


@pytest.mark.parametrize(
    "kwargs, culprit",
    [
        ({"objective": "kl"}, "objective"),
        ({"objective": "trades", "trades_beta": 0.0}, "trades_beta"),
        ({"objective": "trades", "adversarial_weight": 0.75}, "adversarial_weight"),
    ],
)
def test_trades_arguments_are_checked(kwargs, culprit):
    with pytest.raises(LitVisionError, match=culprit):
        AdversarialTraining(**kwargs)


class PlainModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 4))

    def forward(self, x):
        return self.net(x.float() / 255 if x.dtype == torch.uint8 else x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trades_refuses_a_model_that_cannot_take_its_loss(tmp_path):
    callback = AdversarialTraining(fraction=1.0, steps=(1, 1), objective="trades")
    with pytest.raises(LitVisionError, match="training_objective.*PlainModule"):
        trainer(tmp_path, [callback], limit_train_batches=1).fit(PlainModule(), train_dataloaders=loader(1))
