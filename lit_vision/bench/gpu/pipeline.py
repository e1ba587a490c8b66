"""`bench gpu`, section "pipeline": a real `Trainer.fit` through `MiniPlacesDataModule`'s loader.

SimpleNet and ResNet18 (their recipes' batch sizes), bf16-mixed, `--workers` DataLoader workers,
without and with `data.cache` (decoded uint8 memory-mapped splits); on a GPU run also the cached
fit with channels-last weights and a compiled network. Each fit as `fits.py` runs it: its
start-up and its timed window on two rows.
"""

from __future__ import annotations

from lit_vision.bench.gpu.fits import SKIPPED_STEPS, Fit, describe, fit_data, run_fits

PIPELINE_ARCHS = ("SimpleNet", "ResNet18")
FAST_OPTIONS = {"channels_last": True, "compile": True}


def pipeline_fit(arch: str, cache: bool, options: dict) -> Fit:
    return Fit(
        label={"arch": arch, "cache": "yes" if cache else "no", "model options": describe(options)},
        name=f"{arch} cache={cache} {describe(options)}",
        arch=arch,
        model_options=options,
        # The loader path, named: this section times it whatever data.placement: auto picks.
        data_options={"cache": cache, "placement": "loader"},
    )


def pipeline_rows(args, results: dict, deadline: float, rows: list, notes: list) -> None:
    with fit_data(args, notes, "lit_vision_gpu_bench_") as data:
        # The recipes as written, from JPEGs and from the cache; then the cached run with the
        # model options that the pure-speed section shows paying off on a GPU.
        runs = [(arch, cache, {}) for arch in PIPELINE_ARCHS for cache in (False, True)]
        if not args.smoke:
            runs += [(arch, True, FAST_OPTIONS) for arch in PIPELINE_ARCHS]
        notes.append(
            f"bf16-mixed, {args.workers} workers, device augmentation, {args.image_size}px crops; each fit on two rows: "
            f"its start-up (set-up s = fit() to the first step, cache build included; first steps s = the first "
            f"{SKIPPED_STEPS} steps, compilation included) and its timed window"
        )
        run_fits([pipeline_fit(*run) for run in runs], args, results, deadline, rows, data, "pipeline")
