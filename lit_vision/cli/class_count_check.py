"""One class count per run: the model's num_classes follows the data's (a jsonargparse link in
the CLI), and a link overwrites its target without a word. So a model num_classes that a user
states (a `--model.init_args.num_classes` flag, a `model:` block of a `--config` file, a model
file named by `model:` or `--model`) and that disagrees with the data is an error naming where
it was written and what to set instead."""

from __future__ import annotations

from pathlib import Path

from lit_vision.cli.config_files import config_file, flag_values, read_config
from lit_vision.errors import LitVisionError

MODEL_CLASS_FLAGS = ("--model.init_args.num_classes", "--model.num_classes")


def model_block_classes(block: object, where: str, base: Path) -> list[tuple[str, object]]:
    """Where a model block (a mapping, or the path of a file holding one) states num_classes."""
    path = config_file(block, base)
    if path is not None:
        return model_block_classes(read_config(path), str(path), path.parent)
    if not isinstance(block, dict):
        return []
    arguments = block["init_args"] if isinstance(block.get("init_args"), dict) else block
    if "num_classes" in arguments:
        return [(f"{where} (model num_classes: {arguments['num_classes']})", arguments["num_classes"])]
    return []


def stated_model_classes(args: list[str]) -> list[tuple[str, object]]:
    """Every place the command line states the model's num_classes, as (where, value)."""
    stated = []
    for flag, value in flag_values(args, ("--config", "--model", *MODEL_CLASS_FLAGS)):
        if flag in MODEL_CLASS_FLAGS:
            stated.append((f"{flag} {value}", value))
        elif flag == "--model":
            stated += model_block_classes(value, f"--model {value}", Path.cwd())
        elif (path := config_file(value, Path.cwd())) is not None:
            config = read_config(path)
            if isinstance(config, dict):
                stated += model_block_classes(config.get("model"), str(path), path.parent)
    return stated


def check_model_classes(args: list[str], config) -> None:
    """Raise if a stated model num_classes disagrees with the parsed data.num_classes."""
    data_classes = (config.get("data") or {}).get("num_classes") if config is not None else None
    if data_classes is None:
        return
    for where, given in stated_model_classes(args):
        if str(given) != str(data_classes):
            raise LitVisionError(
                f"{where} would give the model {given} output classes but the data has {data_classes}: the "
                f"model's num_classes always equals the data's (a link), so a model num_classes is never used: remove "
                f"it and set data.num_classes instead (--data.num_classes {given} if {given} is right)."
            )
