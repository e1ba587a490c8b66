"""`--trainer.logger`: any Lightning logger (CSVLogger, MLFlowLogger, WandbLogger, several at
once), each writing into the run's own folder, the same version_N as its checkpoints.

    lit-vision fit --config configs/quickstart.yaml --trainer.logger CSVLogger
    lit-vision fit --config configs/quickstart.yaml --trainer.logger MLFlowLogger   # logs/mlflow.db
    lit-vision fit ... --trainer.logger+=CSVLogger --trainer.logger+=MLFlowLogger

What the command line does with them:
- `--trainer.logger CSVLogger` needs no `save_dir` (Lightning's file loggers require one): the
  flag gets `save_dir: logs` before parsing (`add_logger_defaults`), and the run sets it anyway;
- `--trainer.logger MLFlowLogger` with no `tracking_uri` (nor `save_dir`, nor MLFLOW_TRACKING_URI)
  logs to the SQLite store logs/mlflow.db, not to Lightning's ./mlruns file store (MLflow 3
  refuses file stores unless told);
- a logger whose package is not installed (mlflow, wandb, ...) is one paragraph naming the extra
  to install (`check_logger_packages`), before anything is built;
- each logger is rebuilt for the run (`place_loggers`): file loggers (CSV, TensorBoard) write into
  logs/<experiment>/version_N (evaluation: logs/<experiment>/eval/version_M); MLflow logs a run
  named version_N in the MLflow experiment <experiment> (unless the config names them) tagged with
  the run folder; W&B keeps its files in the run folder and names the run <experiment>/version_N;
  other loggers are used as configured. When none of them is a file logger, the run folder keeps
  its TensorBoard log as well: `lit-vision plot`, the reports and predict's files live there.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from typing import Any

from lit_vision.errors import LitVisionError

LOGGER_FLAGS = ("--trainer.logger", "--trainer.logger+")
SAVE_DIR_FLAGS = ("--trainer.logger.save_dir", "--trainer.logger.init_args.save_dir")
TRACKING_URI_FLAGS = ("--trainer.logger.tracking_uri", "--trainer.logger.init_args.tracking_uri")
MLFLOW_STORE_FILE = "mlflow.db"  # under the log root: logs/mlflow.db
# Logger class name -> (module it needs, the install command that brings it).
PACKAGES = {
    "MLFlowLogger": ("mlflow", "pip install 'lit-vision[mlflow]'"),
    "WandbLogger": ("wandb", "pip install wandb"),
    "CometLogger": ("comet_ml", "pip install comet-ml"),
    "NeptuneLogger": ("neptune", "pip install neptune"),
    "TensorBoardLogger": ("tensorboard", "pip install tensorboard"),
}
MLFLOW_DEFAULT_EXPERIMENT = "lightning_logs"  # MLFlowLogger's own default experiment_name
RUN_FOLDER_TAG = "lit_vision.run_folder"
JSONARGPARSE_NOISE = ("Does not validate against", "Problem with given class_path", "Not a valid subclass")


# ------------------------------------------------------------------------ before parsing
def logger_class(value: str):
    """The Lightning logger class a `--trainer.logger` value names (short or dotted), or None."""
    if not value or value.lstrip().startswith(("{", "[")) or value.lower() in ("true", "false", "null", "none"):
        return None
    from jsonargparse._util import import_object

    for path in ((value,) if "." in value else (f"lightning.pytorch.loggers.{value}",)):
        try:
            return import_object(path)
        except Exception:  # not a class path: jsonargparse's own error will name it
            return None
    return None


def needs_save_dir(value: str) -> bool:
    cls = logger_class(value)
    if not inspect.isclass(cls):
        return False
    parameter = inspect.signature(cls.__init__).parameters.get("save_dir")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def add_logger_defaults(args: list[str], root: str) -> list[str]:
    """`args` with `--trainer.logger.init_args.save_dir ROOT` after each `--trainer.logger NAME`
    (or `+=NAME`) whose class requires a save_dir and is not given one on the command line, and
    the default SQLite store after an MLFlowLogger given no store (`default_mlflow_store`)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = str(args[i])
        flag, equals, value = token.partition("=")
        if flag not in LOGGER_FLAGS or (not equals and i + 1 >= len(args)):
            out.append(token)
            i += 1
            continue
        if equals:
            out.append(token)
            i += 1
        else:
            value = str(args[i + 1])
            out += [token, value]
            i += 2
        following = []
        for later in args[i:]:
            later = str(later)
            if later.split("=", 1)[0] in LOGGER_FLAGS:
                break
            following.append(later.split("=", 1)[0])
        if needs_save_dir(value) and not any(f in SAVE_DIR_FLAGS for f in following):
            out += ["--trainer.logger.init_args.save_dir", root]
        if is_mlflow(value) and not os.environ.get("MLFLOW_TRACKING_URI") and not any(
            f in TRACKING_URI_FLAGS + SAVE_DIR_FLAGS for f in following
        ):
            out += ["--trainer.logger.init_args.tracking_uri", default_mlflow_store(root)]
            os.makedirs(root, exist_ok=True)  # SQLite creates the file, not its folder; the logger opens it when parsed
    return out


def is_mlflow(value: str) -> bool:
    from lightning.pytorch.loggers import MLFlowLogger

    cls = logger_class(value)
    return inspect.isclass(cls) and issubclass(cls, MLFlowLogger)


def default_mlflow_store(root: str) -> str:
    """The store `--trainer.logger MLFlowLogger` logs to when nothing names one: an SQLite file
    beside the run folders. Lightning's own default is the ./mlruns file store, which MLflow 3
    refuses unless MLFLOW_ALLOW_FILE_STORE is set; an SQLite store works with MLflow 2 and 3
    (`mlflow ui --backend-store-uri` this URI shows it)."""
    return "sqlite:///" + os.path.abspath(os.path.join(root, MLFLOW_STORE_FILE))


# ------------------------------------------------------------------------- after parsing
def logger_settings(value: Any) -> list:
    """The configured loggers (parsed: Namespaces with class_path/init_args) as a list; [] for
    None, true or false (no logger of the user's own)."""
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_logger_packages(value: Any) -> None:
    """A configured logger whose package is missing: the one-paragraph error naming the install."""
    for setting in logger_settings(value):
        class_path = str(setting.get("class_path", "")) if hasattr(setting, "get") else ""
        name = class_path.rsplit(".", 1)[-1]
        if name in PACKAGES:
            module, install = PACKAGES[name]
            if importlib.util.find_spec(module) is None:
                raise LitVisionError(
                    f"--trainer.logger {name} needs the {module} package, which is not installed: {install}. "
                    "Or choose another logger (CSVLogger and TensorBoardLogger need nothing more), or leave "
                    "--trainer.logger unset for the default TensorBoard log."
                )


def place_loggers(settings: list, instances: list, root: str, name: str, version: int, experiment: str) -> list:
    """The loggers for the run: each configured one rebuilt to write into root/name/version_N
    (see the module docstring); `instances` are the ones built from `settings` as configured,
    kept for loggers this does not know how to place."""
    from jsonargparse._util import import_object
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

    if len(settings) != len(instances):  # no parsed settings to rebuild from: as configured
        return list(instances)
    folder = os.path.join(root, name, f"version_{version}")
    placed = []
    for setting, instance in zip(settings, instances, strict=True):
        cls = import_object(setting["class_path"])
        init_args = setting.get("init_args")
        args = dict(init_args.as_dict() if hasattr(init_args, "as_dict") else init_args or {})
        if issubclass(cls, (CSVLogger, TensorBoardLogger)):
            args.update(save_dir=root, name=name, version=version)
        elif issubclass(cls, MLFlowLogger):
            if args.get("experiment_name", MLFLOW_DEFAULT_EXPERIMENT) == MLFLOW_DEFAULT_EXPERIMENT:
                args["experiment_name"] = experiment
            if not args.get("run_name") and not args.get("run_id"):
                args["run_name"] = os.path.relpath(folder, os.path.join(root, experiment))  # version_N, eval/version_M
            args["tags"] = {**(args.get("tags") or {}), RUN_FOLDER_TAG: folder}
        elif issubclass(cls, WandbLogger):
            os.makedirs(folder, exist_ok=True)
            args["save_dir"] = folder
            args.setdefault("name", None)
            args["name"] = args["name"] or os.path.relpath(folder, root)
        else:
            placed.append(instance)
            continue
        placed.append(cls(**args))
    # The run folder's own writers (plot, reports, predictions) follow trainer.log_dir, which is
    # the first logger's: a file logger first.
    placed.sort(key=lambda logger: not isinstance(logger, (CSVLogger, TensorBoardLogger)))
    return placed


def has_file_logger(loggers: list) -> bool:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    return any(isinstance(logger, (CSVLogger, TensorBoardLogger)) for logger in loggers)


def describe_other_loggers(loggers: list) -> list[str]:
    """Where the loggers that write outside the run folder went, for fit's closing line."""
    from lightning.pytorch.loggers import MLFlowLogger

    lines = []
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            run = getattr(logger, "_run_name", None) or logger.run_id
            where = getattr(logger, "_tracking_uri", None) or "the default MLflow tracking store"
            lines.append(f"MLflow run {run!r} (id {logger.run_id}) in experiment {logger._experiment_name!r} at {where}")
    return lines


def logger_failure(error: BaseException, value: Any) -> LitVisionError | None:
    """The one-paragraph error for a configured logger that could not be created (an MLflow
    store it refuses, say), or None when `error` did not come from one. jsonargparse wraps the
    logger's own exception in its Union-matching noise: the innermost cause is what to say."""
    settings = logger_settings(value)
    if not settings:
        return None
    causes, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        causes.append(error)
        error = error.__cause__ or error.__context__
    # The logger's own exception: the outermost one that is not jsonargparse's type matching.
    own = [c for c in causes if not any(noise in str(c) for noise in JSONARGPARSE_NOISE)]
    if not own or isinstance(own[0], LitVisionError) or not any("Logger" in str(c) for c in causes):
        return None
    innermost = own[0]
    names = ", ".join(str(s.get("class_path", "?")).rsplit(".", 1)[-1] for s in settings if hasattr(s, "get"))
    text = " ".join(str(innermost).split())
    return LitVisionError(
        f"--trainer.logger {names}: the logger could not be created ({type(innermost).__name__}: {text}). Check its "
        "arguments (--trainer.logger.init_args.*; for MLflow, e.g. tracking_uri: sqlite:///mlflow.db)."
    )


def missing_save_dir(error_text: str) -> str | None:
    """What to say when jsonargparse refuses `trainer.logger` because a file logger in a config
    file has no save_dir (its message would be "expected Iterable or bool or None")."""
    if not error_text.startswith('Parser key "trainer.logger"') or "save_dir=None" not in error_text:
        return None
    import re

    names = sorted(set(re.findall(r"class_path='(?:[\w.]*\.)?(\w+)', init_args=Namespace\(save_dir=None", error_text)))
    which = ", ".join(names) or "a file logger"
    return (
        f"trainer.logger: {which} has no save_dir (Lightning's file loggers need one): give it `save_dir: logs` "
        "under init_args in the config (the run writes into logs/<experiment>/version_N in any case), or name the "
        f"logger on the command line (--trainer.logger {names[0] if names else 'CSVLogger'}), where it is filled in"
    )
