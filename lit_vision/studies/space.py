"""The search space: a YAML file naming config keys (as the CLI spells them, without `--`) and
the values to try, turned into Optuna distributions.

    metric: val/top1            # the logged metric to optimise (default val/top1)
    direction: maximize         # or minimize
    params:
      model.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # float, log scale
      model.init_args.weight_decay: {low: 0.0, high: 0.1}           # float
      trainer.max_epochs: {low: 4, high: 8, step: 2}                # int (low and high are ints)
      model.init_args.optimizer: {choices: [adamw, sgd]}            # categorical

A trial passes each value as `--key=value` to `lit-vision fit`. Every key is checked against the
CLI's own parser before the study starts (`check_against_cli`): a key the CLI does not know is
an error naming the key and the space file, not a study of failed trials.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from lit_vision.errors import LitVisionError

TOP_LEVEL = ("metric", "direction", "params")
RANGE_KEYS = {"low", "high", "log", "step", "type"}
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Param:
    """One key of the space and its Optuna distribution."""

    key: str
    distribution: object  # optuna.distributions.BaseDistribution

    def suggest(self, trial):
        import optuna.distributions as d

        dist = self.distribution
        if isinstance(dist, d.CategoricalDistribution):
            return trial.suggest_categorical(self.key, dist.choices)
        if isinstance(dist, d.IntDistribution):
            return trial.suggest_int(self.key, dist.low, dist.high, step=dist.step, log=dist.log)
        return trial.suggest_float(self.key, dist.low, dist.high, step=dist.step, log=dist.log)

    def sample_value(self):
        """A value inside the space (its low end, or first choice), to check the key with."""
        dist = self.distribution
        return dist.choices[0] if hasattr(dist, "choices") else dist.low


@dataclass(frozen=True)
class Space:
    path: Path
    params: list[Param]
    metric: str
    direction: str

    def as_dict(self) -> dict:
        """A plain-data fingerprint of the space (stored with the study to recognise it again)."""
        import optuna

        return {
            "metric": self.metric,
            "direction": self.direction,
            "params": {p.key: optuna.distributions.distribution_to_json(p.distribution) for p in self.params},
        }


def flag(key: str, value) -> str:
    """`--key=value` as the CLI reads it (jsonargparse parses the value as YAML)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        text = json.dumps(value)
    return f"--{key}={text}"


def _number(path: Path, key: str, field: str, value) -> float | int:
    # YAML 1.1 reads `1e-4` (no dot) as a string: accept it as the number it means.
    if isinstance(value, bool):
        raise LitVisionError(f"{path}: params.{key}.{field} is {value!r}; expected a number.")
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LitVisionError(f"{path}: params.{key}.{field} is {value!r}; expected a number.") from None


def _distribution(path: Path, key: str, spec):
    import optuna.distributions as d

    if not isinstance(spec, dict):
        raise LitVisionError(
            f"{path}: params.{key} is {spec!r}; expected a mapping such as {{low: 1.0e-4, high: 1.0e-2, log: true}} "
            "or {choices: [a, b]}."
        )
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        choices = spec["choices"]
        if extra or not isinstance(choices, list) or not choices:
            raise LitVisionError(
                f"{path}: params.{key}: a categorical parameter is {{choices: [a, b, ...]}} with a non-empty list "
                f"and nothing else; got {spec!r}."
            )
        # Optuna stores choices as None / bool / int / float / str; anything else as its JSON text.
        plain = [c if c is None or isinstance(c, (bool, int, float, str)) else json.dumps(c) for c in choices]
        return d.CategoricalDistribution(plain)
    unknown = set(spec) - RANGE_KEYS
    if unknown or not {"low", "high"} <= set(spec):
        raise LitVisionError(
            f"{path}: params.{key}: a range is {{low: L, high: H}} with optional log: true, step: S and "
            f"type: int|float; got {spec!r}" + (f" (unknown: {', '.join(sorted(unknown))})." if unknown else ".")
        )
    low, high = _number(path, key, "low", spec["low"]), _number(path, key, "high", spec["high"])
    step = _number(path, key, "step", spec["step"]) if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise LitVisionError(f"{path}: params.{key}.log is {log!r}; expected true or false.")
    kind = spec.get("type")
    if kind not in (None, "int", "float"):
        raise LitVisionError(f"{path}: params.{key}.type is {kind!r}; expected int or float.")
    if kind is None:
        kind = "int" if isinstance(low, int) and isinstance(high, int) and isinstance(step, (int, type(None))) else "float"
    if not low < high:
        raise LitVisionError(f"{path}: params.{key}: low ({low}) must be below high ({high}).")
    if log and low <= 0:
        raise LitVisionError(f"{path}: params.{key}: a log-scale range needs low > 0, got {low}.")
    if log and step is not None:
        raise LitVisionError(f"{path}: params.{key}: log: true and step cannot be combined (Optuna samples one or the other).")
    if kind == "int":
        return d.IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return d.FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def load_space(path: str | Path) -> Space:
    """Read and check the space file (its shape; `check_against_cli` checks its keys)."""
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise LitVisionError(f"--space {path}: cannot read it ({error.strerror or error}).") from None
    except yaml.YAMLError as error:
        raise LitVisionError(f"--space {path}: not valid YAML ({error}).") from None
    if not isinstance(content, dict) or not isinstance(content.get("params"), dict) or not content["params"]:
        raise LitVisionError(
            f"--space {path}: expected a mapping with `params:` (config keys to their ranges or choices), and "
            "optionally `metric:` and `direction:`; see configs/spaces/quickstart.yaml."
        )
    unknown = set(content) - set(TOP_LEVEL)
    if unknown:
        raise LitVisionError(
            f"--space {path}: unknown top-level key {', '.join(sorted(map(str, unknown)))}; expected "
            f"{', '.join(TOP_LEVEL)} (config keys go under params:)."
        )
    direction = content.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise LitVisionError(f"--space {path}: direction is {direction!r}; expected maximize or minimize.")
    params = []
    for key, spec in content["params"].items():
        if not isinstance(key, str) or not key or key.startswith("-"):
            raise LitVisionError(f"{path}: params key {key!r}: expected a config key such as model.init_args.lr (no --).")
        params.append(Param(key, _distribution(path, key, spec)))
    return Space(path, params, str(content.get("metric", "val/top1")), direction)


def resolved_config(recipe_args: list[str], flags: list[str], subcommand: str = "fit") -> tuple[int, str, str]:
    """`lit-vision SUBCOMMAND RECIPE_ARGS FLAGS --print_config` in a child process: (exit code, the
    merged config as YAML, stderr). The CLI's parser is the judge of every key and value."""
    command = [sys.executable, "-m", "lit_vision", subcommand, *recipe_args, *flags, "--print_config"]
    done = subprocess.run(command, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def check_against_cli(space: Space, recipe_args: list[str]) -> dict:
    """Every key of `space` (at its low end or first choice) through the CLI's own parser, on top
    of the recipe. Returns the merged config; raises an error naming the key the CLI refused."""
    code, out, err = resolved_config(recipe_args, [flag(p.key, p.sample_value()) for p in space.params])
    if code == 0:
        return yaml.safe_load(out)
    message = " ".join(line.strip() for line in err.strip().splitlines() if line.strip())
    message = message.split("error: ", 1)[-1] if "lit-vision: error: " in message else message
    # The CLI names the culprit first ("unknown flag --x (did you mean --y?)", "x = v: expected ..."):
    # the first key of the space among the names in its message.
    keys = {p.key for p in space.params}
    culprits = [name for name in re.findall(r"(?:--|^|\s)([A-Za-z_][\w.]*)", message) if name in keys]
    recipe = " ".join(recipe_args)
    if culprits:
        key = culprits[0]
        raise LitVisionError(
            f"--space {space.path}: params.{key} is not a setting `lit-vision fit {recipe}` accepts with "
            f"{flag(key, next(p for p in space.params if p.key == key).sample_value())}: {message}"
        )
    values = " ".join(flag(p.key, p.sample_value()) for p in space.params)
    raise LitVisionError(f"`lit-vision fit {recipe} {values}` (the recipe with the space's first values) failed: {message}")
