"""AdversarialTraining and AdversarialEvaluation inside a real Trainer (tiny model, CPU), and
the documented CLI command end to end (slow)."""

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

from lit_vision.callbacks.adversarial_eval import PICTURE_NAME, TABLE_NAME, AdversarialEvaluation
from lit_vision.callbacks.adversarial_training import AdversarialTraining
from lit_vision.errors import LitVisionError
from lit_vision.models.classifier import ImageClassifier

NUM_CLASSES = 4
SIZE = 12
BATCH = 8


class TinyClassifier(ImageClassifier):
    """The project's classifier system around a very small CNN; records what training_step sees."""

    def __init__(self, num_classes: int = NUM_CLASSES, **kwargs) -> None:
        super().__init__(num_classes=num_classes, optimizer="adamw", lr=1e-2, warmup_epochs=0, **kwargs)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes)
        )
        self.seen: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []

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
    assert all(p.step_size == pytest.approx(p.epsilon / p.num_steps) for p in plans)
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
        {"target": "nope"},
    ],
)
def test_training_arguments_are_checked(kwargs):
    with pytest.raises(LitVisionError):
        AdversarialTraining(**kwargs)


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


def test_callback_rejects_tuple_batches(tmp_path):
    model = TinyClassifier()
    data = loader(2)
    tuples = DataLoader(data.dataset, batch_size=BATCH, collate_fn=lambda items: tuple(data.collate_fn(items)))
    with pytest.raises(LitVisionError, match="list"):
        trainer(tmp_path, [AdversarialTraining(fraction=1.0, steps=(1, 1))]).fit(model, train_dataloaders=tuples)


# ------------------------------------------------------------- evaluation
@pytest.mark.parametrize("inference_mode", [True, False])
def test_evaluation_logs_adversarial_metrics_and_writes_files(tmp_path, inference_mode):
    torch.manual_seed(0)
    model = TinyClassifier()
    trainer(tmp_path, [], max_epochs=3).fit(model, train_dataloaders=loader(20))
    callback = AdversarialEvaluation(
        epsilon=16 / 255, num_steps=5, target="true_label", sweep_epsilons=[0.0, 16 / 255], sweep_steps=[1, 5], num_images=3
    )
    test = trainer(tmp_path, [callback], inference_mode=inference_mode)
    (results,) = test.test(model, dataloaders=loader(4, seed=1))

    assert {"test/top1", "test/top5", "test/adv_top1", "test/adv_top5"} <= set(results)
    assert results["test/top1"] > 0.5, "the tiny model should have learnt the brightness classes"
    assert results["test/adv_top1"] < results["test/top1"]
    assert results["test/adv_top5"] == 1.0  # 4 classes, top-5 covers them all

    rows = callback.rows
    assert [r["attack"] for r in rows[:2]] == ["clean", "true_label"]
    assert rows[0]["top1"] == pytest.approx(results["test/top1"])
    assert rows[1]["top1"] == pytest.approx(results["test/adv_top1"])
    sweep = {(r["epsilon_255"], r["steps"]): r["top1"] for r in rows[2:]}
    assert set(sweep) == {(0.0, 1), (0.0, 5), (16.0, 1), (16.0, 5)}
    assert sweep[(0.0, 1)] == sweep[(0.0, 5)] == pytest.approx(results["test/top1"])  # ε = 0: clean accuracy
    assert sweep[(16.0, 5)] <= sweep[(16.0, 1)] + 1e-6 and sweep[(16.0, 5)] == pytest.approx(rows[1]["top1"])

    with open(callback.paths["csv"]) as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    with open(callback.paths["json"]) as handle:
        assert json.load(handle)["rows"] == rows
    from PIL import Image

    picture = Image.open(callback.paths["png"])
    assert picture.width > 300 and picture.height > 300
    assert os.path.dirname(callback.paths["png"]) == os.path.dirname(callback.paths["csv"])
    assert os.path.basename(callback.paths["csv"]) == f"{TABLE_NAME}.csv" and callback.paths["png"].endswith(PICTURE_NAME)


# -------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_adversarial_fit_and_checkpoint_evaluation_through_the_cli(tmp_path, monkeypatch):
    """The documented commands: fit with configs/quickstart_adv.yaml, then
    `lit-vision test --config … --config configs/adv_eval.yaml --ckpt_path …`."""
    from lit_vision.cli import main

    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    monkeypatch.chdir(tmp_path)
    tiny = [
        "--data.data_dir", str(tmp_path / "standin"), "--data.num_classes", "4", "--model.init_args.num_classes", "4",
        "--data.standin_train_per_class", "6", "--data.standin_val_per_class", "3", "--data.standin_test_images", "2",
        "--data.batch_size", "8", "--data.num_workers", "0", "--data.resize_size", "36", "--data.crop_size", "32",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    main(["fit", "--config", f"{configs}/quickstart_adv.yaml", *tiny, "--trainer.max_epochs", "1"])
    checkpoint = tmp_path / "checkpoints" / "quickstart_adv" / "last.ckpt"
    assert checkpoint.exists()

    # The shipped adv_eval.yaml, with a smaller sweep for speed.
    with open(f"{configs}/adv_eval.yaml") as handle:
        text = handle.read()
    assert "inference_mode: false" in text and "AdversarialEvaluation" in text
    text = text.replace("sweep_epsilons: [0.0039, 0.0113, 0.0226, 0.0314]", "sweep_epsilons: [0.0, 0.0314]")
    text = text.replace("sweep_steps: [1, 10]", "sweep_steps: [2]").replace("num_steps: 10", "num_steps: 3")
    (tmp_path / "adv_eval.yaml").write_text(text)
    main(["test", "--config", f"{configs}/quickstart_adv.yaml", "--config", str(tmp_path / "adv_eval.yaml"), *tiny,
          "--ckpt_path", str(checkpoint)])  # fmt: skip

    (run_dir,) = [p for p in (tmp_path / "logs" / "quickstart_adv").iterdir() if (p / f"{TABLE_NAME}.csv").exists()]
    with open(run_dir / f"{TABLE_NAME}.json") as handle:
        rows = json.load(handle)["rows"]
    assert [r["attack"] for r in rows] == ["clean", "least_likely"] + ["least_likely (sweep)"] * 2
    assert rows[2]["epsilon"] == 0.0 and rows[2]["top1"] == pytest.approx(rows[0]["top1"])
    assert (run_dir / PICTURE_NAME).stat().st_size > 10_000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert "test/adversarial_examples" in events.Tags()["images"]
    assert {"test/adv_top1", "test/adv_top5", "test/top1"} <= set(events.Tags()["scalars"])


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


@pytest.mark.parametrize("name", ["simplenet_adv", "quickstart_adv"])
def test_adversarial_configs_parse(name, capsys):
    from lit_vision.cli import main

    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", f"{configs}/{name}.yaml", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "AdversarialTraining" in printed and "fraction: 0.2" in printed
