"""`bench gpu`, section "resident": end to end with the data on the device and one compiled step.

The same `Trainer.fit` as section "pipeline" (`fits.py`: bf16-mixed, stand-in or `--data-dir`,
no logger, checkpoints, progress bar or validation), side by side for SimpleNet, ResNet18 and the
adversarial-training recipe `simplenet_robust` (configs/simplenet_robust.yaml: its model options
and its `AdversarialTraining` callback, read from the file):

- `loader+cache` — today's fastest path: loader workers read the decoded cache, batches are
  copied to the GPU each step, the model as the recipe has it;
- `resident` — `data.placement: resident` (the decoded split held on the GPU, batches gathered
  there) with channels-last weights;
- `resident+compile step` — the same plus `model.compile: step` (compiled loss + backward and
  optimiser update, learning rate in a tensor, CUDA graphs).

Columns beyond section "pipeline"'s: "60-epoch min" = 60 × `MINIPLACES_TRAIN` images / images/s
(training steps only; validation and start-up not included), and on CUDA "host syncs /100 steps":
the synchronising calls `torch.cuda.set_sync_debug_mode("warn")` reports during the timed steps
(epoch ends included), per 100 steps. "GPU busy (derived)" compares with the pure bf16 step of
section "models" (uncompiled), so a compiled row can exceed what it means: read NVML's figure.
Each fit is reported on two rows, its start-up (compilation and warm-up included) and its timed
window; a compiling fit may take `--compile-reserve-s` to start up (see `budget.py`).
In `--smoke`, SimpleNet's three paths (its compiled step included, compiled for the CPU: tens
of seconds) and simplenet_robust's two uncompiled ones; ResNet18's are left out.
"""

from __future__ import annotations

import warnings

import torch

from lit_vision.bench.gpu.fits import SKIPPED_STEPS, Fit, FitTimer, fit_data, run_fits
from lit_vision.bench.gpu.recipes import robust_recipe

MINIPLACES_TRAIN = 100_000  # images in MiniPlaces' training split
EPOCHS = 60  # the CNN recipes' schedule (configs/trainer/gpu.yaml)
LOADER = {"cache": True, "placement": "loader"}
RESIDENT = {"placement": "resident"}
FAST = {"channels_last": True}
STEP = {"channels_last": True, "compile": "step"}
# (row label, architecture, adversarial recipe?, data options, model options)
RUNS = [
    ("loader+cache", "SimpleNet", False, LOADER, {}),
    ("resident", "SimpleNet", False, RESIDENT, FAST),
    ("resident+compile step", "SimpleNet", False, RESIDENT, STEP),
    ("loader+cache", "ResNet18", False, LOADER, {}),
    ("resident", "ResNet18", False, RESIDENT, FAST),
    ("resident+compile step", "ResNet18", False, RESIDENT, STEP),
    ("loader+cache", "SimpleNet", True, LOADER, {}),
    ("resident", "SimpleNet", True, RESIDENT, FAST),
    ("resident+compile step", "SimpleNet", True, RESIDENT, STEP),
]


class SyncCountingTimer(FitTimer):
    """`FitTimer`, plus on CUDA the synchronising calls made during the timed steps. The sync
    debug mode it turns on is turned off in `close`, which runs at the end of training and, for
    a fit that fails or is cut first, in the caller's `finally`: left on, it would warn on every
    synchronisation of every later section."""

    def __init__(self, device: torch.device, timed_s: float | None = None) -> None:
        super().__init__(device, timed_s)
        self.syncs: int | None = None
        self._catcher = self._records = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        starting = not self.start
        super().on_train_batch_start(trainer, module, batch, batch_idx)
        if starting and self.start and self.device.type == "cuda":
            self._catcher = warnings.catch_warnings(record=True)
            self._records = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def close(self) -> None:
        if self._catcher is not None:
            try:
                torch.cuda.set_sync_debug_mode(0)
            finally:
                self._catcher.__exit__(None, None, None)
                self.syncs = sum("synchroniz" in str(record.message) for record in self._records)
                self._catcher = None
        super().close()


def adversarial_callback(init_args: dict):
    from lit_vision.callbacks.adversarial_training import AdversarialTraining

    return AdversarialTraining(**init_args)


def chosen_runs(args) -> list[tuple]:
    """Every run on a GPU; in `--smoke` SimpleNet's three paths (its compiled step included, so
    that the CPU checks the row a GPU run depends on) and simplenet_robust's two uncompiled ones."""
    runs = []
    for run in RUNS:
        compiled = run[4].get("compile") == "step"
        if args.smoke and (run[1] == "ResNet18" or (compiled and run[2])):  # section "pipeline" fits ResNet18 already
            continue
        runs.append(run)
    return runs


def resident_fit(
    label: str, arch: str, robust: bool, data_options: dict, options: dict, robust_model: dict, robust_attack: dict
) -> Fit:
    """One run of `RUNS`; the adversarial recipe's model options first, the path's on top."""
    recipe_name = "simplenet_robust" if robust else arch
    return Fit(
        label={"recipe": recipe_name, "path": label},
        name=f"{recipe_name} {label}",
        arch=arch,
        model_options={**(robust_model if robust else {}), **options},
        data_options=data_options,
        callbacks=(lambda: (adversarial_callback(robust_attack),)) if robust else tuple,
    )


def add_projection(fit: Fit, row: dict, timer: SyncCountingTimer) -> None:
    """The resident section's own columns on a fit's timed row."""
    if fit.data_options["placement"] == "resident":
        row["workers"] = "none"
    row["60-epoch min"] = EPOCHS * MINIPLACES_TRAIN / row["images/s"] / 60
    if timer.syncs is not None:
        row["host syncs /100 steps"] = 100 * timer.syncs / timer.steps


def resident_rows(args, results: dict, deadline: float, rows: list, notes: list) -> None:
    with fit_data(args, notes, "lit_vision_gpu_resident_") as data:
        robust_model, robust_attack = robust_recipe()
        notes.append(
            f"bf16-mixed, {args.image_size}px crops, device augmentation; loader rows: {args.workers} workers reading "
            f"the decoded cache. Each fit on two rows: its start-up (set-up s = fit() to the first step: cache "
            f"build, copy to the device; first steps s = the first {SKIPPED_STEPS} steps, compilation included) "
            f"and its timed window. 60-epoch min = {EPOCHS} × {MINIPLACES_TRAIN:,} images / images/s (training "
            "steps only). simplenet_robust = configs/simplenet_robust.yaml's model and AdversarialTraining "
            f"({robust_attack.get('steps')} PGD steps on every batch)"
        )
        fits = [resident_fit(*run, robust_model, robust_attack) for run in chosen_runs(args)]
        run_fits(fits, args, results, deadline, rows, data, "resident", timer_type=SyncCountingTimer, finish=add_projection)
