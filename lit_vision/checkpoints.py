"""Checkpoint files: written atomically, read safely, checked against the run's config.

Writing (`AtomicCheckpointIO`, installed by the CLI): the checkpoint is serialised into a
hidden temporary file in the target's folder, flushed and fsync'ed, then `os.replace`d over
the target. A process killed at any moment leaves either the previous file or the new one,
never a truncated one (Lightning's own `_atomic_save` serialises to memory first but then
writes the target in place, so a kill during that write truncates it).

Reading (`load_checkpoint_safely`): `torch.load(weights_only=True)` always, whatever the
torch version's default. That unpickler only rebuilds tensors and plain containers and
refuses any other global, so a crafted file cannot run code; the refusal becomes a
`LitVisionError` that says so. Missing, truncated and foreign files get their own messages.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lit_vision.errors import LitVisionError
from lit_vision.utils.files import atomic_write

# Values of `--ckpt_path` that Lightning resolves itself rather than naming a file.
CKPT_PATH_KEYWORDS = ("last", "best", "hpc")


# ---------------------------------------------------------------------------------- writing
def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save(obj, path)` that never leaves a partial file at `path` (see `atomic_write`)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's `TorchCheckpointIO`, with atomic local writes and `weights_only=True` reads.

    Remote paths (s3://, gs://, ...) keep Lightning's own fsspec code path."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or _is_remote(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None):
        # Never weaker than weights_only=True, whatever a caller or the torch default says.
        if _is_remote(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return load_checkpoint_safely(path, map_location=map_location)


def _is_remote(path) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


# ---------------------------------------------------------------------------------- reading
def load_checkpoint_safely(path: str | os.PathLike, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """`torch.load(path, weights_only=True)` with a `LitVisionError` naming the file and the
    problem: missing, not a PyTorch file (or truncated), or holding Python objects that are
    not plain data (what a crafted file that would run code looks like)."""
    path = Path(path)
    if not path.exists():
        raise LitVisionError(f"The {what} {path} does not exist.")
    if not path.is_file():
        raise LitVisionError(f"The {what} {path} is not a file.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        # A refused global (a class or function to import) is what code-running pickles need;
        # anything else ("Unsupported operand ...") is a file that is not a pickle at all.
        if re.search(r"\bglobal\b", text, re.IGNORECASE):
            culprit = _unsupported_global(text)
            raise LitVisionError(
                f"Refusing to load the {what} {path}: it holds Python objects that are not plain data"
                f"{f' ({culprit})' if culprit else ''}, and unpickling them could run arbitrary code. "
                "Checkpoints are loaded with torch.load(weights_only=True), which accepts tensors, numbers, "
                "strings and containers only. Only a file from a trusted source should be converted (load it "
                "yourself with weights_only=False and save its state_dict)."
            ) from None
        raise _not_a_checkpoint(path, what, text) from None
    except Exception as error:  # torch.load has no one error type for bad bytes (text: IndexError)
        raise _not_a_checkpoint(path, what, f"{type(error).__name__}: {error}") from None


def _unsupported_global(text: str) -> str:
    """The refused global from torch's message ("... unsupported GLOBAL posix.system ...")."""
    match = re.search(r"(?:GLOBAL|global)\s+([\w.]+)", text)
    return f"it asks for {match.group(1)}" if match else ""


def _not_a_checkpoint(path: Path, what: str, detail: str) -> LitVisionError:
    size = path.stat().st_size
    first_line = detail.strip().splitlines()[0] if detail.strip() else ""
    first_line = first_line.split(". ")[0][:160]  # torch's first sentence says what failed
    return LitVisionError(
        f"The {what} {path} ({size} bytes) cannot be read as a PyTorch file: it is truncated, damaged or "
        f"not a checkpoint ({first_line}). Expected a file written by lit-vision fit "
        "(checkpoints/<experiment>/version_N/last.ckpt or best-*.ckpt)."
    )


def load_lightning_checkpoint(path: str | os.PathLike) -> dict:
    """A Lightning checkpoint (a dict with a `state_dict`), loaded safely."""
    checkpoint = load_checkpoint_safely(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        keys = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise LitVisionError(
            f"The checkpoint {path} is a PyTorch file but not a Lightning checkpoint (no 'state_dict'; found {keys}). "
            "Expected a file written by lit-vision fit."
        )
    return checkpoint


def check_checkpoint_matches(
    checkpoint: dict, path: str | os.PathLike, model_class_path: str | None, data_num_classes: int | None
) -> None:
    """Refuse a checkpoint of another architecture or class count than the run's config,
    naming both sides (before any weights are loaded)."""
    hparams = checkpoint.get("hyper_parameters") or {}
    saved_class = hparams.get("_class_path")
    if saved_class and model_class_path and saved_class != model_class_path:
        raise LitVisionError(
            f"The checkpoint {path} holds a {saved_class} model, but the configured model is {model_class_path}. "
            f"Pass --model {saved_class} (or the config the checkpoint was trained with), or a checkpoint of "
            f"{model_class_path}."
        )
    saved_classes = hparams.get("num_classes")
    if saved_classes is not None and data_num_classes is not None and saved_classes != data_num_classes:
        raise LitVisionError(
            f"The checkpoint {path} was trained for {saved_classes} classes, but data.num_classes is "
            f"{data_num_classes}: use data with {saved_classes} classes or a checkpoint trained for {data_num_classes}."
        )


# ---------------------------------------------------------------------------------- rebuilding
def model_class_from_path(class_path: str, path: str | os.PathLike) -> type:
    """The LightningModule class a checkpoint's `_class_path` names; a LitVisionError when it is
    not an importable `ImageClassifier` subclass."""
    import importlib

    from lit_vision.models import ImageClassifier  # registers every architecture as well

    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, ImageClassifier)):
        raise LitVisionError(
            f"The checkpoint {path} holds a model of class {class_path}, which is not an importable ImageClassifier "
            "subclass here (a checkpoint of another version of this package, or of a class defined elsewhere)."
        )
    return cls


def load_model_from_checkpoint(
    path: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    model_class_path: str | None = None,
    num_classes: int | None = None,
    checkpoint: dict | None = None,
) -> torch.nn.Module:
    """The model a checkpoint written by `lit-vision fit` holds, in eval mode on the CPU: its
    class from the saved `_class_path`, its settings from the saved hyperparameters (each of
    `overrides` replacing one, e.g. {"tta": "flip"}), its weights from the `state_dict`. The
    one way every command and callback rebuilds a model from a file.

    `model_class_path` / `num_classes`, when given, must match the checkpoint's (errors name both).
    `checkpoint`: the file's content when the caller has read it already (`load_lightning_checkpoint`)."""
    checkpoint = load_lightning_checkpoint(path) if checkpoint is None else checkpoint
    check_checkpoint_matches(checkpoint, path, model_class_path, num_classes)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if not class_path:
        raise LitVisionError(
            f"The checkpoint {path} does not record its model class (_class_path): expected a file written by "
            "lit-vision fit."
        )
    model = model_class_from_path(class_path, path)(**{**hparams, **(overrides or {})})
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise LitVisionError(
            f"The checkpoint {path} does not fit the model its settings build ({type(model).__name__}): "
            f"{str(error).splitlines()[0]}"
        ) from None
    return model.eval()

