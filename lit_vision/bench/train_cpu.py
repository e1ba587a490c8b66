"""End-to-end CPU training images/s: `Trainer.fit` through the DataModule vs a plain PyTorch loop.

    nice python -m lit_vision.bench train_cpu                          # ~2 min on 2 shared cores
    nice python -m lit_vision.bench train_cpu --loops plain,device,contiguous
    python -m lit_vision.bench train_cpu --steps 12 --rounds 3 --batch-size 64

Both train SimpleNet (the same initial weights) with the SGD recipe (lr 0.1, momentum 0.9,
weight decay 1e-4, warm-up then cosine per step) on the same 128-px stand-in JPEGs (or
`--data-dir`), same batch size, 2 loader workers, on the CPU. Rows, alternated round by round
(best round reported), timed from the end of the `--warmup` untimed steps to the last step:
images/s by the wall clock, and the CPU time all processes of the run (the training process
and its loader workers) spent per image, which a machine shared with other jobs disturbs far
less than the wall clock. `--loops` picks the rows:

- `plain` — plain PyTorch loop: what a student's solution does — a Dataset that decodes with PIL and
  runs torchvision v2 per image in the workers (flip, rotation ≤15°, random resized crop,
  per-channel gain, float, ImageNet normalisation), then forward, cross-entropy, backward, step;
- `auto` — ours, `Trainer.fit`: `MiniPlacesDataModule` with `augment_on: auto` (on the CPU the
  batched augmentation runs in the loader workers) and `lit_vision.models.SimpleNet`, with its
  metrics and logging calls, no logger, checkpoints or progress bar;
- `device` — ours with augment_on=device: the batched augmentation on the training threads;
- `contiguous` — ours as `auto`, but with the batches turned back into contiguous NCHW
  (what `auto` gains from its channels-last batches);
- `channels_last` — ours as `auto` plus the model's `channels_last` option (weights NHWC too);
- `resident` — ours with `data.placement: resident`: the decoded split in this process's memory,
  batches gathered from it, augmentation on the training threads (no loader workers);
- `compiled` — ours as `auto` plus `model.compile: step` (compiled in the untimed warm-up steps);
- `resident_compiled` — `resident` plus `model.compile: step`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from lit_vision.bench.conditions import quiet_lightning
from lit_vision.data import MiniPlacesDataModule
from lit_vision.data.augment_settings import Augmentation
from lit_vision.data.listing import read_labelled_list
from lit_vision.data.standin import generate_standin
from lit_vision.data.transforms import RandomChannelGain
from lit_vision.models.classifier import WarmupCosine
from lit_vision.models.simplenet import SimpleNet
from lit_vision.nets.layers import IMAGENET_MEAN, IMAGENET_STD

LOOPS = {
    "plain": "plain PyTorch loop (v2 per image in workers)",
    "auto": "ours: Trainer.fit, augment_on=auto (worker_batched)",
    "device": "ours: augment_on=device (on the training threads)",
    "contiguous": "ours: auto, batches made contiguous NCHW",
    "channels_last": "ours: auto + model channels_last",
    "resident": "ours: data.placement=resident (in memory, no workers)",
    "compiled": "ours: auto + model.compile=step",
    "resident_compiled": "ours: resident + model.compile=step",
}
RECIPE = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)  # configs/simplenet.yaml
WARMUP_FRACTION = 0.25  # of the run's steps, so both loops follow the same schedule


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per loop and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (workers start, caches fill)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="loader workers of every loop")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--data-dir", default=None, help="a MiniPlaces-layout folder instead of a generated stand-in")
    parser.add_argument("--loops", default="plain,auto", help=f"comma-separated rows, from {','.join(LOOPS)}")


class PlainImages(Dataset):
    """A student's training Dataset: PIL decode, torchvision v2 per image, normalised float."""

    def __init__(self, paths: list[Path], labels: list[int], augmentation: Augmentation, crop: int = 128) -> None:
        self.paths, self.labels = paths, labels
        self.transform = v2.Compose(
            [
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(augmentation.degrees, interpolation=v2.InterpolationMode.BILINEAR),
                v2.RandomResizedCrop(crop, scale=augmentation.scale, ratio=augmentation.ratio, antialias=True),
                v2.PILToTensor(),
                RandomChannelGain(augmentation.gain),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.transform(Image.open(self.paths[index]).convert("RGB")), self.labels[index]


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (the loader workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [os.getpid()]
    for task in Path("/proc/self/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a child that has just exited
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


class Window:
    """Wall-clock and CPU time between `begin()` and `end()`."""

    def begin(self) -> None:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def end(self) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu

    def rates(self, images: int) -> tuple[float, float]:
        """(images/s by the wall clock, CPU ms per image)."""
        return images / self.wall, 1000 * self.cpu / images


def plain_loop(net: torch.nn.Module, dataset: Dataset, args, total_steps: int) -> tuple[float, float]:
    """A hand-written training loop after `args.warmup` steps: (images/s, CPU ms/image)."""
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=RECIPE["lr"], momentum=RECIPE["momentum"], weight_decay=RECIPE["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(round(total_steps * WARMUP_FRACTION), total_steps))
    net.train()
    window = Window()
    for step, (images, labels) in enumerate(loader):
        if step == args.warmup:
            window.begin()
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss.item()
        if step + 1 == total_steps:
            window.end()
            break
    return window.rates(args.steps * args.batch_size)


class StepClock(L.Callback):
    """The time window from the start of batch `warmup` to the end of the last batch; with
    `contiguous`, turns each batch back into contiguous NCHW first (the `contiguous` row)."""

    def __init__(self, warmup: int, last: int, contiguous: bool = False) -> None:
        self.warmup, self.last, self.contiguous, self.window = warmup, last, contiguous, Window()

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.window.begin()
        if self.contiguous:
            batch[0] = batch[0].contiguous()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.last:
            self.window.end()


def lightning_fit(initial: dict, data_dir: Path, args, total_steps: int, variant: str, cache_dir: Path) -> tuple[float, float]:
    """`Trainer.fit` through the real DataModule after `args.warmup` steps: (images/s, CPU ms/image)."""
    # The same warm-up length in steps as the plain loop (warmup_epochs counts epochs).
    steps_per_epoch = len(read_labelled_list(data_dir / "train.txt", args.classes)) // args.batch_size
    warmup_epochs = WARMUP_FRACTION * total_steps / steps_per_epoch
    compile_step = "step" if variant in ("compiled", "resident_compiled") else False
    model = SimpleNet(
        num_classes=args.classes, warmup_epochs=warmup_epochs, channels_last=variant == "channels_last",
        compile=compile_step, **RECIPE,
    )  # fmt: skip
    model.net.load_state_dict(initial)
    data = MiniPlacesDataModule(
        data_dir=str(data_dir), batch_size=args.batch_size, num_workers=args.workers, num_classes=args.classes,
        augment_on="device" if variant == "device" else "auto",
        placement="resident" if variant.startswith("resident") else "loader", cache_dir=str(cache_dir),
    )  # fmt: skip
    clock = StepClock(args.warmup, total_steps - 1, contiguous=variant == "contiguous")
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=total_steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[clock],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    return clock.window.rates(args.steps * args.batch_size)


def run(args: argparse.Namespace) -> list[dict]:
    with quiet_lightning():
        return _run(args)


def _run(args: argparse.Namespace) -> list[dict]:
    total_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_dir:
            data_dir = Path(args.data_dir)
        else:
            per_class = -(-total_steps * args.batch_size // args.classes) + 1  # one epoch covers the run
            data_dir = generate_standin(Path(tmp) / "standin", args.classes, per_class, 1, 1, image_size=128)
        entries = read_labelled_list(data_dir / "train.txt", args.classes)
        if len(entries) // args.batch_size < total_steps:
            raise SystemExit(f"{data_dir / 'train.txt'} has {len(entries)} images: fewer than {total_steps} batches of {args.batch_size}.")
        plain_set = PlainImages([data_dir / "images" / p for p, _ in entries], [y for _, y in entries], Augmentation())
        torch.manual_seed(0)
        initial = SimpleNet(num_classes=args.classes).net.state_dict()

        def fresh_net() -> torch.nn.Module:
            net = SimpleNet(num_classes=args.classes).net
            net.load_state_dict(initial)
            return net

        names = [name.strip() for name in args.loops.split(",") if name.strip()]
        unknown = [name for name in names if name not in LOOPS]
        if unknown or "plain" not in names:
            raise SystemExit(f"--loops: expected names from {', '.join(LOOPS)}, including plain; got {args.loops!r}.")
        loops = {
            name: (lambda: plain_loop(fresh_net(), plain_set, args, total_steps))
            if name == "plain"
            else (lambda name=name: lightning_fit(initial, data_dir, args, total_steps, name, Path(tmp) / "cache"))
            for name in names
        }
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name in loops}
        for _ in range(args.rounds):
            for name, loop in loops.items():
                rates[name].append(loop())
    wall_reference = max(wall for wall, _ in rates["plain"])
    cpu_reference = min(cpu for _, cpu in rates["plain"])
    rows = []
    for name, values in rates.items():
        wall = max(w for w, _ in values)
        cpu = min(c for _, c in values)
        rows.append(
            {
                "loop": LOOPS[name],
                "images/s (wall, best)": wall,
                "vs plain (wall)": wall / wall_reference,
                "CPU ms/image (all processes, best)": cpu,
                "plain's CPU / ours": cpu_reference / cpu,
                "rounds (images/s)": " ".join(f"{w:.0f}" for w, _ in values),
            }
        )
    return rows
