"""End-to-end CPU training images/s: `Trainer.fit` through the DataModule vs a plain PyTorch loop.

    nice python -m lit_vision.bench train_cpu                 # ~2 min on 2 cores
    python -m lit_vision.bench train_cpu --steps 12 --rounds 3 --batch-size 64

Both train SimpleNet (the same initial weights) with the SGD recipe (lr 0.1, momentum 0.9,
weight decay 1e-4, warm-up then cosine per step) on the same 128-px stand-in JPEGs (or
`--data-dir`), same batch size, 2 loader workers, on the CPU. Rows, alternated round by round
(best round reported; wall clock from the end of the `--warmup` untimed steps):

- plain PyTorch loop: what a student's solution does — a Dataset that decodes with PIL and
  runs torchvision v2 per image in the workers (flip, rotation ≤15°, random resized crop,
  per-channel gain, float, ImageNet normalisation), then forward, cross-entropy, backward, step;
- ours, `Trainer.fit`: `MiniPlacesDataModule` with `augment_on: auto` (on the CPU the
  batched augmentation runs in the loader workers) and `lit_vision.models.SimpleNet`, with its
  metrics and logging calls, no logger, checkpoints or progress bar;
- ours, augment_on=device: the batched augmentation on the training threads instead;
- ours + channels_last: the model's NHWC option (same mathematics).
"""

from __future__ import annotations

import argparse
import logging
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

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data.augment_settings import Augmentation
from lit_vision.data.listing import read_labelled_list
from lit_vision.data.standin import generate_standin
from lit_vision.data.transforms import RandomChannelGain
from lit_vision.models.classifier import WarmupCosine
from lit_vision.models.simplenet import SimpleNet
from lit_vision.nets.layers import IMAGENET_MEAN, IMAGENET_STD

RECIPE = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)  # configs/simplenet.yaml
WARMUP_FRACTION = 0.25  # of the run's steps, so both loops follow the same schedule


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per loop and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (workers start, caches fill)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="loader workers of every loop")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--data-dir", default=None, help="a MiniPlaces-layout folder instead of a generated stand-in")
    parser.add_argument("--no-variants", action="store_true", help="only the plain loop and ours (default options)")


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


def plain_loop(net: torch.nn.Module, dataset: Dataset, args, total_steps: int) -> float:
    """Images/s of a hand-written training loop after `args.warmup` steps."""
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=RECIPE["lr"], momentum=RECIPE["momentum"], weight_decay=RECIPE["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(round(total_steps * WARMUP_FRACTION), total_steps))
    net.train()
    start = None
    for step, (images, labels) in enumerate(loader):
        if step == args.warmup:
            start = time.perf_counter()
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss.item()
        if step + 1 == total_steps:
            break
    return args.steps * args.batch_size / (time.perf_counter() - start)


class StepClock(L.Callback):
    """Wall clock from the start of batch `warmup` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.end = time.perf_counter()


def lightning_fit(initial: dict, data_dir: Path, args, total_steps: int, augment_on: str, channels_last: bool) -> float:
    """Images/s of `Trainer.fit` through the real DataModule after `args.warmup` steps."""
    # The same warm-up length in steps as the plain loop (warmup_epochs counts epochs).
    steps_per_epoch = len(read_labelled_list(data_dir / "train.txt", args.classes)) // args.batch_size
    warmup_epochs = WARMUP_FRACTION * total_steps / steps_per_epoch
    model = SimpleNet(num_classes=args.classes, warmup_epochs=warmup_epochs, channels_last=channels_last, **RECIPE)
    model.net.load_state_dict(initial)
    data = MiniPlacesDataModule(
        data_dir=str(data_dir), batch_size=args.batch_size, num_workers=args.workers, num_classes=args.classes,
        augment_on=augment_on,
    )  # fmt: skip
    clock = StepClock(args.warmup)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=total_steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[clock],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    return args.steps * args.batch_size / (clock.end - clock.start)


def run(args: argparse.Namespace) -> list[dict]:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
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

        loops = {"plain PyTorch loop (v2 per image in workers)": lambda: plain_loop(fresh_net(), plain_set, args, total_steps)}
        loops["ours: Trainer.fit, augment_on=auto (worker_batched)"] = lambda: lightning_fit(initial, data_dir, args, total_steps, "auto", False)
        if not args.no_variants:
            loops["ours: augment_on=device (on the training threads)"] = lambda: lightning_fit(initial, data_dir, args, total_steps, "device", False)
            loops["ours: auto + channels_last"] = lambda: lightning_fit(initial, data_dir, args, total_steps, "auto", True)
        rates: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(args.rounds):
            for name, loop in loops.items():
                rates[name].append(loop())
    reference = max(rates["plain PyTorch loop (v2 per image in workers)"])
    return [
        {
            "loop": name,
            "images/s (best)": max(values),
            "vs plain loop": max(values) / reference,
            "rounds (images/s)": " ".join(f"{v:.0f}" for v in values),
        }
        for name, values in rates.items()
    ]
