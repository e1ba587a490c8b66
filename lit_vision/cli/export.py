"""`lit-vision export`: a checkpoint as a file that runs without this package, verified.

    lit-vision export --config configs/quickstart.yaml --ckpt_path checkpoints/quickstart/version_0/last.ckpt \\
        --format torchscript|exported|onnx [--output PATH] [--model.init_args.tta flip]

The model is rebuilt from the checkpoint alone (`lit_vision.checkpoints.load_model_from_checkpoint`:
its architecture, settings and weights); `--config` is optional and checked against it.
`--model.init_args.NAME VALUE` changes one of the model's settings (e.g. `tta flip`);
`--data.crop_size N` the image size, for a checkpoint that does not record it. The file takes
uint8 images of the crop size the checkpoint was trained at (`lit_vision.cli.export_files`
says what is inside and how it is checked); the largest absolute difference from the
checkpoint's logits is printed, and above `--tolerance` the command exits 1.

The arguments are parsed before torch is imported, so a mistyped flag answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lit_vision.cli.config_files import read_config, read_value
from lit_vision.errors import LitVisionError

# Format name -> file suffix (`export_files.write` handles each; kept here so that parsing needs no torch).
FORMATS = {"torchscript": ".torchscript.pt", "exported": ".pt2", "onnx": ".onnx"}


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


def load_model(ckpt_path: str, overrides: list[str], configs: list[str] = ()):
    """The checkpoint's model (its architecture, settings and weights, with any `--model.*`
    override) and the crop size it was trained at (or `--data.crop_size`). A config that names
    another architecture than the checkpoint's is an error."""
    from lit_vision.checkpoints import load_lightning_checkpoint, load_model_from_checkpoint

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
    parser = argparse.ArgumentParser(prog="lit-vision export", description=__doc__.split("\n\n")[0].strip('"'))
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
    args, overrides = parse(argv)  # before torch is imported: a mistake answers at once
    from lit_vision.console import silence_known_noise

    silence_known_noise()
    from lit_vision.cli.export_files import ExportMismatch, export_verified, require_onnx

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
