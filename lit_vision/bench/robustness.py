"""What adversarial training buys, per recipe: clean vs robust accuracy and the cost of an epoch.

    python -m lit_vision.data.digits data/digits32 --size 32
    python -m lit_vision.bench robustness --data-dir data/digits32 --epochs 8 \\
        --settings clean,course,card_robust,robust,fast --plots docs/ --json docs/robustness_digits.json

Trains SimpleNet (the quickstart's AdamW recipe) once per setting on the same data, seed and
epochs, in this process, then attacks the labelled validation split with AdversarialEvaluation:
true-label and least-likely PGD (10 steps, step 2.5·ε/10, random start) at ε ∈ {2, 4, 8}/255
and the per-image worst case at 8/255. `CPU s/epoch` is the median training epoch in this
process's CPU time (validation excluded; one thread); `epoch vs clean` divides it by the clean
setting's. `python -m lit_vision.bench attack --recipes …` measures the same ratio round-robin.
Settings are the recipes of docs/adversarial.md (`--settings`, comma-separated; `weightW`
trains the robust attack with adversarial_weight W, one point of the frontier per W).
With `--plots DIR`, writes robustness_vs_epsilon_<data>.png and frontier_<data>.png there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lit_vision.attacks.pgd import COURSE_EPSILON, COURSE_NUM_STEPS
from lit_vision.errors import LitVisionError

EPS8 = 8 / 255
# The training callbacks' arguments per setting (None: clean training).
COURSE = dict(fraction=0.2, epsilon=(COURSE_EPSILON / 2, COURSE_EPSILON), steps=(COURSE_NUM_STEPS // 2, COURSE_NUM_STEPS))
ROBUST_ATTACK = dict(epsilon=(EPS8, EPS8), steps=(3, 3), step_scale=2.5, target="true_label", random_start=True)
FAST_ATTACK = dict(epsilon=(EPS8, EPS8), steps=(1, 1), step_scale=1.25, target="true_label", random_start=True)
SETTINGS = {
    "clean": None,
    "course": COURSE,
    "card_robust": dict(fraction=0.2, **ROBUST_ATTACK),
    "robust": dict(fraction=1.0, adversarial_weight=0.5, epsilon_ramp_epochs=2, **ROBUST_ATTACK),
    "fast": dict(fraction=1.0, adversarial_weight=0.5, epsilon_ramp_epochs=2, **FAST_ATTACK),
}


def setting(name: str) -> dict | None:
    if name in SETTINGS:
        return SETTINGS[name]
    if name.startswith("weight"):
        return dict(fraction=1.0, adversarial_weight=float(name[6:]), epsilon_ramp_epochs=2, **ROBUST_ATTACK)
    if name.startswith("fastweight"):
        return dict(fraction=1.0, adversarial_weight=float(name[10:]), epsilon_ramp_epochs=2, **FAST_ATTACK)
    raise LitVisionError(f"Unknown setting {name!r}: expected one of {', '.join(SETTINGS)}, weightW or fastweightW.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, help="a MiniPlaces-layout folder (digits or a stand-in)")
    parser.add_argument("--standin", action="store_true", help="generate a stand-in into --data-dir if absent")
    parser.add_argument("--standin-per-class", type=int, default=100, help="stand-in training images per class")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=32, help="crop size in pixels")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--settings", default="clean,course,card_robust,robust,fast")
    parser.add_argument("--confirm", action="store_true", help="also attack with 50 steps × 5 restarts (true label, 8/255)")
    parser.add_argument("--plots", metavar="DIR", help="write the two PNGs here")
    parser.add_argument("--from-json", metavar="PATH", help="re-plot the rows of an earlier --json instead of training")
    parser.add_argument("--eval-batches", type=int, default=None, help="attack only the first N validation batches")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadiest on a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)


def train_and_attack(args, name: str) -> dict:
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from lit_vision.callbacks.adversarial_eval import AdversarialEvaluation
    from lit_vision.callbacks.adversarial_training import AdversarialTraining
    from lit_vision.callbacks.adversarial_validation import AdversarialValidation
    from lit_vision.data import MiniPlacesDataModule, generate_standin
    from lit_vision.models import SimpleNet

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        # CPU time of this process: on a machine shared with other jobs, wall time would
        # measure the neighbours as much as the recipe.
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.process_time()

        def on_train_epoch_end(self, trainer, pl_module):
            self.seconds.append(time.process_time() - self.start)

    if args.standin:  # asked for by name here (--standin): generated into --data-dir even when it is new
        generate_standin(args.data_dir, args.num_classes, args.standin_per_class, 30, 1, image_size=128)
    L.seed_everything(args.seed, verbose=False)
    data = MiniPlacesDataModule(
        data_dir=args.data_dir, batch_size=args.batch_size, num_workers=0, num_classes=args.num_classes,
        standin=args.standin, standin_train_per_class=args.standin_per_class, standin_val_per_class=30,
        standin_test_images=1, resize_size=args.size, crop_size=args.size, pin_memory=False, cache=True,
    )  # fmt: skip
    model = SimpleNet(num_classes=args.num_classes, optimizer="adamw", lr=2e-3, weight_decay=0.05, warmup_epochs=1)
    timer = EpochTimer()
    callbacks = [timer]
    training = setting(name)
    if training is not None:
        callbacks.append(AdversarialTraining(seed=args.seed, **training))
    guard = None
    if training is not None and training.get("fraction") == 1.0:
        guard = AdversarialValidation(epsilon=EPS8, num_steps=5, max_batches=2, on_collapse="restore")
        callbacks.append(guard)
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=args.epochs, callbacks=callbacks, num_sanity_val_steps=0,
        limit_val_batches=guard.max_batches if guard else 0, **quiet,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)

    steps = 10
    attacks = [
        AdversarialEvaluation(
            epsilon=EPS8, num_steps=steps, step_scale=2.5, targets=["true_label", "least_likely"], random_start=True,
            sweep_epsilons=[2 / 255, 4 / 255], sweep_steps=[steps], masking_checks=False, num_images=0, seed=args.seed,
        )
    ]  # fmt: skip
    if args.confirm:
        confirmation = AdversarialEvaluation(
            epsilon=EPS8, num_steps=50, step_scale=2.5, targets=["true_label"], random_start=True, restarts=5,
            masking_checks=False, num_images=0, seed=args.seed,
        )  # fmt: skip
        attacks.append(confirmation)
    row = {"setting": name}
    for i, evaluation in enumerate(attacks):
        # The evaluation's own table files go to a throwaway folder: the bench reports the rows.
        with tempfile.TemporaryDirectory() as scratch:
            tester = L.Trainer(accelerator="cpu", devices=1, callbacks=[evaluation], inference_mode=False,
                               limit_test_batches=args.eval_batches or 1.0, default_root_dir=scratch, **quiet)  # fmt: skip
            (results,) = tester.test(model, datamodule=data, verbose=False)
        if i == 0:
            by = {(r.get("target"), r.get("epsilon_255")): r["top1"] for r in evaluation.rows if r.get("target")}
            row["clean"] = results["test/top1"]
            for target, short in (("true_label", "tl"), ("least_likely", "ll")):
                for eps in (2, 4, 8):
                    row[f"{short}@{eps}"] = by[(target, float(eps))]
            row["worst@8"] = results["test/robust_top1"]
        else:
            row["tl@8 50x5"] = results["test/adv_top1"]
    row["CPU s/epoch"] = statistics.median(timer.seconds)
    if guard is not None:
        row["collapsed at"] = guard.collapsed_at if guard.collapsed_at is not None else "-"
    return row


def plot(rows: list[dict], folder: Path, label: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    figure, axis = plt.subplots(figsize=(6, 4))
    for row in rows:
        axis.plot([0, 2, 4, 8], [row["clean"], row["tl@2"], row["tl@4"], row["tl@8"]], "-o", markersize=3, label=row["setting"])
    axis.set(xlabel="ε (/255), true-label PGD, 10 steps", ylabel="top-1", title=f"robustness vs ε ({label})", ylim=(0, 1))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    written.append(folder / f"robustness_vs_epsilon_{label}.png")
    figure.savefig(written[-1], dpi=80)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    for row in rows:
        axis.plot(row["clean"], row["tl@8"], "o")
        axis.annotate(row["setting"], (row["clean"], row["tl@8"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    # The knob's curve: the robust attack at adversarial_weight 0.25 … 1 ("robust" is 0.5).
    knob = sorted(
        (SETTINGS["robust"]["adversarial_weight"] if r["setting"] == "robust" else float(r["setting"][6:]), r["clean"], r["tl@8"])
        for r in rows
        if r["setting"] == "robust" or r["setting"].startswith("weight")
    )
    if len(knob) > 1:
        axis.plot([k[1] for k in knob], [k[2] for k in knob], ":", color="grey", label="adversarial_weight 0.25 → 1")
    clean = next((r for r in rows if r["setting"] == "clean"), None)
    if clean is not None:  # the goal: ≥ +30 points robust at ≤ 3 points clean loss
        axis.axhline(clean["tl@8"] + 0.30, color="green", linestyle="--", linewidth=0.8, label="goal: clean model + 30 points")
        axis.axvline(clean["clean"] - 0.03, color="red", linestyle="--", linewidth=0.8, label="goal: ≤ 3 points clean loss")
    axis.legend(fontsize=7, loc="lower left")
    axis.set(xlabel="clean top-1", ylabel="true-label PGD 8/255 top-1", title=f"clean vs robust frontier ({label})")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    written.append(folder / f"frontier_{label}.png")
    figure.savefig(written[-1], dpi=80)
    plt.close(figure)
    return written


def run(args: argparse.Namespace) -> list[dict]:
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())["rows"]
        for path in plot(rows, Path(args.plots or "."), Path(args.data_dir).name):
            print(f"wrote {path}", flush=True)
        return rows
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    for name in names:
        setting(name)  # every name is checked before hours of training
    rows = []
    for name in names:
        print(f"training {name} …", flush=True)
        rows.append(train_and_attack(args, name))
        print(rows[-1], flush=True)
    clean = next((r["CPU s/epoch"] for r in rows if r["setting"] == "clean"), None)
    for row in rows:
        row["epoch vs clean"] = row["CPU s/epoch"] / clean if clean else float("nan")
    if args.plots:
        for path in plot(rows, Path(args.plots), Path(args.data_dir).name):
            print(f"wrote {path}", flush=True)
    return rows
