"""Run config files as the command line names them: the one place that reads their YAML.

jsonargparse parses the configs into the run's settings. A few checks need to know what the
*user wrote* rather than the merged result (whether a config names a model, where a model
num_classes was stated); they read the files through `read_config` here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from lit_vision.errors import LitVisionError

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def flag_values(args: list[str], names: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(flag, value) for each `--flag value` or `--flag=value` among `args` named in `names`."""
    for i, token in enumerate(args):
        flag, equals, value = token.partition("=")
        if flag in names:
            if equals:
                yield flag, value
            elif i + 1 < len(args):
                yield flag, str(args[i + 1])


def config_file(value: object, base: Path) -> Path | None:
    """The file a config value names (relative to the file that names it, as jsonargparse reads
    it, or to the working directory), or None for a class name, class path or inline block."""
    if not isinstance(value, str) or not value.endswith(CONFIG_SUFFIXES):
        return None
    for candidate in (base / value, Path(value)):
        if candidate.is_file():
            return candidate
    return None


def read_config(path: str | Path) -> object:
    """The content of a YAML (or JSON) config file; a LitVisionError names a file that cannot
    be read or parsed."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as error:
        raise LitVisionError(f"Cannot read the config file {path}: {error.strerror or error}.") from None
    except yaml.YAMLError as error:
        raise LitVisionError(f"The config file {path} is not valid YAML: {error}") from None


def read_value(text: str) -> object:
    """A command-line value as YAML reads it ("flip" -> "flip", "0.5" -> 0.5, "true" -> True)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # not YAML: the string itself, as jsonargparse takes it
