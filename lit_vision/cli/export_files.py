"""Exported model files: written in one of three formats, read back, and verified against the
model they came from (`export_verified`), for `lit-vision export` (`lit_vision.cli.export`).

The exported model takes **uint8 RGB images** of shape (batch, 3, crop, crop) — pixel space, as
the DataModule delivers them — and returns logits (batch, num_classes). The ImageNet
normalisation is inside (the model's first layer), and so is flip TTA when the model's `tta` is
"flip". The batch size is dynamic.

Formats: `torchscript` (torch.jit.trace, load with `torch.jit.load`), `exported`
(torch.export's .pt2, load with `torch.export.load(path).module()`), `onnx` (the TorchScript-based
ONNX exporter; needs the `onnx` package). After writing, the file is loaded back and run on a
batch of random images of two sizes other than the one it was traced with; above the tolerance
nothing is left at the output path (the file is written under a temporary name and renamed only
once verified). ONNX files are run with onnxruntime when it is installed, otherwise with onnx's
own reference evaluator (pure Python: slow on big models, exact enough for the check).
"""


from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lit_vision.errors import LitVisionError

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
            raise ValueError(f"Unknown export format {fmt!r}")  # the command's parser allows only the three


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
            if getattr(model, "hparams", {}).get("conv") in ("hand_written", "im2col"):
                hint = (
                    " The hand-written convolution (conv: hand_written) is a Python autograd.Function, which no exporter "
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
