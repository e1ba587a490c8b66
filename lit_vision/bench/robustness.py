"""What adversarial training buys, per recipe: clean, PGD and AutoAttack-grade accuracy, and an epoch's cost.

    python -m lit_vision.data.digits data/digits16 --size 16
    python -m lit_vision.bench robustness --data-dir data/digits16 --size 16 --epochs 15 \\
        --augmentation digits --settings clean,fast,madry,trades --plots docs --json docs/robustness_digits16.json

Trains one model per setting on the same data, seed and epochs, in this process, then attacks
the labelled validation split. Settings are `AdversarialTraining` recipes (`--settings`,
comma-separated; see SETTINGS and `setting()`): `weightW` is the 3-step mix with
adversarial_weight W, `tradesB` TRADES with β = B.

Checkpoint by robust validation accuracy (Rice, Wong & Kolter 2020), without selecting on the
images that are then reported: the first `--select-batches` validation batches are
AdversarialValidation's subset (true-label PGD-10 at 8/255 each epoch; its collapse guard
armed), the weights of the epoch most robust there are put back at the end of the fit (clean
training keeps its last epoch), and every figure comes from the validation batches after those
(`--eval-batches` of them, or all):

- `clean`; `tl@ε`: true-label PGD, 10 steps of 2.5·ε/10 from a random start, ε ∈ {2, 4, 8}/255;
  `ll@8`: the assignment's least-likely-target PGD at 8/255;
- `AA@8`: the AutoAttack-grade suite at 8/255 (`--suite autoattack`: APGD-CE 100 steps,
  APGD-T 100 steps × 9 targets, FAB-T, Square 5000 queries, as a cascade; lit_vision.attacks.
  autoattack, on the authors' code unless `--suite-engine torchattacks`; `--suite-attacks` a subset), per image correct under every attack of the suite; `worst@8`: correct under
  the suite and both PGDs; `AA s`: the suite's attack time;
- `CPU s/epoch`: the median epoch in this process's CPU time, the selection attack included
  (Lightning validates before an epoch ends; one thread: on a shared machine wall time measures
  the neighbours); `select s/epoch`: the median of that spent in validation (the PGD-10 selection
  subset, none for clean training), so `CPU s/epoch` minus it is the training alone;
  `epoch vs clean` divides `CPU s/epoch` by the clean setting's, `train vs clean` the training
  alone (`python -m lit_vision.bench attack --recipes …` measures the ratio round-robin).

With `--plots DIR`, writes robustness_vs_epsilon_<data>.png and frontier_<data>.png there (the
frontier: clean vs AA@8 per setting, with lines at +30 points over the clean model and at
3 points of clean accuracy lost).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from lit_vision.attacks.pgd import ASSIGNMENT_PGD_EPSILON, ASSIGNMENT_PGD_STEPS
from lit_vision.errors import LitVisionError

EPS8 = 8 / 255
# The training callbacks' arguments per setting (None: clean training).
# The assignment's recipe (configs/simplenet_adv.yaml): 20% of batches, least-likely target.
ASSIGNMENT = dict(
    fraction=0.2, epsilon=(ASSIGNMENT_PGD_EPSILON / 2, ASSIGNMENT_PGD_EPSILON),
    steps=(ASSIGNMENT_PGD_STEPS // 2, ASSIGNMENT_PGD_STEPS),
)
ROBUST_ATTACK = dict(epsilon=(EPS8, EPS8), steps=(3, 3), step_scale=2.5, target="true_label", random_start=True)
# The literature's starting point (Madry et al.; Pang et al. 2021): 5 steps of 2.5·ε/5, random start.
PGD5_ATTACK = dict(ROBUST_ATTACK, steps=(5, 5))
FAST_ATTACK = dict(epsilon=(EPS8, EPS8), steps=(1, 1), step_scale=1.25, target="true_label", random_start=True)
EVERY_BATCH = dict(fraction=1.0, epsilon_ramp_epochs=2)
SETTINGS = {
    "clean": None,
    "assignment": ASSIGNMENT,  # setting names are the recorded tables' (docs/adversarial.md)
    "robust_share20": dict(fraction=0.2, **ROBUST_ATTACK),
    "robust": dict(EVERY_BATCH, adversarial_weight=0.5, **ROBUST_ATTACK),
    "fast": dict(EVERY_BATCH, adversarial_weight=0.5, **FAST_ATTACK),
    "madry": dict(EVERY_BATCH, adversarial_weight=1.0, **PGD5_ATTACK),
    "pgd5": dict(EVERY_BATCH, adversarial_weight=0.5, **PGD5_ATTACK),
    "trades": dict(EVERY_BATCH, objective="trades", trades_beta=6.0, **PGD5_ATTACK),
}
AUGMENTATIONS = {
    "default": {},  # the DataModule's: flips, ±15° rotations, crops down to a quarter, colour gain
    "digits": dict(flip=False, degrees=8.0, scale=(0.6, 1.0), gain=0.0),  # a mirrored digit is another symbol
}


def setting(name: str) -> dict | None:
    """AdversarialTraining's arguments for a setting name (None: clean training)."""
    if name in SETTINGS:
        return SETTINGS[name]
    try:
        if name.startswith("weight"):
            return dict(EVERY_BATCH, adversarial_weight=float(name[6:]), **ROBUST_ATTACK)
        if name.startswith("fastweight"):
            return dict(EVERY_BATCH, adversarial_weight=float(name[10:]), **FAST_ATTACK)
        if name.startswith("trades"):
            return dict(EVERY_BATCH, objective="trades", trades_beta=float(name[6:]), **PGD5_ATTACK)
    except ValueError:
        pass
    raise LitVisionError(
        f"Unknown setting {name!r}: expected one of {', '.join(SETTINGS)}, weightW, fastweightW or tradesB "
        "(W, B numbers, e.g. weight0.75, trades3)."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, help="a MiniPlaces-layout folder (digits or a stand-in)")
    parser.add_argument("--standin", action="store_true", help="generate a stand-in into --data-dir if absent")
    parser.add_argument("--standin-per-class", type=int, default=100, help="stand-in training images per class")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=32, help="crop size in pixels")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="SimpleNet", help="a lit_vision.models class (SimpleNet, CustomNet1, …)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="AdamW (decoupled) weight decay")
    parser.add_argument("--augmentation", choices=sorted(AUGMENTATIONS), default="default")
    parser.add_argument("--settings", default="clean,fast,madry,trades")
    parser.add_argument("--suite", choices=["autoattack", "autoattack_lite", "none"], default="autoattack")
    parser.add_argument("--suite-attacks", default="apgd_ce,apgd_t,fab_t,square", help="the suite's attacks, in cascade order")
    parser.add_argument("--suite-engine", choices=["autoattack", "torchattacks"], default="autoattack",
                        help="the suite's attack code: the authors' (pyautoattack) or torchattacks' port")  # fmt: skip
    parser.add_argument("--select-batches", type=int, default=2, help="validation batches that choose the checkpoint")
    parser.add_argument("--eval-batches", type=int, default=None, help="validation batches attacked after those")
    parser.add_argument("--plots", metavar="DIR", help="write the two PNGs here")
    parser.add_argument("--from-json", metavar="PATH", help="re-plot the rows of an earlier --json instead of training")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadiest on a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)


def _callbacks():
    """The bench's two small callbacks (Lightning imported only when training)."""
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.validation: list[float] = []
            self.validating = 0.0

        # CPU time of this process: on a machine shared with other jobs, wall time would
        # measure the neighbours as much as the recipe.
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.process_time()

        def on_train_epoch_end(self, trainer, pl_module):
            self.seconds.append(time.process_time() - self.start)
            self.validation.append(self.validating)
            self.validating = 0.0

        # Lightning validates inside the training epoch, before on_train_epoch_end: the selection
        # attack's share is timed on its own so that the training alone can be compared.
        def on_validation_epoch_start(self, trainer, pl_module):
            self.validation_start = time.process_time()

        def on_validation_epoch_end(self, trainer, pl_module):
            self.validating += time.process_time() - self.validation_start

    class KeepMostRobust(Callback):
        """The weights of the epoch with the highest val/adv_top1, put back when the fit ends."""

        def __init__(self) -> None:
            self.best, self.epoch, self.state = -1.0, None, None

        def on_validation_end(self, trainer, pl_module):
            value = trainer.callback_metrics.get("val/adv_top1")
            collapsed = trainer.callback_metrics.get("val/adv_collapse", 0.0)
            if value is not None and not collapsed and value.item() > self.best:
                self.best, self.epoch = value.item(), trainer.current_epoch
                self.state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})

        def on_fit_end(self, trainer, pl_module):
            if self.state is not None:
                pl_module.load_state_dict(self.state)

    return EpochTimer, KeepMostRobust


def train(args, name: str, data):
    """Fit one setting; return (model, CPU seconds per epoch, of them in validation, guard, selected epoch)."""
    import lightning as L

    from lit_vision import models
    from lit_vision.callbacks.adversarial_training import AdversarialTraining
    from lit_vision.callbacks.adversarial_validation import AdversarialValidation

    EpochTimer, KeepMostRobust = _callbacks()
    L.seed_everything(args.seed, verbose=False)
    model_class = getattr(models, args.model, None)
    if not isinstance(model_class, type):
        raise LitVisionError(f"--model {args.model!r} is not a lit_vision.models class (python -m lit_vision.models lists them).")
    model = model_class(num_classes=args.num_classes, optimizer="adamw", lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=1)
    timer = EpochTimer()
    callbacks = [timer]
    training = setting(name)
    guard = keep = None
    if training is not None:
        guard = AdversarialValidation(epsilon=EPS8, num_steps=10, max_batches=args.select_batches, on_collapse="restore")
        keep = KeepMostRobust()
        callbacks += [AdversarialTraining(seed=args.seed, **training), guard, keep]
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=args.epochs, callbacks=callbacks, num_sanity_val_steps=0,
        limit_val_batches=args.select_batches if guard else 0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    seconds, validation = statistics.median(timer.seconds), statistics.median(timer.validation)
    return model, seconds, validation, guard, (keep.epoch if keep else None)


def attack(args, model, data) -> dict:
    """The figures of the module docstring on the validation batches after the selection ones."""
    from lit_vision.attacks.pgd import PGDAttack, step_size_for
    from lit_vision.utils.generators import keyed_generator

    suite = None
    if args.suite != "none":
        from lit_vision.attacks.autoattack import AttackSuite

        suite = AttackSuite(
            epsilon=EPS8, suite=args.suite, attacks=args.suite_attacks.split(","), seed=args.seed, engine=args.suite_engine
        )
    pgd = {
        (target, eps): PGDAttack(eps / 255, step_size_for(eps / 255, 10, 2.5), 10, target, random_start=True)
        for target, eps in (("true_label", 2), ("true_label", 4), ("true_label", 8), ("least_likely", 8))
    }
    model.eval()
    data.setup("validate")
    counts: dict[str, float] = {}
    seen = 0
    suite_seconds = 0.0
    for index, (images, labels) in enumerate(data.val_dataloader()):
        if index < args.select_batches:
            continue
        if args.eval_batches is not None and index >= args.select_batches + args.eval_batches:
            break
        with torch.no_grad():
            clean = model(images).argmax(dim=1) == labels
        correct = {"clean": clean}
        for (target, eps), pgd_attack in pgd.items():
            result = pgd_attack.attack(model, images, labels, generator=keyed_generator("cpu", args.seed, index, eps))
            correct[f"{'tl' if target == 'true_label' else 'll'}@{eps}"] = result.logits.argmax(dim=1) == labels
        worst = clean & correct["tl@8"] & correct["ll@8"]
        if suite is not None:
            outcome = suite.run(model, images, labels, key=(index,))
            correct["AA@8"] = outcome.robust
            worst = worst & outcome.robust
            suite_seconds += sum(o.seconds for o in outcome.outcomes)
        correct["worst@8"] = worst
        for key, value in correct.items():
            counts[key] = counts.get(key, 0) + value.sum().item()
        seen += labels.shape[0]
    if seen == 0:
        raise LitVisionError(
            f"No validation batch left to attack after the {args.select_batches} selection batches: "
            "lower --select-batches or use more validation images."
        )
    row = {key: value / seen for key, value in counts.items()}
    row["images"] = seen
    if suite is not None:
        row["AA s"] = suite_seconds
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

    # The AutoAttack-grade figure where measured (older JSON files have PGD only).
    robust_key = "AA@8" if all("AA@8" in r for r in rows) else "tl@8"
    figure, axis = plt.subplots(figsize=(6, 4))
    for row in rows:
        axis.plot(row["clean"], row[robust_key], "o")
        axis.annotate(row["setting"], (row["clean"], row[robust_key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    clean = next((r for r in rows if r["setting"] == "clean"), None)
    if clean is not None:  # the target region: ≥ +30 points robust at ≤ 3 points clean loss
        axis.axhline(clean[robust_key] + 0.30, color="green", linestyle="--", linewidth=0.8, label="clean model + 30 points")
        axis.axvline(clean["clean"] - 0.03, color="red", linestyle="--", linewidth=0.8, label="3 points clean loss")
    axis.legend(fontsize=7, loc="lower left")
    measure = "AutoAttack-grade suite" if robust_key == "AA@8" else "true-label PGD"
    axis.set(xlabel="clean top-1", ylabel=f"{measure} 8/255 top-1", title=f"clean vs robust frontier ({label})")
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
    from lit_vision.data import MiniPlacesDataModule, generate_standin
    from lit_vision.data.augment_settings import Augmentation

    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    for name in names:
        setting(name)  # every name is checked before hours of training
    if args.standin:  # asked for by name here (--standin): generated into --data-dir even when it is new
        generate_standin(args.data_dir, args.num_classes, args.standin_per_class, 30, 1, image_size=128)
    data = MiniPlacesDataModule(
        data_dir=args.data_dir, batch_size=args.batch_size, num_workers=0, num_classes=args.num_classes,
        standin=args.standin, standin_train_per_class=args.standin_per_class, standin_val_per_class=30,
        standin_test_images=1, resize_size=args.size, crop_size=args.size, pin_memory=False, cache=True,
        augmentation=Augmentation(**AUGMENTATIONS[args.augmentation]),
    )  # fmt: skip
    rows = []
    for name in names:
        print(f"training {name} …", flush=True)
        model, seconds, validation, guard, selected = train(args, name, data)
        row = {"setting": name, **attack(args, model, data), "CPU s/epoch": seconds, "select s/epoch": validation}
        if guard is not None:
            row["epoch kept"] = selected
            row["collapsed at"] = guard.collapsed_at if guard.collapsed_at is not None else "-"
        rows.append(row)
        print(rows[-1], flush=True)
    clean = next((r for r in rows if r["setting"] == "clean"), None)
    for row in rows:
        row["epoch vs clean"] = row["train vs clean"] = float("nan")
        if clean is not None:
            row["epoch vs clean"] = row["CPU s/epoch"] / clean["CPU s/epoch"]
            training = row["CPU s/epoch"] - row["select s/epoch"]
            row["train vs clean"] = training / (clean["CPU s/epoch"] - clean["select s/epoch"])
    if args.plots:
        for path in plot(rows, Path(args.plots), Path(args.data_dir).name):
            print(f"wrote {path}", flush=True)
    return rows
