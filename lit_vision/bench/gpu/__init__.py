"""Everything measured in one run on a GPU: model speeds, the input pipeline, the operators.

    PYTHONPATH=. python3 -m lit_vision.bench gpu --out results/      # budget 480 s + start-up, on a GPU
    PYTHONPATH=. python3 -m lit_vision.bench gpu --smoke --out /tmp/g  # the same code paths, CPU, minutes

Sections (each in its own try/except: an error lands in its rows and the run carries on;
`gpu_bench.json` and `gpu_bench.md` in `--out` are rewritten after every section, so a run
cut short still leaves every finished section on disk):
1. models — training images/s of every registered architecture from an in-memory uint8
   batch (the LightningModule's forward + cross-entropy + backward + optimiser step, no
   Trainer, no data loading): fp32, bf16 autocast, bf16 + channels_last, and
   bf16 + channels_last + torch.compile for `--compile-archs` (compile time separate).
2. pipeline — a real `Trainer.fit` through `MiniPlacesDataModule` on a generated stand-in
   (or `--data-dir`), bf16, with and without the decoded cache: images/s and GPU-busy share.
2b. resident — the same fit with `data.placement: resident` and `model.compile: step` beside the
   loader path, for SimpleNet, ResNet18 and simplenet_robust, with the projected 60-epoch time.
   Every fit of 2 and 2b reports its start-up (compilation and warm-up included) on its own row,
   outside the timed window; a compiling fit may take `--compile-reserve-s` to start up (see
   `budget.py`).
3. ops — hand-written convolution (implicit-GEMM Triton kernels on CUDA) vs cuDNN per SimpleNet
   layer in fp32 and bf16, SimpleNet's training step with `conv: hand_written`
   (`conv_algorithm: auto`) vs `conv: torch`, hand-written attention vs SDPA at ViT's shapes.
4. attack — PGD images/s and an adversarial-training epoch vs a clean one
   (`python -m lit_vision.bench attack`, run from here).
`--budget-s` is shared among the sections (unspent time flows to the later ones); rows stop
early when their share is spent, and a section still running at the end of its share (plus a
short grace taken from the later sections, never past the whole budget) is cut there: its
finished rows are kept and its status says so. Without a GPU (`--device auto` finding none) it
says so at once and measures nothing: `--smoke` checks the code paths on the CPU, `--device cpu`
runs the full sizes on the CPU on purpose. No jsonargparse is imported (the GPU machine has none).
See docs/gpu-benchmark.md for what each column means.

Files, one a section: `model_speed.py` (1), `pipeline.py` (2), `resident.py` (2b), `ops.py` (3),
`attack.py` (4); shared by 2 and 2b: `fits.py` (one timed `Trainer.fit`) and `recipes.py` (an
architecture as its recipe builds it); `budget.py` (how the budget is shared and enforced),
`report.py` (the header and the written files). This file: the options and the section loop.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import traceback
from pathlib import Path

import torch

from lit_vision.bench.gpu.attack import attack_section_rows
from lit_vision.bench.gpu.budget import SectionTimeUp, hard_stop, section_stop
from lit_vision.bench.gpu.model_speed import model_speed_rows
from lit_vision.bench.gpu.ops import ops_rows
from lit_vision.bench.gpu.pipeline import pipeline_rows
from lit_vision.bench.gpu.report import collect_header, write_results
from lit_vision.bench.gpu.resident import resident_rows

NO_GPU = (
    "bench gpu: no GPU here (torch.cuda.is_available() is False), so nothing was measured; it times CUDA "
    "kernels, bf16 autocast and cuDNN on a GPU. To check every code path on this CPU (minutes): "
    "`python -m lit_vision.bench gpu --smoke --out /tmp/gpu_smoke`; for a deliberate full-size CPU run (slow, "
    "bounded by --budget-s): `--device cpu`."
)

# (section name, title, share of the budget, function(args, results, deadline, rows, notes) that appends its rows and notes)
SECTIONS = [
    ("models", "Training speed per architecture (in-memory batch, no Trainer)", 0.40, model_speed_rows),
    ("pipeline", "End to end: Trainer.fit through MiniPlacesDataModule (bf16)", 0.30, pipeline_rows),
    # The largest share: 9 fits, 3 of them compiling their step (see budget.py).
    ("resident", "End to end: data resident on the device, compiled step, vs the loader (bf16)", 0.50, resident_rows),
    ("ops", "Operators: hand-written conv vs cuDNN, manual attention vs SDPA", 0.10, ops_rows),
    ("attack", "PGD images/s and the cost of adversarial training", 0.05, attack_section_rows),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="gpu_bench", help="folder for gpu_bench.json and gpu_bench.md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1-2 steps: checks every code path on the CPU")
    parser.add_argument("--budget-s", type=float, default=None, help="total seconds, shared among the sections (default 480; smoke 900)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cuda or cpu")
    parser.add_argument("--sections", default="models,pipeline,resident,ops,attack", help="comma-separated subset to run")
    parser.add_argument("--archs", default="all", help="comma-separated architectures (default: every registered one)")
    parser.add_argument(
        "--compile-archs", default=None, help="architectures also timed under torch.compile (default simplenet,resnet18; smoke: none; also: all)"
    )
    parser.add_argument(
        "--compile-reserve-s", type=float, default=None,
        help="start-up allowance of a compiling fit, and the least section time a model compile needs (default 60; smoke 300)",
    )
    parser.add_argument("--batch-size", type=int, default=0, help="override every recipe's batch size (0: the recipe's)")
    parser.add_argument("--image-size", type=int, default=None, help="pixels (default 128; smoke 32)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per speed row (default 30; smoke 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; smoke 1)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default min(16, cores); smoke 1)")
    parser.add_argument(
        "--fit-seconds", type=float, default=None,
        help="longest timed window of each end-to-end fit, start-up not included (default 10; smoke: --steps steps)",
    )
    parser.add_argument("--data-dir", default=None, help="a MiniPlaces-layout folder to read instead of a generated stand-in")
    parser.add_argument(
        "--profile", action="store_true",
        help="also write Lightning's SimpleProfiler summary of each end-to-end fit (host time per hook) to OUT/profile_*.txt",
    )
    parser.add_argument(
        "--standin-per-class", type=int, default=None, help="stand-in training images per class (default 100 of 100 classes; smoke 8 of 4)"
    )


def resolve_defaults(args: argparse.Namespace) -> None:
    """Fill the options left unset with the full-run or the smoke value."""
    smoke = args.smoke
    defaults = {
        "compile_archs": "none" if smoke else "simplenet,resnet18",
        "image_size": 32 if smoke else 128,
        "steps": 2 if smoke else 30,
        "warmup": 1 if smoke else 5,
        "workers": 1 if smoke else min(16, os.cpu_count() or 1),
        "fit_seconds": 60.0 if smoke else 10.0,
        "budget_s": 900.0 if smoke else 480.0,
        # A CPU compiles the step in tens of seconds, more on a busy machine.
        "compile_reserve_s": 300.0 if smoke else 60.0,
        "standin_per_class": 8 if smoke else 100,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.repeats = 2 if smoke else 10  # timed calls per operator
    if smoke and not args.batch_size:
        args.batch_size = 4
    args.standin_classes = 4 if smoke else 100
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> list[dict]:
    if args.device == "auto" and not args.smoke and not torch.cuda.is_available():
        print(NO_GPU, flush=True)
        return []
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"bench gpu: --device {args.device}, but there is no GPU here. {NO_GPU.split('; ', 1)[1]}")
    resolve_defaults(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"header": collect_header(args), "sections": {}}
    print(f"gpu bench on {results['header']['device']}, budget {args.budget_s:.0f} s, out {out}", flush=True)
    start = time.monotonic()
    previous_handler = signal.signal(signal.SIGTERM, _terminated)
    try:
        _run_sections(args, results, out, start + args.budget_s)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    results["header"]["total_seconds"] = time.monotonic() - start
    md_path = write_results(results, out)
    print(md_path.read_text(), flush=True)
    print(f"wrote {out / 'gpu_bench.json'} and {md_path}", flush=True)
    return [
        {"section": name, "status": s["status"], "rows": len(s["rows"]), "seconds": s["seconds"]}
        for name, s in results["sections"].items()
    ]


def _terminated(signum, frame) -> None:
    # `timeout` sends SIGTERM: unwind through the sections' `finally`, which writes the rows
    # finished so far (Python's default would end the process on the spot).
    raise SystemExit(f"terminated by signal {signum}")


def _run_sections(args: argparse.Namespace, results: dict, out: Path, end: float) -> None:
    wanted = {s.strip() for s in args.sections.split(",") if s.strip()}
    chosen = [section for section in SECTIONS if section[0] in wanted]
    for index, (name, title, share, function) in enumerate(chosen):
        # This section's share of what is left; time a section leaves unspent flows onwards.
        remaining_shares = sum(s[2] for s in chosen[index:])
        deadline = time.monotonic() + max(0.0, end - time.monotonic()) * share / remaining_shares
        section = {"title": title, "status": "running", "error": None, "rows": [], "notes": []}
        results["sections"][name] = section
        print(f"== {name}: {title} ({deadline - time.monotonic():.0f} s)", flush=True)
        section_start = time.monotonic()
        share_s = max(0.0, deadline - section_start)
        stop_at = section_stop(deadline, share_s, end)
        try:
            with hard_stop(stop_at - time.monotonic()):
                function(args, results, deadline, section["rows"], section["notes"])
            failed = [row for row in section["rows"] if row.get("error")]
            section["status"] = "ok" if not failed else f"{len(failed)} of {len(section['rows'])} rows failed"
        except SectionTimeUp:
            section["status"] = f"cut at the end of its budget share ({share_s:.0f} s); finished rows kept"
            print(f"   section {name}: {section['status']}", flush=True)
        except BaseException as error:  # a GPU run has no second chance: record, go on
            section["status"] = "error"
            section["error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=6)}"
            print(f"   section {name} failed: {type(error).__name__}: {error}", flush=True)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                section["status"] = "interrupted"
                raise  # after `finally` has written every row finished so far
        finally:
            section["seconds"] = time.monotonic() - section_start
            _release_memory(args.device)
            write_results(results, out)


def _release_memory(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()

