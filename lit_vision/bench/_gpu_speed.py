"""`bench gpu`, section "models": training images/s of each architecture, pure model speed.

One step = the LightningModule's own forward (normalisation included) + cross-entropy + backward
+ optimiser step, on one in-memory uint8 batch already on the device; no Trainer, no data
loading, no metrics. Each architecture is built as its recipe in configs/ builds it (batch size
and model arguments; ResNet18 from random weights: nothing can be downloaded on the GPU machine).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

import lit_vision
import lit_vision.models
from lit_vision.bench._gpu_report import progress
from lit_vision.cli.config_files import CONFIG_SUFFIXES, config_file, read_config
from lit_vision.errors import LitVisionError
from lit_vision.models.registry import list_models

CONFIG_DIR = Path(lit_vision.__file__).resolve().parent.parent / "configs"
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


def recipe(arch: str) -> tuple[int, dict]:
    """(batch size, model init_args) of the recipe in configs/ for `arch`: the file named after
    it if there is one, else the first whose model is `arch`. (256, {}) when none is readable."""
    try:
        candidates = sorted(CONFIG_DIR.glob("*.yaml"), key=lambda p: (p.stem != arch.lower(), p.name))

        def section(config: dict, key: str, recipe_file: Path) -> dict:
            # A recipe names a shared piece by its path (`data: data/miniplaces.yaml`) or inlines it.
            value = config.get(key) or {}
            if isinstance(value, str) and value.endswith(CONFIG_SUFFIXES):
                piece = config_file(value, recipe_file.parent)
                if piece is None:
                    raise LitVisionError(f"{recipe_file} names {key}: {value}, which is not a file beside it or here")
                value = read_config(piece) or {}
            return {"class_path": value} if isinstance(value, str) else value

        for path in candidates:
            config = read_config(path) or {}
            model = section(config, "model", path)
            if str(model.get("class_path", "")).rsplit(".", 1)[-1] == arch:
                batch = int(section(config, "data", path).get("batch_size", 256))
                return batch, dict(model.get("init_args") or {})
    except Exception as error:  # noqa: BLE001 — fall back to defaults, said in the row
        print(f"   could not read a recipe for {arch}: {error}", flush=True)
    return 256, {}


def build_module(arch: str, args: argparse.Namespace, num_classes: int, **options) -> tuple[torch.nn.Module, int]:
    """The architecture's LightningModule as its recipe builds it (on the CPU) and its batch size."""
    batch, init_args = recipe(arch)
    init_args.update(num_classes=num_classes, **options)
    if "weights" in init_args:
        init_args["weights"] = "none"
    if "img_size" in init_args:
        init_args["img_size"] = args.image_size
    init_args.pop("freeze_backbone_epochs", None)
    module = getattr(lit_vision.models, arch)(**init_args)
    return module, args.batch_size or batch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, steps: int, deadline: float) -> tuple[float, int]:
    """Seconds per call of `fn` over up to `steps` timed calls after `warmup` untimed ones,
    fewer (at least one) once `deadline` (time.monotonic) has passed. Device-synchronised."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start, done = time.perf_counter(), 0
    while done < steps:
        fn()
        done += 1
        if time.monotonic() > deadline:
            break
    synchronize(device)
    return (time.perf_counter() - start) / done, done


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
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        row["compile s"] = time.perf_counter() - start
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
