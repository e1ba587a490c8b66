"""PGD cost: our attack vs a textbook PGD loop, and an adversarial-training epoch vs a clean one.

    python -m lit_vision.bench attack [--batch-size 64 --image-size 128 --steps 10]

1. Attack throughput (images/s) on SimpleNet (100 classes), same model, same images, same
   least-likely target: `PGDAttack.perturb` against the straightforward loop
   (`x.requires_grad_()`, `loss.backward()`, `x.grad.sign()`, which also computes every
   parameter's gradient). Timed alternately, median of `--repeats`; the two results are
   compared element-wise (`agree` = share of pixels equal to within 1e-6).
2. Training cost: one epoch of `Trainer.fit` on the same in-memory batches, without and with
   `AdversarialTraining(fraction, steps=(k, k))`, alternated `--epoch-repeats` times. The ratio
   depends on how many batches the seeded draw perturbed, so the table also gives the cost
   of one perturbed batch in clean batches and the ratio projected to exactly `fraction`.
3. With `--recipes clean,assignment,robust,fast` (names of `lit_vision.bench.robustness`), one epoch
   of each recipe's AdversarialTraining settings, round-robin `--epoch-repeats` times, and the
   median epoch of each relative to the clean one (instead of 1 and 2); on a CPU the clock is the
   process's CPU time on one thread, which other jobs on the machine do not inflate:

       python -m lit_vision.bench attack --recipes clean,assignment,robust_share20,robust,fast,weight0.25 \
           --image-size 16 --num-classes 10 --epoch-batches 20 --epoch-repeats 3

4. With `--vs-authors CKPT` (a lit-vision checkpoint) and `--data-dir` (its data, MiniPlaces
   layout), the AutoAttack-grade suite against the authors' own `AutoAttack(version="standard")`
   (package pyautoattack) on the same first `--images` validation images at 8/255, side by side:
   per attack of the cascade the images it ran on, the robust accuracy after it, seconds and
   images/s, for each engine of `--engines` and for the authors' code, and per engine how many
   images' verdicts differ from the authors' (instead of 1 and 2). Each engine runs the way
   `lit-vision test` runs it, on test batches of `--test-batch-size`: `per-batch`, the suite on
   each test batch's clean-correct images as they come (suite_batch_size: null), and `queued`,
   those images queued across test batches and attacked `--suite-batch-size` at a time (the
   evaluation's default); the authors' code takes all the images at once, batching them itself
   (its default batch of 250). The last row totals the seconds, the suite calls and each
   column's time relative to the authors':

       python -m lit_vision.bench attack --vs-authors checkpoints/quickstart_adv/version_0/last.ckpt \
           --data-dir data/standin --image-size 64 --num-classes 10 --images 64 --test-batch-size 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from lit_vision.attacks.pgd import ASSIGNMENT_PGD_EPSILON, PGDAttack, step_size_for
from lit_vision.errors import LitVisionError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=128, help="pixels (MiniPlaces: 128)")
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed attacks per implementation")
    parser.add_argument("--epoch-batches", type=int, default=20, help="batches per timed training epoch (0: skip)")
    parser.add_argument("--epoch-repeats", type=int, default=2, help="timed clean/adversarial epoch pairs")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of perturbed batches")
    parser.add_argument("--seed", type=int, default=4, help="AdversarialTraining seed; 4 perturbs exactly 4 of the first 20 batches")
    parser.add_argument("--recipes", help="comma-separated recipe names: time their epochs instead")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vs-authors", metavar="CKPT", help="suite vs the authors' AutoAttack on this checkpoint")
    parser.add_argument("--data-dir", help="with --vs-authors: the checkpoint's data (MiniPlaces layout)")
    parser.add_argument("--images", type=int, default=64, help="with --vs-authors: first validation images attacked")
    parser.add_argument("--engines", default="autoattack", help="with --vs-authors: suite engines, comma-separated")
    parser.add_argument("--test-batch-size", type=int, default=64, help="with --vs-authors: the test batches the suite sees")
    parser.add_argument("--suite-batch-size", type=int, default=256, help="with --vs-authors: images per queued suite call")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="with --vs-authors: wall time, or this process's CPU time (with --threads 1: the work done on a shared CPU)")
    parser.add_argument("--modes", default="per_batch,queued", help="with --vs-authors: per_batch and/or queued, comma-separated")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")


def reference_pgd(model, images: torch.Tensor, epsilon: float, step_size: float, steps: int) -> torch.Tensor:
    """The textbook least-likely PGD loop (what one writes first)."""
    model.eval()
    x0 = images.float() / 255
    with torch.no_grad():
        target = model(x0).argmin(1)
    x = x0.clone()
    for _ in range(steps):
        x.requires_grad_()
        loss = F.cross_entropy(model(x), target, reduction="sum")
        model.zero_grad()
        loss.backward()
        x = x - step_size * x.grad.sign()
        x = torch.min(torch.max(x, x0 - epsilon), x0 + epsilon).clamp(0, 1).detach()
    return x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _attack_rows(args, device: torch.device) -> list[dict]:
    from lit_vision.models import SimpleNet

    torch.manual_seed(0)
    model = SimpleNet(num_classes=args.num_classes).to(device)
    images = torch.randint(0, 256, (args.batch_size, 3, args.image_size, args.image_size), dtype=torch.uint8, device=device)
    step_size = step_size_for(ASSIGNMENT_PGD_EPSILON, args.steps, 1.0)
    attack = PGDAttack(ASSIGNMENT_PGD_EPSILON, step_size, args.steps, target="least_likely")

    def ours():
        return attack.perturb(model, images)

    def reference():
        return reference_pgd(model, images, ASSIGNMENT_PGD_EPSILON, step_size, args.steps)

    ours(), reference()  # warm-up
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("reference", reference)):
            seconds, outputs[name] = _timed(fn, device)
            times[name].append(seconds)
    agree = ((outputs["ours"] - outputs["reference"]).abs() <= 1e-6).float().mean().item()
    med = {name: statistics.median(t) for name, t in times.items()}
    rows = []
    for name, label in (("ours", "PGDAttack.perturb"), ("reference", "textbook loop (loss.backward)")):
        rows.append(
            {
                "measure": f"attack, {args.steps} steps",
                "implementation": label,
                "images/s": args.batch_size / med[name],
                "ms/batch": 1000 * med[name],
                "speed-up vs reference": med["reference"] / med[name],
                "agree": agree,
            }
        )
    return rows


def _random_batches(args):
    from torch.utils.data import TensorDataset

    n = args.epoch_batches * args.batch_size
    g = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.randint(0, 256, (n, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=g),
        torch.randint(0, args.num_classes, (n,), generator=g),
    )


def _epoch_timer(device: torch.device, clock=time.perf_counter):
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            _sync(device)
            self.start = clock()

        def on_train_epoch_end(self, trainer, pl_module):
            _sync(device)
            self.seconds = clock() - self.start

    return EpochTimer()


def _timed_epoch(args, device: torch.device, data, callbacks: list, batches: int, clock=time.perf_counter) -> float:
    import lightning as L
    from torch.utils.data import DataLoader

    from lit_vision.models import SimpleNet

    torch.manual_seed(0)
    model = SimpleNet(num_classes=args.num_classes)
    timer = _epoch_timer(device, clock)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=1, limit_train_batches=batches,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer, *callbacks],
    )  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=args.batch_size))
    return timer.seconds


def _recipe_rows(args, device: torch.device) -> list[dict]:
    from lit_vision.bench.robustness import setting
    from lit_vision.callbacks.adversarial_training import AdversarialTraining

    # On a CPU shared with other jobs, wall time measures the neighbours as much as the work:
    # there the ratio is of this process's CPU time, on one intra-op thread.
    clock = time.perf_counter
    if device.type == "cpu":
        clock = time.process_time
        torch.set_num_threads(1)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    if "clean" not in names:
        names.insert(0, "clean")
    data = _random_batches(args)

    def callbacks(name: str) -> list:
        kwargs = setting(name)
        return [] if kwargs is None else [AdversarialTraining(seed=args.seed, **kwargs)]

    for name in names:  # warm-up, and every name checked before the timed rounds
        _timed_epoch(args, device, data, callbacks(name), 2, clock)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.epoch_repeats):
        for name in names:
            times[name].append(_timed_epoch(args, device, data, callbacks(name), args.epoch_batches, clock))
    clean = statistics.median(times["clean"])
    measure = f"training epoch, {args.epoch_batches} batches of {args.batch_size} at {args.image_size}px"
    unit = "CPU s/epoch" if clock is time.process_time else "s/epoch"
    return [
        {"measure": measure, "recipe": name, unit: statistics.median(t), "ratio vs clean": statistics.median(t) / clean}
        for name, t in times.items()
    ]


def _epoch_rows(args, device: torch.device) -> list[dict]:
    import lightning as L
    from torch.utils.data import DataLoader

    from lit_vision.callbacks.adversarial_training import AdversarialTraining
    from lit_vision.models import SimpleNet

    data = _random_batches(args)

    def epoch(adversarial: bool, batches: int) -> tuple[float, int]:
        torch.manual_seed(0)
        model = SimpleNet(num_classes=args.num_classes)
        timer = _epoch_timer(device)
        callbacks = [timer]
        adv = None
        if adversarial:
            adv = AdversarialTraining(
                fraction=args.fraction, epsilon=(ASSIGNMENT_PGD_EPSILON, ASSIGNMENT_PGD_EPSILON), steps=(args.steps, args.steps), seed=args.seed
            )
            callbacks.append(adv)
        trainer = L.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1,
            max_epochs=1,
            limit_train_batches=batches,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
        )
        trainer.fit(model, DataLoader(data, batch_size=args.batch_size))
        return timer.seconds, (adv.batches_perturbed if adv else 0)

    epoch(False, 2), epoch(True, 2)  # warm-up (first-call allocations, thread pools)
    clean_times, adv_times, perturbed = [], [], 0
    for _ in range(args.epoch_repeats):
        clean_times.append(epoch(False, args.epoch_batches)[0])
        seconds, perturbed = epoch(True, args.epoch_batches)
        adv_times.append(seconds)
    clean, adv = statistics.median(clean_times), statistics.median(adv_times)
    b = args.epoch_batches
    per_clean_batch = clean / b
    # Cost of one perturbed batch in clean batches, then the ratio at exactly `fraction`.
    if perturbed:
        per_adv_batch = (adv - (b - perturbed) * per_clean_batch) / perturbed / per_clean_batch
        projected = 1 + args.fraction * (per_adv_batch - 1)
    else:  # nothing drawn: nothing to extrapolate from
        per_adv_batch = projected = float("nan")
    common = {"measure": f"training epoch, {b} batches of {args.batch_size}"}
    return [
        {**common, "implementation": "clean", "s/epoch": clean, "perturbed batches": 0, "ratio vs clean": 1.0},
        {
            **common,
            "implementation": f"AdversarialTraining(fraction={args.fraction}, steps={args.steps})",
            "s/epoch": adv,
            "perturbed batches": perturbed,
            "ratio vs clean": adv / clean,
            "perturbed batch / clean batch": per_adv_batch,
            f"ratio at exactly {args.fraction}": projected,
        },
    ]


def _validation_images(args) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `--images` validation images of `--data-dir` as the evaluation sees them."""
    from lit_vision.data import MiniPlacesDataModule
    from lit_vision.utils.images import to_unit_float

    resize = round(args.image_size * 9 / 8)  # the recipes' evaluation resize (72 for 64-px crops)
    data = MiniPlacesDataModule(data_dir=args.data_dir, num_classes=args.num_classes, batch_size=args.images,
                                num_workers=0, resize_size=resize, crop_size=args.image_size, pin_memory=False)  # fmt: skip
    data.setup("validate")
    images, labels = next(iter(data.val_dataloader()))
    return to_unit_float(images).float().contiguous(), labels


def _authors_timed(authors, model, clock=time.perf_counter) -> dict[str, list[float]]:
    """Per attack of the authors' AutoAttack: [images given, seconds, images fooled], by wrapping
    the perturb method of each attack object their cascade calls (their log has running totals);
    `clock` as the suite's columns are timed."""
    spent: dict[str, list[float]] = {}
    for name, attack in (("apgd_ce", authors.apgd), ("apgd_t", authors.apgd_targeted), ("fab_t", authors.fab),
                         ("square", authors.square)):  # fmt: skip
        def timed(x, y, *rest, _name=name, _perturb=attack.perturb, **kwargs):
            start = clock()
            out = _perturb(x, y, *rest, **kwargs)
            entry = spent.setdefault(_name, [0, 0.0, 0])
            entry[0] += x.shape[0]
            entry[1] += clock() - start
            with torch.no_grad():
                entry[2] += int((model(out).argmax(dim=1) != y).sum())
            return out

        attack.perturb = timed
    return spent


MODES = {"per_batch": "per-batch", "queued": "queued"}


def _suite_as_tested(suite, model, images: torch.Tensor, labels: torch.Tensor, args, mode: str):
    """The suite as `lit-vision test` runs it on test batches of --test-batch-size: per test batch
    (mode per_batch) or queued across them, --suite-batch-size per call (mode queued). Returns
    per image the robust verdict, per attack {images, robust, seconds} summed over calls, and the
    number of calls."""
    from lit_vision.attacks.suite_buffer import SuiteBuffer

    robust = torch.zeros_like(labels, dtype=torch.bool)
    column = {name: {"images": 0, "robust": 0, "seconds": 0.0} for name in suite.attacks}
    results = []  # (result, the images' indices)
    buffer = SuiteBuffer(suite, args.suite_batch_size, key=(0,)) if mode == "queued" else None
    calls = 0
    for batch, start in enumerate(range(0, len(labels), args.test_batch_size)):
        index = torch.arange(start, min(start + args.test_batch_size, len(labels)), device=labels.device)
        if buffer is None:  # the callback's key: (batch index, dataloader index, rank)
            results.append((suite.run(model, images[index], labels[index], key=(batch, 0, 0)), index))
            calls += 1
            continue
        with torch.no_grad():  # the callback queues the images that enter the cascade
            entering = index[model(images[index]).argmax(dim=1) == labels[index]]
        results += [(d.result, d.carry) for d in buffer.add(model, images[entering], labels[entering], carry=entering)]
    if buffer is not None:
        results += [(d.result, d.carry) for d in buffer.flush(model)]
        calls = buffer.calls
    for result, index in results:
        robust[index] = result.robust
        for o in result.outcomes:
            cell = column[o.name]
            cell["images"] += o.attacked
            cell["robust"] += int(result.correct[o.name].sum())
            cell["seconds"] += o.cpu_seconds if args.clock == "cpu" else o.seconds
    return robust, column, calls


def _vs_authors_rows(args, device: torch.device) -> list[dict]:
    import logging

    from lit_vision.attacks.autoattack import AUTHORS_NAMES, SUITE_ATTACKS, AttackSuite, require_autoattack
    from lit_vision.checkpoints import load_model_from_checkpoint

    if not args.data_dir:
        raise LitVisionError("python -m lit_vision.bench attack --vs-authors needs --data-dir, the checkpoint's data folder.")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise LitVisionError(f"python -m lit_vision.bench attack --modes {args.modes!r}: give per_batch and/or queued, comma-separated.")
    for flag, value in (("--test-batch-size", args.test_batch_size), ("--suite-batch-size", args.suite_batch_size), ("--images", args.images)):
        if value < 1:
            raise LitVisionError(f"python -m lit_vision.bench attack {flag} {value}: give a number of images >= 1.")
    require_autoattack()
    from pyautoattack import AutoAttack

    eps = 8 / 255
    model = load_model_from_checkpoint(args.vs_authors, num_classes=args.num_classes).to(device).eval()
    images, labels = (t.to(device) for t in _validation_images(args))
    columns: dict[str, dict] = {}
    verdicts: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        for mode in modes:
            who = f"{'suite' if engine == 'autoattack' else engine} {MODES[mode]}"
            suite = AttackSuite(eps, "autoattack", seed=0, engine=engine)
            verdicts[who], columns[who], calls[who] = _suite_as_tested(suite, model, images, labels, args, mode)
    logging.getLogger("auto-attack").setLevel(logging.ERROR)  # their progress lines
    authors = AutoAttack(model, norm="Linf", eps=eps, version="standard", device=device, seed=0)
    spent = _authors_timed(authors, model, time.process_time if args.clock == "cpu" else time.perf_counter)
    adversarial, _ = authors.run_standard_evaluation(images, labels, batch_size=len(labels))
    with torch.no_grad():
        verdicts["authors"] = model(adversarial).argmax(dim=1) == labels
        clean = int((model(images).argmax(dim=1) == labels).sum())
    # The authors' robust count after each attack of their cascade: clean less what each fooled.
    robust, columns["authors"] = clean, {}
    for name in SUITE_ATTACKS:
        given, seconds, fooled = spent.get(name, [0, 0.0, 0])
        robust -= fooled
        columns["authors"][name] = {"images": int(given), "robust": robust, "seconds": seconds}
    total = len(labels)
    rows = []
    for name in SUITE_ATTACKS:
        row = {"measure": f"AutoAttack standard, {total} val images, 8/255", "attack": AUTHORS_NAMES[name].upper()}
        for who, column in columns.items():
            cell = column.get(name, {})
            row[f"{who} images"] = cell.get("images", 0)
            if "robust" in cell:
                row[f"{who} robust"] = cell["robust"] / total
            row[f"{who} s"] = cell.get("seconds", 0.0)
            row[f"{who} img/s"] = cell["images"] / cell["seconds"] if cell.get("seconds") else float("nan")
        rows.append(row)
    final = {"measure": f"AutoAttack standard, {total} val images, 8/255", "attack": "all four (robust top-1)"}
    authors_seconds = sum(c["seconds"] for c in columns["authors"].values())
    for who in columns:
        seconds = sum(c["seconds"] for c in columns[who].values())
        final[f"{who} robust"] = verdicts[who].float().mean().item()
        final[f"{who} s"] = seconds
        if who != "authors":
            final[f"{who} calls"] = calls[who]
            final[f"{who} x authors"] = seconds / authors_seconds if authors_seconds else float("nan")
            final[f"{who} differs on"] = int((verdicts[who] != verdicts["authors"]).sum())
    final["clean"] = clean / total
    final["clock"] = "CPU s" if args.clock == "cpu" else "wall s"
    final["test batch"] = args.test_batch_size
    final["suite batch"] = args.suite_batch_size
    return rows + [final]


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vs_authors:
        return _vs_authors_rows(args, device)
    print(
        f"SimpleNet, {args.num_classes} classes, batch {args.batch_size}, {args.image_size}px, "
        f"epsilon {ASSIGNMENT_PGD_EPSILON:.4f} (≈{ASSIGNMENT_PGD_EPSILON * 255:.2f}/255), {args.steps} steps, device {device}",
        flush=True,
    )
    if args.recipes:
        return _recipe_rows(args, device)
    rows = _attack_rows(args, device)
    if args.epoch_batches > 0:
        rows += _epoch_rows(args, device)
    return rows
