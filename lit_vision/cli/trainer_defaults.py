"""What every run's Trainer gets unless the user configured one of its kind: a TensorBoard
logger in the run's own folder, checkpointing (the best by `--checkpoint_monitor`, and last.ckpt
every `--checkpoint_every_n_steps` steps and at each epoch end), written atomically
(`AtomicCheckpointIO`), a stop at a step boundary on SIGTERM / SIGINT (`StopOnSignal`), the
finite-loss check, a learning-rate monitor, a model summary, and for `predict` the challenge
submission file (`SubmissionWriter`), unless `ImagePredictions` predicts a folder instead.
"""

from __future__ import annotations

from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary
from lightning.pytorch.loggers import TensorBoardLogger

from lit_vision import console
from lit_vision.callbacks.checkpointing import LastCheckpoint, best_checkpoint
from lit_vision.callbacks.evaluated_images import EvaluatedImages
from lit_vision.callbacks.finite_loss import FiniteLossCheck
from lit_vision.callbacks.image_predictions import ImagePredictions
from lit_vision.callbacks.model_summary import SummaryWithoutZeroFlops
from lit_vision.callbacks.preemption import StopOnSignal
from lit_vision.callbacks.submission import SubmissionWriter
from lit_vision.checkpoints import AtomicCheckpointIO
import lit_vision.run_folders as run_folders
from lit_vision.cli.loggers import has_file_logger, logger_settings, place_loggers
from lit_vision.run_folders import EVAL_FOLDER, LOG_ROOT
from lit_vision.errors import LitVisionError


def default_checkpoints(dirpath: str, every_n_steps: int, monitor: str = "val/top1") -> list[ModelCheckpoint]:
    """The best checkpoint by `monitor` and last.ckpt (every N steps and at epoch end). The
    best one comes first: last.ckpt, written after it, then records its latest state."""
    return [best_checkpoint(dirpath, monitor), LastCheckpoint(dirpath, every_n_train_steps=every_n_steps)]


def has(items: list, kind: type) -> bool:
    return any(isinstance(item, kind) for item in items)


def trainer_kwargs(subcommand: str | None, config, kwargs: dict, parsed_loggers=None) -> dict:
    """`kwargs` for the Trainer with the defaults added that `config` (the subcommand's
    instantiated config) leaves open. Claims the run's version folder when it writes one.
    `parsed_loggers`: the user's `trainer.logger` as parsed (class paths and arguments), from
    which their loggers are rebuilt to write into that folder (`lit_vision.cli.loggers`)."""
    experiment = config["experiment"]
    trainer_config = config["trainer"]
    callbacks = list(trainer_config.get("callbacks") or [])
    default_logger = trainer_config.get("logger") in (None, True)
    own_loggers = logger_settings(trainer_config.get("logger"))
    default_checkpointing = trainer_config.get("enable_checkpointing", True) is not False and not has(
        callbacks, ModelCheckpoint
    )
    training = subcommand in (None, "fit")
    # A fit claims a version (and its checkpoint folder) when it writes anything there.
    version = None
    if training and (default_logger or own_loggers or default_checkpointing):
        version = run_folders.fit_version(experiment)
    elif not training and (default_logger or own_loggers):
        version = run_folders.eval_version(experiment)
    name = experiment if training else f"{experiment}/{EVAL_FOLDER}"
    if default_logger:
        kwargs["logger"] = TensorBoardLogger(LOG_ROOT, name=name, version=version, default_hp_metric=False)
    elif own_loggers:
        loggers = place_loggers(logger_settings(parsed_loggers), own_loggers, LOG_ROOT, name, version, experiment)
        if not has_file_logger(loggers):  # the run folder keeps a log for plot, reports and predictions
            loggers.insert(0, TensorBoardLogger(LOG_ROOT, name=name, version=version, default_hp_metric=False))
        kwargs["logger"] = loggers
    if default_checkpointing and training:
        folder = run_folders.checkpoint_folder(experiment, version)
        callbacks += default_checkpoints(folder, config["checkpoint_every_n_steps"], config["checkpoint_monitor"])
        # A resumed run writes into a new version folder by design; Lightning warns that its
        # checkpoint callbacks' folder changed.
        console.ignore_lightning_warning("The dirpath has changed from")
    elif not training:
        # Evaluation writes no checkpoints; without a checkpoint callback, restoring one's
        # state from the loaded file has nothing to compare, and Lightning's warning that
        # the file's checkpoint callbacks are missing is not about evaluation.
        kwargs["enable_checkpointing"] = False
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        console.ignore_lightning_warning("Be aware that when using `ckpt_path`, callbacks used to create")
    if trainer_config.get("enable_model_summary") is not False and not has(callbacks, ModelSummary):
        callbacks.append(SummaryWithoutZeroFlops())
        kwargs["enable_model_summary"] = False  # Lightning's own default one (it would say it skips it)
    if training and not has(callbacks, StopOnSignal):
        callbacks.append(StopOnSignal())
    if not has(callbacks, FiniteLossCheck):
        callbacks.append(FiniteLossCheck())
    if trainer_config.get("logger") is not False and not has(callbacks, LearningRateMonitor):
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if subcommand in ("validate", "test") and not has(callbacks, EvaluatedImages):
        callbacks.append(EvaluatedImages())  # the image count behind the accuracies' intervals
    if subcommand == "predict":
        callbacks = prediction_writers(callbacks)
    kwargs["callbacks"] = callbacks
    plugins = trainer_config.get("plugins")
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not has(plugins, CheckpointIO):
        plugins.append(AtomicCheckpointIO())
    kwargs["plugins"] = plugins
    return kwargs


def prediction_writers(callbacks: list) -> list:
    """`predict` writes one kind of output: the challenge submission for the test split
    (`SubmissionWriter`, the default) or the top-5 of a folder of images (`ImagePredictions`,
    which replaces the test split, so a submission file would pair its rows with the wrong names)."""
    if has(callbacks, ImagePredictions):
        if has(callbacks, SubmissionWriter):
            raise LitVisionError(
                "trainer.callbacks lists both ImagePredictions and SubmissionWriter: ImagePredictions predicts a "
                "folder of images in place of the test split, and the challenge submission file is for the test "
                "split only. Keep one of them."
            )
        return callbacks
    return callbacks if has(callbacks, SubmissionWriter) else [*callbacks, SubmissionWriter()]
