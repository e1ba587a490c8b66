"""`bench gpu`, section "models": training images/s of each architecture, pure model speed.

One step = the LightningModule's own forward (normalisation included) + cross-entropy + backward
+ optimiser step, on one in-memory uint8 batch already on the device; no Trainer, no data
loading, no metrics. Each architecture is built as its recipe in configs/ builds it
(`recipes.py`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from lit_vision.bench.gpu.recipes import build_module
from lit_vision.bench.gpu.report import progress
from lit_vision.bench.timing import one_call_seconds, time_calls
from lit_vision.models.registry import list_models

# (row name, bf16 autocast, channels_last, torch.compile)
VARIANTS = [
    ("fp32", False, False, False),
    ("bf16", True, False, False),
    ("bf16+channels_last", True, True, False),
    ("bf16+channels_last+compile", True, True, True),
]


def architectures(args: argparse.Namespace) -> list[str]:
    registered = list_models()
    if args.archs == "all":
        return registered
    wanted = {a.strip().lower() for a in args.archs.split(",") if a.strip()}
    return [name for name in registered if name.lower() in wanted]


def random_batch(batch: int, size: int, num_classes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    return images.to(device), labels.to(device)


def training_step_fn(module, images: torch.Tensor, labels: torch.Tensor, bf16: bool) -> Callable[[], None]:
    optimizer = module.build_optimizer()
    smoothing = float(module.hparams.get("label_smoothing", 0.0))
    device_type = images.device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(module(images), labels, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure_variant(arch: str, variant: tuple, args: argparse.Namespace, deadline: float) -> dict:
    name, bf16, channels_last, compile_ = variant
    device = torch.device(args.device)
    num_classes = 100
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    module, batch = build_module(arch, args, num_classes, channels_last=channels_last, compile=compile_)
    module.to(device).train()
    module.configure_model()  # applies channels_last and compile, as Lightning does before fitting
    images, labels = random_batch(batch, args.image_size, num_classes, device)
    step = training_step_fn(module, images, labels, bf16)
    row = {"arch": arch, "variant": name, "batch": batch}
    if compile_:
        # The first call compiles (forward and backward graphs); its time is the compile cost.
        row["compile s"] = one_call_seconds(step, device)
    seconds, steps = time_calls(step, device, args.warmup, args.steps, deadline)
    row.update({"images/s": batch / seconds, "ms/step": seconds * 1e3, "steps timed": steps})
    if device.type == "cuda":
        row["peak GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def model_speed_rows(args, results: dict, deadline: float, rows: list, notes: list) -> None:
    archs = architectures(args)
    compile_archs = {a.strip().lower() for a in args.compile_archs.split(",") if a.strip()}
    plain = [(arch, v) for arch in archs for v in VARIANTS if not v[3]]
    # Compiles go last: a slow compile can then only cost itself, never the plain rows.
    compiled = [(arch, v) for arch in archs for v in VARIANTS if v[3] and {arch.lower(), "all"} & compile_archs]
    notes.append(
        f"images {args.image_size}px uint8, 100 classes; batch = the recipe's (configs/); "
        f"{args.warmup} warm-up steps, then up to {args.steps} timed; compiled: {', '.join(a for a, _ in compiled) or 'none'}"
    )
    todo = plain + compiled
    fp32 = {}
    for index, (arch, variant) in enumerate(todo):
        left = deadline - time.monotonic()
        row_deadline = time.monotonic() + left / (len(todo) - index)
        if left <= 0:
            rows.append({"arch": arch, "variant": variant[0], "skipped": "section budget spent"})
            continue
        if variant[3] and left < args.compile_reserve_s:
            rows.append({"arch": arch, "variant": variant[0], "skipped": f"only {left:.0f} s left (< --compile-reserve-s)"})
            continue
        try:
            row = measure_variant(arch, variant, args, row_deadline)
            if variant[0] == "fp32":
                fp32[arch] = row["images/s"]
            if arch in fp32:
                row["speed-up vs fp32"] = row["images/s"] / fp32[arch]
        except Exception as error:  # noqa: BLE001 — one failing row must not stop the others
            row = {"arch": arch, "variant": variant[0], "error": f"{type(error).__name__}: {error}"[:500]}
        rows.append(row)
        print(f"   {arch} {variant[0]}: {progress(row)}", flush=True)
