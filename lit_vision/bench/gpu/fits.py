"""`bench gpu`, sections "pipeline" and "resident": one timed `Trainer.fit`, and the loop over a
section's fits that both sections share.

Each fit: bf16-mixed, `--workers` DataLoader workers, on a stand-in generated into a temporary
folder (100 classes, smoke 4, × `--standin-per-class` 128-px JPEGs; ~400 images/s on one core) or
the MiniPlaces folder given with `--data-dir`; no logger, no checkpoints, no progress bar, no
validation. It is reported on two rows: its start-up with the first `SKIPPED_STEPS` steps
(compilation included), then its timed window, which closes after the fit's allowance (see
`budget.py`: `--fit-seconds` at most; Lightning's `max_time` caps the whole fit at start-up
allowance + window). A fit that fails is reported on one row with its error, and the next one
runs.

GPU busy, two ways: "GPU busy (NVML)" is the mean of `torch.cuda.utilization()` (NVML's share
of time a kernel was running) sampled every 50 ms during the timed steps; "GPU busy (derived)"
is (pure-model bf16 step time from section "models" × timed steps) / timed wall time.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from lightning.pytorch.profilers import SimpleProfiler

from lit_vision.bench.gpu.budget import Allowance, allowance
from lit_vision.bench.gpu.recipes import build_module
from lit_vision.bench.gpu.report import progress
from lit_vision.bench.timing import synchronize
from lit_vision.data import MiniPlacesDataModule, generate_standin

SKIPPED_STEPS = 5  # untimed first steps: worker start-up, cuDNN autotuning, cache warm-up


class UtilizationSampler(threading.Thread):
    """Samples NVML's GPU utilisation (percent) every `interval` seconds until stopped."""

    def __init__(self, device: torch.device, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.device, self.interval, self.samples = device, interval, []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.samples.append(torch.cuda.utilization(self.device))


class FitTimer(L.Callback):
    """Three moments of a fit: its first step starting (set-up done), step SKIPPED_STEPS starting
    (start-up and warm-up done, device-synchronised: the timed window opens) and the end of
    training (device-synchronised); the steps in between, and NVML samples over the same window.
    With `timed_s`, training stops once the window has lasted that long (checked on the host
    after each step, no synchronisation), so the start-up, however long, never eats the window."""

    def __init__(self, device: torch.device, timed_s: float | None = None) -> None:
        self.device = device
        self.timed_s = timed_s
        self.first_step = self.start = self.end = 0.0
        self.steps = 0
        self.sampler: UtilizationSampler | None = None
        self.nvml_error = ""

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if not self.first_step:
            self.first_step = time.perf_counter()
        if trainer.global_step == SKIPPED_STEPS and not self.start:
            synchronize(self.device)
            self.start = time.perf_counter()
            if self.device.type == "cuda":
                try:
                    torch.cuda.utilization(self.device)
                    self.sampler = UtilizationSampler(self.device)
                    self.sampler.start()
                except Exception as error:  # noqa: BLE001 — no pynvml: the derived figure remains
                    self.nvml_error = f"{type(error).__name__}: {error}"

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        if self.start:
            self.steps += 1
            if self.timed_s is not None and time.perf_counter() - self.start >= self.timed_s:
                trainer.should_stop = True

    def on_train_end(self, trainer, module) -> None:
        synchronize(self.device)
        self.end = time.perf_counter()
        self.close()

    def close(self) -> None:
        """Stop what the timer started; safe to call again (the caller's `finally`, after a
        failed fit that never reached `on_train_end`)."""
        if self.sampler is not None:
            self.sampler.stopped.set()
            self.sampler.join()
            self.sampler = None


def prepare_data(args, notes: list, workdir: Path) -> tuple[Path, int]:
    """The folder to read and its class count: `--data-dir`, or a freshly generated stand-in."""
    if args.data_dir:
        data_dir = Path(args.data_dir)
        categories = data_dir / "categories.txt"
        num_classes = sum(1 for line in categories.read_text().splitlines() if line.strip()) if categories.is_file() else 100
        notes.append(f"data: {data_dir} ({num_classes} classes)")
        return data_dir, num_classes
    start = time.perf_counter()
    data_dir = generate_standin(
        workdir / "standin", num_classes=args.standin_classes, train_per_class=args.standin_per_class,
        val_per_class=1, test_images=0,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    count = args.standin_classes * (args.standin_per_class + 1)
    notes.append(
        f"data: generated stand-in, {args.standin_classes} classes × {args.standin_per_class} train images "
        f"(128 px JPEG), {count} images in {seconds:.1f} s ({count / seconds:.0f} images/s)"
    )
    return data_dir, args.standin_classes


def pure_step_seconds(results: dict, arch: str) -> float | None:
    """The bf16 step time of `arch` measured in section "models", if it was."""
    for row in results["sections"].get("models", {}).get("rows", []):
        if row.get("arch") == arch and row.get("variant") == "bf16" and row.get("ms/step"):
            return row["ms/step"] / 1e3
    return None


@dataclass(frozen=True)
class Fit:
    """One end-to-end fit of a section: `label` names it on each of its rows (skipped and failed
    ones too) and `name` in the progress line; `data_options` go to the DataModule (`cache`,
    `placement`); `callbacks` builds the Trainer's extra callbacks when the fit runs."""

    label: dict
    name: str
    arch: str
    model_options: dict = field(default_factory=dict)
    data_options: dict = field(default_factory=dict)
    callbacks: Callable[[], tuple] = tuple


class FitData(NamedTuple):
    workdir: Path  # temporary: the stand-in, the decoded cache
    data_dir: Path
    num_classes: int


@contextlib.contextmanager
def fit_data(args, notes: list, prefix: str) -> Iterator[FitData]:
    """A temporary folder with the data every fit of a section reads; removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        data_dir, num_classes = prepare_data(args, notes, workdir)
        yield FitData(workdir, data_dir, num_classes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_fits(
    fits: list[Fit], args, results: dict, deadline: float, rows: list, data: FitData, section: str,
    timer_type: type[FitTimer] = FitTimer, finish: Callable[[Fit, dict, FitTimer], None] | None = None,
) -> None:
    """Each fit in turn within its allowance of the time left before `deadline`, on two rows
    appended to `rows` (start-up, then timed) or on one row that says why it was skipped or
    failed. `finish` adds a section's own columns to the timed row (its timer closed)."""
    for index, fit in enumerate(fits):
        share = allowance(
            [compiles(f.model_options) for f in fits], index, deadline - time.monotonic(), args.fit_seconds,
            args.compile_reserve_s,
        )  # fmt: skip
        if isinstance(share, str):
            rows.append({**fit.label, "skipped": share})
            continue
        timer = timer_type(torch.device(args.device))
        try:
            row, startup = measure_fit(fit, args, results, data, share, timer=timer, section=section)
            timer.close()  # before `finish` reads it (on_train_end closed it already)
            if finish is not None:
                finish(fit, row, timer)
            rows.extend([startup, row])
        except Exception as error:  # noqa: BLE001 — one failing fit must not stop the others
            row = {**fit.label, "error": f"{type(error).__name__}: {error}"[:500]}
            rows.append(row)
        finally:
            timer.close()  # whatever happened (SectionTimeUp included)
        print(f"   {fit.name}: {progress(row)}", flush=True)


def measure_fit(
    fit: Fit, args, results: dict, data: FitData, allowance: Allowance, timer: FitTimer, section: str
) -> tuple[dict, dict]:
    """One timed fit within `allowance`: (the timed row, the start-up row). `timer` times it (its
    `timed_s` is set here); `section` names the profile file (`--profile`). The caller closes
    the timer in a `finally`."""
    device = torch.device(args.device)
    callbacks = fit.callbacks()  # before the seed, as the module's initial weights depend on it
    torch.manual_seed(0)
    options = fit.model_options
    module, batch = build_module(fit.arch, args, data.num_classes, **options)
    crop = args.image_size
    data_options = {"cache": False, **fit.data_options}
    datamodule = MiniPlacesDataModule(
        data_dir=str(data.data_dir), batch_size=batch, num_workers=args.workers, num_classes=data.num_classes,
        crop_size=crop, resize_size=max(crop, round(crop * 144 / 128)), cache_dir=str(data.workdir / "cache"),
        **data_options,
    )  # fmt: skip
    pure = pure_step_seconds(results, fit.arch)
    # The timer closes the window after `allowance.timed_s` (smoke: after `--steps` steps);
    # max_time is only the cap of the whole fit, start-up allowance included.
    max_steps = SKIPPED_STEPS + (args.steps if args.smoke else 100_000)
    timer.timed_s = None if args.smoke else allowance.timed_s
    profiler = SimpleProfiler() if args.profile else None
    trainer = L.Trainer(
        profiler=profiler,
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision="bf16-mixed",
        max_steps=max_steps, max_time={"seconds": allowance.total_s}, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer, *callbacks],
    )  # fmt: skip
    called = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    if not timer.steps:
        raise RuntimeError(
            f"the fit ended after {trainer.global_step} steps, {time.perf_counter() - called:.0f} s, before its "
            f"timed window opened (start-up allowance {allowance.startup_s:.0f} s"
            f"{': raise --compile-reserve-s' if compiles(options) else ''})"
        )
    wall = timer.end - timer.start
    if profiler is not None:
        # Host seconds per Lightning hook: on an accelerator that runs asynchronously, the hooks
        # that wait (a synchronisation) or that cost Python time show up here.
        resident = data_options.get("placement") == "resident"
        where = "resident" if resident else "cache" if data_options["cache"] else "jpeg"
        name = f"profile_{section}_{fit.arch}_{where}_{describe(options)}{'_adv' if callbacks else ''}.txt"
        (Path(args.out) / name).write_text(profiler.summary())
    head = {**fit.label, "model options": describe(options)}
    row = {
        **head,
        "phase": "timed",
        "workers": args.workers,
        "batch": batch,
        "images/s": timer.steps * batch / wall,
        "steps timed": timer.steps,
        "timed s": wall,
    }
    if timer.sampler is not None and timer.sampler.samples:
        row["GPU busy (NVML)"] = statistics.mean(timer.sampler.samples) / 100
    elif device.type == "cuda":
        row["GPU busy (NVML)"] = f"n/a ({timer.nvml_error or 'no samples'})"
    if pure:
        row["GPU busy (derived)"] = min(1.0, pure * timer.steps / wall)
    startup = {
        **head,
        "phase": f"start-up + {SKIPPED_STEPS} warm-up steps (untimed)",
        "set-up s": timer.first_step - called,
        "first steps s": timer.start - timer.first_step,
        "allowance s": allowance.startup_s,
    }
    return row, startup


def compiles(options: dict) -> bool:
    """Whether these model options compile (the network or the step)."""
    return bool(options.get("compile"))


def describe(options: dict) -> str:
    return "+".join(name if on is True else f"{name}={on}" for name, on in options.items() if on) or "recipe"
