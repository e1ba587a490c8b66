"""AdversarialTraining, AdversarialValidation and AdversarialEvaluation inside a real Trainer
(tiny model, CPU), and the documented CLI commands end to end (slow)."""

from __future__ import annotations

import csv
import json
import os

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_vision.callbacks.adversarial_eval import (
    HEADLINE,
    PICTURE_NAME,
    TABLE_NAME,
    AdversarialEvaluation,
)
from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.callbacks.adversarial_validation import AdversarialValidation, CollapseRule, Reading
from lit_vision.errors import LitVisionError
from lit_vision.models.classifier import ImageClassifier
from lit_vision.utils.intervals import wilson_interval

NUM_CLASSES = 4
SIZE = 12
BATCH = 8


class TinyClassifier(ImageClassifier):
    """The project's classifier system around a very small CNN; records what training_step sees."""

    def __init__(self, num_classes: int = NUM_CLASSES, **kwargs) -> None:
        super().__init__(num_classes=num_classes, optimizer="adamw", lr=1e-2, warmup_epochs=0, **kwargs)
        self.seen: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []

    def build_net(self, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes)
        )

    def training_step(self, batch, batch_idx: int):
        self.seen.append((self.current_epoch, batch_idx, batch[0].detach().clone(), batch[1].clone()))
        return super().training_step(batch, batch_idx)


def loader(num_batches: int, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    n = num_batches * BATCH
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    # Classes differ in brightness, plus uint8 noise: learnable in a few steps.
    base = (40 + 50 * labels).view(-1, 1, 1, 1).float()
    images = (base + 30 * torch.rand(n, 3, SIZE, SIZE, generator=g)).clamp(0, 255).to(torch.uint8)
    return DataLoader(TensorDataset(images, labels), batch_size=BATCH)  # batches are lists


def trainer(tmp_path, callbacks, **kwargs) -> L.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    options.update(kwargs)
    return L.Trainer(**options)


# --------------------------------------------------------------- training
def test_selection_is_reproducible_and_about_the_fraction():
    a, b = AdversarialTraining(fraction=0.2, seed=3), AdversarialTraining(fraction=0.2, seed=3)
    other = AdversarialTraining(fraction=0.2, seed=4)
    keys = [(epoch, i) for epoch in range(5) for i in range(400)]

    def picks(cb):
        return [cb.plan(*key) is not None for key in keys]

    assert picks(a) == picks(b)  # a pure function of (seed, epoch, batch): same on every rank
    assert picks(a) != picks(other)
    assert abs(np.mean(picks(a)) - 0.2) < 0.03
    plans = [p for p in (a.plan(*key) for key in keys) if p is not None]
    assert all(a.epsilon[0] <= p.epsilon <= a.epsilon[1] and a.steps[0] <= p.num_steps <= a.steps[1] for p in plans)
    assert {p.num_steps for p in plans} == set(range(a.steps[0], a.steps[1] + 1))  # steps vary per batch
    assert all(p.step_size == pytest.approx(p.epsilon / p.num_steps) for p in plans)  # the assignment's rule
    assert not any(AdversarialTraining(fraction=0.0).plan(*key) for key in keys[:200])
    assert all(AdversarialTraining(fraction=1.0).plan(*key) for key in keys[:200])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fraction": 1.5},
        {"epsilon": (0.03, 0.01)},
        {"epsilon": (0.0, 3.0)},
        {"steps": (0, 5)},
        {"steps": (5, 2)},
        {"step_scale": 0.0},
        {"epsilon": (0.0, 0.0)},
        {"adversarial_weight": 0.0},
        {"adversarial_weight": 1.5},
        {"epsilon_ramp_epochs": -1},
        {"target": "nope"},
        {"measure_every_n_batches": 0},
        {"measure_every_n_batches": 2.5},
    ],
)
def test_training_arguments_are_checked(kwargs):
    with pytest.raises(LitVisionError, match=next(iter(kwargs))):
        AdversarialTraining(**kwargs)


@pytest.mark.parametrize("weight, kept, attacked", [(0.5, BATCH, BATCH), (0.2, BATCH, 2), (0.75, 3, BATCH), (1.0, 0, BATCH)])
def test_adversarial_weight_sets_the_batch_composition(tmp_path, weight, kept, attacked):
    """The knob reaches the training step: a perturbed batch holds `kept` clean images then
    `attacked` adversarial ones, so the mean loss gives the adversarial part `weight`."""
    callback = AdversarialTraining(fraction=1.0, epsilon=(8 / 255, 8 / 255), steps=(1, 1), adversarial_weight=weight)
    assert callback.composition(BATCH) == (kept, attacked)
    model = TinyClassifier()
    trainer(tmp_path, [callback], max_steps=2).fit(model, train_dataloaders=loader(2))
    assert len(model.seen) == 2
    for _, i, images, labels in model.seen:
        assert labels.shape[0] == kept + attacked
        original = loader(2).dataset.tensors[0][i * BATCH : (i + 1) * BATCH].float() / 255
        assert torch.equal(images[:kept], original[:kept])
        assert (images[kept:] - original[:attacked]).abs().max() <= 8 / 255 + 1e-6
        assert (images[kept:] != original[:attacked]).any()
    assert kept / (kept + attacked) == pytest.approx(1 - weight, abs=0.13)


def test_epsilon_ramp_grows_the_radius_over_the_first_epochs(tmp_path):
    callback = AdversarialTraining(fraction=1.0, epsilon=(8 / 255, 8 / 255), steps=(2, 2), epsilon_ramp_epochs=2)
    assert callback.epsilon_scale(0, 0, 10) == pytest.approx(0.05)
    assert callback.epsilon_scale(1, 4, 10) == pytest.approx(0.75) and callback.epsilon_scale(3, 0, 10) == 1.0
    model = TinyClassifier()
    trainer(tmp_path, [callback], max_epochs=3).fit(model, train_dataloaders=loader(4))
    distances = {}
    for epoch, i, images, _ in model.seen:
        distances[(epoch, i)] = (images[BATCH:] - images[:BATCH]).abs().max().item()
    for (epoch, i), distance in distances.items():
        assert distance <= 8 / 255 * callback.epsilon_scale(epoch, i, 4) + 1e-6
    assert distances[(0, 0)] <= 1 / 255 + 1e-6 and distances[(2, 3)] > 7 / 255  # 1/8 of ε at the first batch


def test_callback_doubles_about_a_fifth_of_the_batches(tmp_path):
    torch.manual_seed(0)
    callback = AdversarialTraining(fraction=0.2, epsilon=(4 / 255, 8 / 255), steps=(2, 4), seed=1)
    model = TinyClassifier()
    fit = trainer(tmp_path, [callback], max_epochs=2)
    fit.fit(model, train_dataloaders=loader(30))

    expected = {(e, i) for e in range(2) for i in range(30) if callback.plan(e, i) is not None}
    doubled = {(e, i) for e, i, images, labels in model.seen if labels.shape[0] == 2 * BATCH}
    assert doubled == expected
    assert 6 <= len(expected) <= 20  # 60 batches × 0.2 = 12 expected
    assert callback.batches_perturbed == len(expected) and callback.batches_seen == 60
    assert all(labels.shape[0] in (BATCH, 2 * BATCH) for *_, labels in model.seen)

    for epoch, i, images, labels in model.seen:
        assert images.is_floating_point() == ((epoch, i) in expected)  # uint8 unless perturbed
        if (epoch, i) in expected:
            clean, adv = images[:BATCH], images[BATCH:]
            eps = callback.plan(epoch, i).epsilon
            assert torch.equal(labels[:BATCH], labels[BATCH:])
            assert (adv - clean).abs().max().item() <= eps + 1e-6
            assert 0 <= adv.min().item() and adv.max().item() <= 1
            assert (adv != clean).any()

    logged = fit.logged_metrics
    assert logged["train/adv_batches"].item() == len({i for e, i in expected if e == 1})  # last epoch's count
    assert 0 <= logged["train/adv_top1"].item() <= 1
    assert model.training  # the attack restored the train mode


class ForwardCounter(TinyClassifier):
    """Counts forward passes, in train and in eval mode."""

    def forward(self, images):
        self.forwards["train" if self.training else "eval"] += 1
        return super().forward(images)


@pytest.mark.parametrize("objective, every, eval_per_batch", [("mix", 1, 1), ("mix", 4, 1), ("trades", 4, 2)])
def test_adversarial_accuracy_costs_a_forward_pass_only_on_the_batches_it_measures(tmp_path, objective, every, eval_per_batch):
    # One FGSM step per batch: one eval-mode forward for the step (TRADES: one more for the clean
    # logits it compares with), one more where train/adv_top1 is measured: the first perturbed
    # batch of each epoch and every `every`-th after it.
    model = ForwardCounter()
    model.forwards = {"train": 0, "eval": 0}
    callback = AdversarialTraining(fraction=1.0, epsilon=(EPS8 := 8 / 255, EPS8), steps=(1, 1), objective=objective,
                                   target="true_label", measure_every_n_batches=every)  # fmt: skip
    fit = trainer(tmp_path, [callback], max_epochs=2, limit_val_batches=0)
    fit.fit(model, train_dataloaders=loader(8))
    measured_per_epoch = -(-8 // every)
    assert model.forwards == {"train": 16, "eval": 2 * (8 * eval_per_batch + measured_per_epoch)}
    assert 0 <= fit.logged_metrics["train/adv_top1"].item() <= 1  # logged in the last epoch too


def test_callback_rejects_tuple_batches(tmp_path):
    model = TinyClassifier()
    data = loader(2)
    tuples = DataLoader(data.dataset, batch_size=BATCH, collate_fn=lambda items: tuple(data.collate_fn(items)))
    with pytest.raises(LitVisionError, match="list"):
        trainer(tmp_path, [AdversarialTraining(fraction=1.0, steps=(1, 1))]).fit(model, train_dataloaders=tuples)


# ------------------------------------------------------------- validation
LEARNING_FROM_CHANCE = [  # (epoch, val/top1, val/adv_top1) of a real run that learned: 14 classes, ε ramp over 2 epochs
    (0, 0.134, 0.156),
    (1, 0.457, 0.066),
]


def reading(epoch=3, clean=0.9, robust=0.02, single_step=0.8, num_classes=10, ramping=False) -> Reading:
    return Reading(epoch, clean, robust, single_step, num_classes, ramping)


def test_collapse_rule_reads_the_signature_of_catastrophic_overfitting_not_a_dip():
    rule = CollapseRule()
    # A real run's readings: near chance, then learning while ε ramps — no verdict either epoch, even
    # with a single-step accuracy as high as the training attack's own (0.286).
    for epoch, clean, robust in LEARNING_FROM_CHANCE:
        assert rule.verdict(reading(epoch, clean, robust, 0.286, num_classes=14, ramping=epoch < 2)) is None
    # Past the ramp, robust accuracy below chance is not enough: both attacks break the model alike.
    assert rule.verdict(reading(clean=0.624, robust=0.045, single_step=0.131)) is None
    # Near chance on clean images, nothing is called, whatever the attacks show.
    assert rule.verdict(reading(clean=0.25, robust=0.0, single_step=0.25)) is None
    # The signature: PGD at ~0 while FGSM leaves most images correct.
    why = rule.verdict(reading(clean=0.56, robust=0.064, single_step=0.501))
    assert why is not None and "0.064" in why and "0.501" in why
    # ... the same figures while ε still ramps: no verdict.
    assert rule.verdict(reading(clean=0.56, robust=0.064, single_step=0.501, ramping=True)) is None
    # Thresholds are relative to chance: 0.05 robust is "below chance" on 10 classes, not on 100.
    assert rule.verdict(reading(robust=0.05)) is not None
    assert rule.verdict(reading(robust=0.05, num_classes=100)) is None
    assert rule.verdict(reading(clean=0.25, robust=0.005, single_step=0.2, num_classes=100)) is not None


class CollapseAt:
    """A stand-in for the rule (the rule itself is tested above and, on real over-fitting runs,
    in test_collapse_guard.py): a collapse at one epoch, to test what the guard does about it."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def clean_enough(self, reading: Reading) -> bool:
        return True

    def verdict(self, reading: Reading) -> str | None:
        return "collapsed" if reading.epoch == self.epoch else None


@pytest.mark.parametrize("on_collapse", ["restore", "stop", "warn"])
def test_validation_reacts_to_a_collapse_as_told(tmp_path, on_collapse):
    torch.manual_seed(0)
    model = TinyClassifier()
    guard = AdversarialValidation(epsilon=4 / 255, num_steps=2, max_batches=2, on_collapse=on_collapse)
    guard.rule = CollapseAt(epoch=3)
    fit = trainer(tmp_path, [guard], max_epochs=6, limit_val_batches=3)
    fit.fit(model, train_dataloaders=loader(12), val_dataloaders=loader(4, seed=1))

    assert guard.collapsed_at == 3
    assert fit.logged_metrics["val/adv_collapse"].item() == (1.0 if on_collapse != "warn" else 0.0)
    assert {"val/adv_top1", "val/adv_fgsm_top1", "val/adv_clean_top1"} <= set(fit.logged_metrics)
    if on_collapse == "warn":
        assert len(guard.history) == 6 and not guard.stopped
        assert guard.outcome() == "collapse (catastrophic over-fitting) at epoch 3: warned, training went on."
        return
    assert len(guard.history) == 4 and fit.current_epoch == 4, "the collapse at epoch 3 stopped the 6-epoch run"
    assert guard.stopped
    if on_collapse == "stop":
        assert guard.restored_epoch is None and guard.outcome().endswith("at epoch 3, weights of epoch 3 kept.")
        return
    best = max(range(3), key=lambda e: guard.history[e])
    assert guard.restored_epoch == guard.best_epoch == best
    assert guard.outcome() == (
        f"stopped early: collapse (catastrophic over-fitting) at epoch 3, weights of epoch {best} restored "
        f"(val/adv_top1 {guard.history[best]:.3f})."
    )
    # The best robust epoch's weights are back: its accuracy on the same attacked subset.
    trainer(tmp_path, [guard]).validate(model, dataloaders=loader(4, seed=1))
    assert guard.history[-1] == pytest.approx(guard.history[best])


def test_validation_without_collapse_runs_to_the_end_and_attacks_a_fixed_subset(tmp_path):
    torch.manual_seed(0)
    guard = AdversarialValidation(epsilon=4 / 255, num_steps=2, max_batches=1)
    model = TinyClassifier()
    fit = trainer(tmp_path, [guard], max_epochs=3)
    fit.fit(model, train_dataloaders=loader(6), val_dataloaders=loader(3, seed=1))
    assert len(guard.history) == 3 and guard.collapsed_at is None
    assert 0 <= fit.logged_metrics["val/adv_top1"].item() <= 1
    assert fit.logged_metrics["val/adv_collapse"].item() == 0.0
    # Same weights, same images, same random starts: the same number on every pass.
    for _ in range(2):
        trainer(tmp_path, [guard]).validate(model, dataloaders=loader(3, seed=1))
    assert guard.history[-1] == guard.history[-2] == pytest.approx(guard.history[2])


class WrongOn:
    """An attack stand-in whose logits are right except on the given positions of each batch (the
    real attacks are tested in test_pgd.py): makes the per-image worst case computable by hand."""

    def __init__(self, wrong: slice) -> None:
        self.wrong = wrong

    def attack(self, model, images, labels, generator=None):
        predicted = labels.clone()
        predicted[self.wrong] = (labels[self.wrong] + 1) % NUM_CLASSES
        return type("Result", (), {"logits": nn.functional.one_hot(predicted, NUM_CLASSES).float()})()


def test_validation_robust_top1_is_the_per_image_worst_case(tmp_path):
    """val/robust_top1 counts an image only if it is right clean, under PGD and under FGSM: with
    PGD wrong on the first quarter of every batch and FGSM on the second, it is below each figure."""
    torch.manual_seed(0)
    model = TinyClassifier()
    trainer(tmp_path, [], max_epochs=3).fit(model, train_dataloaders=loader(20))
    guard = AdversarialValidation(max_batches=2)
    guard.attack, guard.single_step = WrongOn(slice(0, BATCH // 4)), WrongOn(slice(BATCH // 4, BATCH // 2))
    val = loader(3, seed=1)
    (metrics,) = trainer(tmp_path, [guard]).validate(model, dataloaders=val)

    images, labels = (torch.cat(t) for t in zip(*list(val)[:2]))
    with torch.no_grad():
        clean_right = model(images).argmax(dim=1) == labels
    spared = torch.zeros(BATCH, dtype=torch.bool)
    spared[BATCH // 2 :] = True  # neither stand-in attack touches the second half of a batch
    expected = (clean_right & spared.repeat(2)).float().mean().item()
    assert metrics["val/robust_top1"] == pytest.approx(expected)
    assert metrics["val/adv_top1"] == metrics["val/adv_fgsm_top1"] == pytest.approx(0.75)
    assert metrics["val/robust_top1"] < min(metrics["val/adv_top1"], metrics["val/adv_clean_top1"])


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batches": 0}, {"on_collapse": "panic"}, {"min_clean": 1.0}, {"robust_below": 0}, {"min_gap": 0}, {"epsilon": 0.0}],
)
def test_validation_arguments_are_checked(kwargs):
    with pytest.raises(LitVisionError, match=next(iter(kwargs))):
        AdversarialValidation(**kwargs)


# ------------------------------------------------------------- evaluation
@pytest.mark.parametrize("inference_mode", [True, False])
def test_evaluation_logs_adversarial_metrics_and_writes_files(tmp_path, inference_mode):
    torch.manual_seed(0)
    model = TinyClassifier()
    trainer(tmp_path, [], max_epochs=3).fit(model, train_dataloaders=loader(20))
    callback = AdversarialEvaluation(
        epsilon=16 / 255, num_steps=5, targets=["true_label", "least_likely"], sweep_epsilons=[4 / 255, 16 / 255],
        sweep_steps=[1, 5], num_images=3,
    )
    test = trainer(tmp_path, [callback], inference_mode=inference_mode)
    (results,) = test.test(model, dataloaders=loader(4, seed=1))

    assert {"test/top1", "test/top5", "test/adv_top1", "test/adv_top5", "test/robust_top1"} <= set(results)
    assert results["test/adv_top1"] == results["test/adv_top1_true_label"]
    worst = min(results["test/adv_top1_true_label"], results["test/adv_top1_least_likely"])
    assert results["test/robust_top1"] <= worst
    assert results["test/top1"] > 0.5, "the tiny model should have learnt the brightness classes"
    assert results["test/adv_top1"] < results["test/top1"]
    assert results["test/adv_top5"] == 1.0  # 4 classes, top-5 covers them all

    rows = callback.rows
    # The headline (the per-image worst case) leads, then clean and each attack.
    assert [r["attack"] for r in rows[:4]] == [HEADLINE, "clean", "true_label", "least_likely"]
    assert rows[0]["top1"] == pytest.approx(results["test/robust_top1"])
    assert rows[1]["top1"] == pytest.approx(results["test/top1"])
    assert rows[2]["top1"] == pytest.approx(results["test/adv_top1"])
    sweep = {(r["target"], r["epsilon_255"], r["steps"]): r["top1"] for r in rows if r["attack"].endswith("(sweep)")}
    assert len(sweep) == 8
    assert sweep[("true_label", 16.0, 5)] == pytest.approx(rows[2]["top1"])  # the same attack as the main one
    assert sweep[("true_label", 16.0, 5)] <= sweep[("true_label", 4.0, 5)]
    assert all(check["passed"] is not False for check in callback.checks), callback.checks
    # Every figure over all evaluated images carries its Wilson 95% interval over their count.
    images = len(loader(4, seed=1).dataset)
    assert callback.images_evaluated == images
    for r in rows[:4]:
        interval = wilson_interval(round(r["top1"] * images), images)
        assert r["top1_ci95"] == f"[{interval.low:.4f}, {interval.high:.4f}]", r
    assert not any("top1_ci95" in r for r in rows if r["attack"].endswith("(sweep)"))

    with open(callback.paths["csv"]) as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    with open(callback.paths["json"]) as handle:
        written = json.load(handle)
    assert written["rows"] == rows and written["checks"] == callback.checks
    assert written["images_evaluated"] == images
    from PIL import Image

    picture = Image.open(callback.paths["png"])
    assert picture.width > 300 and picture.height > 300
    assert os.path.dirname(callback.paths["png"]) == os.path.dirname(callback.paths["csv"])
    assert os.path.basename(callback.paths["csv"]) == f"{TABLE_NAME}.csv" and callback.paths["png"].endswith(PICTURE_NAME)


class Quantised(nn.Module):
    """A trained model behind an input quantiser: round() has zero gradient almost everywhere,
    so white-box PGD learns nothing and reports a robustness that is not there."""

    def __init__(self, model: nn.Module, levels: int = 32) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, images):
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        return self.model(torch.round(x * self.levels) / self.levels)


class QuantisedClassifier(TinyClassifier):
    def forward(self, images):
        return Quantised(lambda x: super(QuantisedClassifier, self).forward(x))(images)


def masked_copy(model: TinyClassifier) -> TinyClassifier:
    masked = QuantisedClassifier()
    masked.load_state_dict(model.state_dict())
    return masked


@pytest.mark.parametrize("masked", [False, True])
def test_masking_checks_trip_on_a_quantising_model_only(tmp_path, masked):
    torch.manual_seed(0)
    clean_model = TinyClassifier()
    trainer(tmp_path, [], max_epochs=3).fit(clean_model, train_dataloaders=loader(20))
    tested = masked_copy(clean_model) if masked else clean_model
    callback = AdversarialEvaluation(
        epsilon=16 / 255, num_steps=5, step_scale=2.5, targets=["true_label"], random_start=True,
        sweep_epsilons=[4 / 255, 16 / 255, 32 / 255], sweep_steps=[1, 5], num_images=0,
    )  # fmt: skip
    callback.transfer_model = TinyClassifier()
    callback.transfer_model.load_state_dict(clean_model.state_dict())
    (results,) = trainer(tmp_path, [callback]).test(tested, dataloaders=loader(4, seed=1))
    verdicts = {check["check"]: check["passed"] for check in callback.checks}
    assert set(verdicts) == {
        "accuracy does not rise with epsilon", "accuracy does not rise with steps",
        "accuracy falls to ~0 at a large epsilon", "transfer attack does not beat white-box",
        "no attack leaves accuracy above clean",
    }  # fmt: skip
    assert results["test/top1"] > 0.5
    if masked:
        assert verdicts["accuracy falls to ~0 at a large epsilon"] is False
        assert verdicts["transfer attack does not beat white-box"] is False
        assert results["test/masking_warnings"] >= 2
    else:
        assert all(verdicts.values()), callback.checks
        assert results["test/masking_warnings"] == 0
    with open(callback.paths["json"]) as handle:
        assert json.load(handle)["checks"] == callback.checks


def test_masking_checks_flag_accuracy_rising_with_a_stronger_attack():
    from lit_vision.attacks.masking import masking_checks

    sweep = [
        {"target": "true_label", "epsilon": e, "steps": s, "top1": acc}
        for (e, s, acc) in [(0.01, 1, 0.5), (0.03, 1, 0.3), (0.01, 10, 0.6), (0.03, 10, 0.2)]
    ]
    checks = {c["check"]: c for c in masking_checks(sweep, 0.0, 0.25, 0.05, 0.2, 0.3, 0.02)}
    assert checks["accuracy does not rise with epsilon"]["passed"] is True
    assert checks["accuracy does not rise with steps"]["passed"] is False
    assert "epsilon 0.01: 1 → 10: 0.500 → 0.600" in checks["accuracy does not rise with steps"]["detail"]
    assert checks["accuracy falls to ~0 at a large epsilon"]["passed"] is True


def test_evaluation_refuses_no_op_attacks():
    with pytest.raises(LitVisionError, match="epsilon must be > 0"):
        AdversarialEvaluation(epsilon=0.0)
    with pytest.raises(LitVisionError, match="num_steps"):
        AdversarialEvaluation(num_steps=0)
    with pytest.raises(LitVisionError, match="step_size must be > 0"):
        AdversarialEvaluation(step_size=0.0)
    with pytest.raises(LitVisionError, match="sweep_steps"):
        AdversarialEvaluation(sweep_steps=[0, 5])
    with pytest.raises(LitVisionError, match="transfer_from 'missing.ckpt' is not a file"):
        AdversarialEvaluation(transfer_from="missing.ckpt")


# -------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_adversarial_fit_and_checkpoint_evaluation_through_the_cli(tmp_path, monkeypatch):
    """The documented commands: fit with configs/quickstart_adv.yaml (robust validation metric,
    checkpoints selected by it), then `lit-vision test --config … --config configs/adv_eval.yaml
    --ckpt_path …` with the transfer check crafted on the same model (so it must pass)."""
    from lit_vision.cli import main

    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    monkeypatch.chdir(tmp_path)
    tiny = [
        "--data.data_dir", "data/standin", "--data.num_classes", "4",  # the stand-in's own folder, in tmp_path
        "--data.standin_train_per_class", "6", "--data.standin_val_per_class", "3", "--data.standin_test_images", "2",
        "--data.batch_size", "8", "--data.num_workers", "0", "--data.resize_size", "36", "--data.crop_size", "32",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    main(["fit", "--config", f"{configs}/quickstart_adv.yaml", *tiny, "--trainer.max_epochs", "1"])
    checkpoint = tmp_path / "checkpoints" / "quickstart_adv" / "version_0" / "last.ckpt"
    assert checkpoint.exists()
    # checkpoint_monitor: val/adv_top1 -> the best file is chosen (and named) by robust accuracy.
    assert list(checkpoint.parent.glob("best-epoch*-adv_top1*.ckpt"))

    # The shipped adv_eval.yaml, with a smaller sweep for speed.
    with open(f"{configs}/adv_eval.yaml") as handle:
        text = handle.read()
    assert "inference_mode: false" in text and "AdversarialEvaluation" in text
    text = text.replace("sweep_epsilons: [0.0078, 0.0157, 0.0314]", "sweep_epsilons: [0.0078, 0.0314]")
    text = text.replace("sweep_steps: [1, 10]", "sweep_steps: [2]").replace("num_steps: 10", "num_steps: 3")
    text = text.replace("transfer_from: null", f"transfer_from: {checkpoint}")
    (tmp_path / "adv_eval.yaml").write_text(text)
    main(["test", "--config", f"{configs}/quickstart_adv.yaml", "--config", str(tmp_path / "adv_eval.yaml"), *tiny,
          "--ckpt_path", str(checkpoint)])  # fmt: skip

    (run_dir,) = [p for p in (tmp_path / "logs" / "quickstart_adv" / "eval").iterdir() if (p / f"{TABLE_NAME}.csv").exists()]
    with open(run_dir / f"{TABLE_NAME}.json") as handle:
        report = json.load(handle)
    rows = report["rows"]
    # adv_eval.yaml leads with the headline, then the true-label attack (test/adv_top1), then the assignment's.
    assert [r["attack"] for r in rows[:4]] == [HEADLINE, "clean", "true_label", "least_likely"]
    assert [r["attack"] for r in rows[5:9]] == ["true_label (sweep)"] * 2 + ["least_likely (sweep)"] * 2
    assert rows[0]["top1"] <= min(rows[1]["top1"], rows[2]["top1"], rows[3]["top1"])
    checks = {c["check"]: c["passed"] for c in report["checks"]}
    assert checks["transfer attack does not beat white-box"] is True  # the source is the model itself
    assert (run_dir / PICTURE_NAME).stat().st_size > 10_000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert "test/adversarial_examples" in events.Tags()["images"]
    assert {"test/adv_top1", "test/adv_top5", "test/top1", "test/robust_top1"} <= set(events.Tags()["scalars"])


class RecordBatches(L.Callback):
    """Writes (rank, epoch, batch index, batch size as the training step saw it) to a file per rank."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.txt"), "a") as handle:
            handle.write(f"{trainer.current_epoch} {batch_idx} {batch[1].shape[0]}\n")


@pytest.mark.slow
def test_ddp_ranks_perturb_the_same_batches_and_evaluation_syncs(tmp_path, monkeypatch):
    """Two CPU processes (gloo): the same batches are doubled on both ranks without any
    communication, and the adversarial evaluation neither hangs nor writes twice."""
    # Lightning leaves MASTER_PORT set after a run; a second process group on the same port
    # can meet the first one's sockets still closing (a gloo abort, seen in CI). A fresh port each time.
    monkeypatch.delenv("MASTER_PORT", raising=False)
    callback = AdversarialTraining(fraction=0.3, epsilon=(4 / 255, 8 / 255), steps=(1, 2), seed=5)
    ddp = dict(devices=2, strategy="ddp_spawn", max_epochs=2)
    trainer(tmp_path, [callback, RecordBatches(str(tmp_path))], **ddp).fit(TinyClassifier(), train_dataloaders=loader(16))
    per_rank = [(tmp_path / f"rank{r}.txt").read_text().split("\n") for r in (0, 1)]
    assert per_rank[0] == per_rank[1] and len(per_rank[0]) == 2 * 8 + 1  # 16 batches split over 2 ranks
    doubled = {tuple(map(int, line.split()[:2])) for line in per_rank[0] if line and line.split()[2] == str(2 * BATCH)}
    assert doubled == {(e, i) for e in range(2) for i in range(8) if callback.plan(e, i) is not None}
    assert doubled  # the seed draws some

    evaluation = AdversarialEvaluation(epsilon=8 / 255, num_steps=2, num_images=2)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    (results,) = trainer(tmp_path, [evaluation], **ddp).test(TinyClassifier(), dataloaders=loader(4))
    assert 0 <= results["test/adv_top1"] <= 1
    written = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".csv", ".json", ".png"))
    assert written == [f"{TABLE_NAME}.csv", f"{TABLE_NAME}.json", PICTURE_NAME]


@pytest.mark.parametrize(
    "name, shown",
    [
        ("simplenet_adv", ["fraction: 0.2", "target: least_likely"]),  # the assignment's recipe, kept
        ("quickstart_adv", ["fraction: 1.0", "target: true_label", "monitor: val/adv_top1"]),
        ("simplenet_robust", ["fraction: 1.0", "steps:\n      - 5", "objective: trades", "trades_beta: 6.0", "monitor: val/adv_top1"]),
        ("simplenet_fast", ["steps:\n      - 1", "step_scale: 1.25", "on_collapse: restore"]),
    ],
)
def test_adversarial_configs_parse(name, shown, capsys):
    from lit_vision.cli import main

    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", f"{configs}/{name}.yaml", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "AdversarialTraining" in printed
    for text in shown:
        assert text in printed, text
