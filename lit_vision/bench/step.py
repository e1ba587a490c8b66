"""Lightning's overhead: a Lightning training step vs a plain PyTorch loop, same model and batches.

    python -m lit_vision.bench step                    # ~1 min on 2 cores
    python -m lit_vision.bench step --steps 40 --rounds 3 --image-size 128

The default image size is 64 px: a step then costs ~¼ of a 128-px step, so a fixed
per-step framework cost weighs ~4× more — the overhead shown is an upper bound for 128 px.

SimpleNet, batch 64, SGD with momentum and the warm-up/cosine schedule, the same in-memory
uint8 batches and the same initial weights for every run. Three loops, alternated round by
round (best round reported, after `--warmup` untimed steps in each). Time is this thread's CPU
time (`time.thread_time`) with torch on one thread: on a shared machine wall-clock time per
step varies by 3× from one minute to the next, while the CPU time a step consumes does not
(`--clock wall` to see wall-clock time instead). The loops:
- plain PyTorch: normalise, forward, cross-entropy, backward, optimiser and scheduler step;
- Lightning, minimal module: the same step in a LightningModule (the framework's own cost);
- Lightning, ImageClassifier: our system as trained by the CLI, with its top-1/top-5 metric
  updates and logging (framework + our bookkeeping).
"""

from __future__ import annotations

import argparse
import time
import warnings

import lightning as L
import torch
from torch.nn import functional as F

from lit_vision.bench.conditions import quiet_lightning, torch_threads
from lit_vision.models.classifier import WarmupCosine
from lit_vision.models.simplenet import SimpleNet

CLOCK = [time.thread_time]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loop and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64, help="pixels (128 = MiniPlaces; ~4× slower)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="thread CPU time or wall-clock time")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads during the runs")


def make_batches(count: int, batch: int, size: int, classes: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator),
            torch.randint(0, classes, (batch,), generator=generator),
        )
        for _ in range(count)
    ]


def optimizer_and_schedule(params, total_steps: int):
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(2, total_steps))
    return optimizer, schedule


def plain_loop(model: SimpleNet, batches, warmup: int) -> float:
    """Seconds per step of a hand-written loop over `batches` (the first `warmup` untimed)."""
    optimizer, schedule = optimizer_and_schedule(model.parameters(), len(batches))
    model.train()
    for i, (images, labels) in enumerate(batches):
        if i == warmup:
            start = CLOCK[0]()
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss.item()  # Lightning reads the loss every step too (progress/logging)
    return (CLOCK[0]() - start) / (len(batches) - warmup)


class MinimalModule(L.LightningModule):
    """The plain loop's step as a LightningModule, nothing else."""

    def __init__(self, model: SimpleNet) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch, batch_idx: int):
        images, labels = batch
        return F.cross_entropy(self.model(images), labels)

    def configure_optimizers(self):
        optimizer, schedule = optimizer_and_schedule(self.parameters(), self.trainer.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = CLOCK[0]()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.end = CLOCK[0]()
        self.steps = batch_idx + 1 - self.warmup


def lightning_loop(module: L.LightningModule, batches, warmup: int) -> float:
    timer = StepTimer(warmup)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fit(module, batches, timer)


def _fit(module: L.LightningModule, batches, timer: StepTimer) -> float:
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=len(batches), max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer],
    )  # fmt: skip
    # batch_size=None: the DataLoader hands over the prepared batches as they are.
    trainer.fit(module, torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False))
    return (timer.end - timer.start) / timer.steps


def run(args: argparse.Namespace) -> list[dict]:
    CLOCK[0] = time.thread_time if args.clock == "cpu" else time.perf_counter
    with quiet_lightning(), torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    batches = make_batches(args.warmup + args.steps, args.batch_size, args.image_size, args.classes)
    initial = SimpleNet(num_classes=args.classes).state_dict()

    def fresh_system() -> SimpleNet:
        system = SimpleNet(num_classes=args.classes, lr=0.01, weight_decay=1e-4, warmup_epochs=0)
        system.load_state_dict(initial)
        return system

    loops = {
        "plain PyTorch loop": lambda: plain_loop(fresh_system(), batches, args.warmup),
        "Lightning, minimal module": lambda: lightning_loop(MinimalModule(fresh_system()), batches, args.warmup),
        "Lightning, ImageClassifier (metrics + logging)": lambda: lightning_loop(fresh_system(), batches, args.warmup),
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            times[name].append(loop())
    reference = min(times["plain PyTorch loop"])
    rows = []
    for name, values in times.items():
        best = min(values)
        rows.append(
            {
                "loop": name,
                f"ms/step ({args.clock})": best * 1000,
                "images/s": args.batch_size / best,
                "overhead vs plain %": (best / reference - 1) * 100,
                "rounds (ms/step)": " ".join(f"{v * 1000:.0f}" for v in values),
            }
        )
    return rows
