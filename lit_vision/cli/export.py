"""`lit-vision export`: a checkpoint as a file that runs without this package, verified.

    lit-vision export --config configs/quickstart.yaml --ckpt_path checkpoints/quickstart/version_0/last.ckpt \\
        --format torchscript|exported|onnx [--output PATH] [--model.init_args.tta flip]

The model is rebuilt from the checkpoint alone (`lit_vision.checkpoints.load_model_from_checkpoint`:
its architecture, settings and weights); `--config` is optional and checked against it.

The exported model takes **uint8 RGB images** of shape (batch, 3, crop, crop) — pixel space, as
the DataModule delivers them, with `crop` the `data.crop_size` the checkpoint was trained at — and returns logits
(batch, num_classes). The ImageNet normalisation is inside (the model's first layer), and so is
flip TTA when `--model.init_args.tta flip` is given. The batch size is dynamic.

Formats: `torchscript` (torch.jit.trace, load with `torch.jit.load`), `exported`
(torch.export's .pt2, load with `torch.export.load(path).module()`), `onnx` (the TorchScript-based
ONNX exporter; needs the `onnx` package). After writing, the file is loaded back and run on a
batch of random images of two sizes other than the one it was traced with; the largest absolute
difference from the checkpoint's logits is printed, and above `--tolerance` the command exits 1
and leaves nothing at the output path (the file is written under a temporary name and renamed
only once verified). ONNX files are run with onnxruntime when it is installed, otherwise with
onnx's own reference evaluator (pure Python: slow on big models, exact enough for the check).

`--model.init_args.NAME VALUE` changes one of the model's settings (e.g. `tta flip`);
`--data.crop_size N` the image size, for a checkpoint that does not record it.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lit_vision.checkpoints import load_lightning_checkpoint, load_model_from_checkpoint
from lit_vision.cli.config_files import read_config, read_value
from lit_vision.errors import LitVisionError

FORMATS = {"torchscript": ".torchscript.pt", "exported": ".pt2", "onnx": ".onnx"}
TRACE_BATCH = 2  # the example batch; verification uses other sizes, so a baked-in batch fails


class ExportMismatch(LitVisionError):
    """The exported file's logits differ from the checkpoint's (exit status 1, not 2)."""


class PixelClassifier(nn.Module):
    """The evaluated model as a plain module: uint8 images in, logits out (normalisation and
    any TTA are the LightningModule's own forward in eval mode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # The wrapper too: exporters restore the top module's mode afterwards, recursively.
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


# ------------------------------------------------------------------------------ writing
def write(module: nn.Module, fmt: str, path: Path, example: torch.Tensor) -> None:
    """Export `module` (traced on `example`) in `fmt` to `path`, batch dimension dynamic."""
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing warns about every Python-level shape read; the verification below is what
        # tells whether any of them baked a batch size in.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if fmt == "torchscript":
            # Lightning's own tracing entry point: plain torch.jit.trace trips over the
            # LightningModule's `trainer` property.
            module.model.to_torchscript(method="trace", example_inputs=example).save(str(path))
        elif fmt == "exported":
            batch = torch.export.Dim("batch", min=1, max=65536)
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(path))
        elif fmt == "onnx":
            require_onnx()
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter's notice
            torch.onnx.export(
                module, (example,), str(path), dynamo=False, input_names=["images"], output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            )  # fmt: skip
        else:
            raise LitVisionError(f"Unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}.")


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise LitVisionError(
            "--format onnx needs the onnx package, which is not installed: pip install onnx (and onnxruntime to "
            "check the file with it; without it onnx's reference evaluator checks it). The torchscript and "
            "exported formats need nothing more."
        ) from None
    return onnx


# ------------------------------------------------------------------------------ reading
def load(fmt: str, path: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The exported file as a function images -> logits, and the name of what runs it."""
    if fmt == "torchscript":
        return torch.jit.load(str(path)), "torch.jit.load"
    if fmt == "exported":
        return torch.export.load(str(path)).module(), "torch.export.load"
    onnx = require_onnx()
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    try:
        import onnxruntime
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return (lambda images: torch.from_numpy(evaluator.run(None, {"images": images.numpy()})[0])), (
            "onnx.reference (onnxruntime is not installed)"
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])), "onnxruntime"


def max_difference(
    module: nn.Module, fmt: str, path: Path, crop: int, batch_sizes: tuple[int, ...] = (1, 5)
) -> tuple[float, str]:
    """Largest |exported - module| logit over random uint8 batches of each size, and the runtime."""
    run, runtime = load(fmt, path)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for size in batch_sizes:
            images = torch.randint(0, 256, (size, 3, crop, crop), dtype=torch.uint8, generator=generator)
            expected, got = module(images), run(images)
            if got.shape != expected.shape:
                raise LitVisionError(f"The exported {path} returned logits of shape {tuple(got.shape)} for a batch of "
                                     f"{size}; the checkpoint gives {tuple(expected.shape)}.")  # fmt: skip
            worst = max(worst, (got.float() - expected.float()).abs().max().item())
    return worst, runtime


def export_verified(model: nn.Module, fmt: str, output: Path, crop: int, tolerance: float = 1e-4) -> tuple[float, str]:
    """Write `model` to `output` in `fmt` and verify it; on a mismatch nothing is left at
    `output` (any previous file there stays) and a LitVisionError gives the difference."""
    module = PixelClassifier(model)
    example = torch.randint(
        0, 256, (TRACE_BATCH, 3, crop, crop), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.parent / f".{output.stem}.{uuid.uuid4().hex[:6]}.tmp{output.suffix}"
    try:
        try:
            write(module, fmt, temporary, example)
        except LitVisionError:
            raise
        except Exception as error:
            first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            hint = ""
            if getattr(model, "hparams", {}).get("conv") == "im2col":
                hint = (
                    " The hand-written convolution (conv: im2col) is a Python autograd.Function, which no exporter "
                    "can trace; its weights are those of nn.Conv2d, so add --model.init_args.conv torch."
                )
            raise LitVisionError(
                f"{type(model).__name__} cannot be exported as {fmt}: {first.strip()[:300]}.{hint}"
            ) from error
        difference, runtime = max_difference(module, fmt, temporary, crop)
        if not difference <= tolerance:
            raise ExportMismatch(
                f"The {fmt} export of the checkpoint gives different logits: max abs diff {difference:.3g} "
                f"> tolerance {tolerance:g} ({runtime}). Nothing was written to {output}."
            )
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
        for side_file in output.parent.glob(f"{temporary.name}*"):  # ONNX external-data files, if any
            side_file.unlink(missing_ok=True)
    return difference, runtime


# ---------------------------------------------------------------------------- the command
def settings(overrides: list[str], section: str) -> dict[str, object]:
    """`--section.NAME VALUE` / `--section.init_args.NAME=VALUE` among `overrides`, as
    {NAME: VALUE} with each value read as YAML (as jsonargparse reads a flag's value)."""
    found = {}
    prefixes = (f"--{section}.init_args.", f"--{section}.")
    i = 0
    while i < len(overrides):
        flag, equals, value = overrides[i].partition("=")
        if not equals and i + 1 < len(overrides):
            value, i = overrides[i + 1], i + 1
        elif not equals:
            raise LitVisionError(f"{flag} needs a value.")
        prefix = next((p for p in prefixes if flag.startswith(p)), None)
        if prefix is not None:
            found[flag.removeprefix(prefix)] = read_value(value)
        i += 1
    return found


def configured_model(configs: list[str]) -> str | None:
    """The model class path the last of `configs` that states one (`model: class_path: ...`) names."""
    class_path = None
    for config in configs:
        content = read_config(config)
        model = content.get("model") if isinstance(content, dict) else None
        if isinstance(model, dict) and isinstance(model.get("class_path"), str):
            class_path = model["class_path"]
    return class_path


def load_model(ckpt_path: str, overrides: list[str], configs: list[str] = ()) -> tuple[nn.Module, int]:
    """The checkpoint's model (its architecture, settings and weights, with any `--model.*`
    override) and the crop size it was trained at (or `--data.crop_size`). A config that names
    another architecture than the checkpoint's is an error."""
    checkpoint = load_lightning_checkpoint(ckpt_path)
    model_settings = settings(overrides, "model")
    try:
        model = load_model_from_checkpoint(
            ckpt_path, model_settings, model_class_path=configured_model(configs), checkpoint=checkpoint
        )
    except TypeError as error:  # a --model.* name the class does not take
        given = " ".join(f"--model.init_args.{name} {value}" for name, value in model_settings.items())
        raise LitVisionError(f"{given}: {error}. `lit-vision fit --model.help MODEL` lists a model's options.") from None
    data = {**(checkpoint.get("datamodule_hyper_parameters") or {}), **settings(overrides, "data")}
    if not isinstance(data.get("crop_size"), int):
        raise LitVisionError(
            f"The checkpoint {ckpt_path} records no data.crop_size (the image size the model takes): pass "
            "--data.crop_size N, N as in the config it was trained with."
        )
    return model, data["crop_size"]


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="lit-vision export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", action="append", default=[],
        help="the run's config (repeatable): optional, the checkpoint records the model and crop size; a config "
        "naming another architecture is an error",
    )  # fmt: skip
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by lit-vision fit")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="file format")
    parser.add_argument("--output", help="where to write (default: beside the checkpoint, <name><format suffix>)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted |logit difference|")
    args, overrides = parser.parse_known_args(argv)
    unknown = [
        t for t in overrides if t.startswith("--") and not t.startswith(("--model.", "--data."))
    ]
    if unknown:
        parser.error(
            f"unrecognised arguments: {' '.join(unknown)} (besides its own, export takes --model.* and --data.*)"
        )
    if args.tolerance < 0:
        parser.error(f"--tolerance must be >= 0, got {args.tolerance}")
    return args, overrides


def main(argv: list[str]) -> None:
    from lit_vision.console import silence_known_noise

    silence_known_noise()
    args, overrides = parse(argv)
    try:
        if args.format == "onnx":
            require_onnx()  # before the model is built
        model, crop = load_model(args.ckpt_path, overrides, args.config)
        ckpt = Path(args.ckpt_path)
        output = Path(args.output) if args.output else ckpt.with_name(ckpt.stem + FORMATS[args.format])
        difference, runtime = export_verified(model, args.format, output, crop, args.tolerance)
    except LitVisionError as error:
        print(f"lit-vision export: error: {error}", file=sys.stderr)
        sys.exit(1 if isinstance(error, ExportMismatch) else 2)
    print(
        f"Wrote {output} ({args.format}; input uint8 (batch, 3, {crop}, {crop}), dynamic batch). Checked against "
        f"the checkpoint with {runtime}: max abs diff {difference:.3g} (tolerance {args.tolerance:g})."
    )
