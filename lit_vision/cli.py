"""The `lit-vision` command (also `python -m lit_vision`): LightningCLI with fit, validate,
test and predict.

    lit-vision fit --config configs/quickstart.yaml
    lit-vision validate --config configs/quickstart.yaml --ckpt_path checkpoints/quickstart/last.ckpt
    lit-vision fit --model CustomNet1 --data.data_dir data/miniplaces --trainer.max_epochs 60

Every run is named by `--experiment NAME`: TensorBoard logs go to logs/NAME/version_N/ and
checkpoints to checkpoints/NAME/ (last.ckpt and the best by val/top1).
"""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

import lit_vision.models  # noqa: F401  (registers every architecture for --model NAME)
from lit_vision.callbacks.submission import SubmissionWriter
from lit_vision.data import MiniPlacesDataModule
from lit_vision.errors import LitVisionError
from lit_vision.models import ImageClassifier

LOG_ROOT = "logs"
CHECKPOINT_ROOT = "checkpoints"


def default_checkpoint(experiment: str) -> ModelCheckpoint:
    return ModelCheckpoint(
        dirpath=f"{CHECKPOINT_ROOT}/{experiment}",
        filename="best-epoch{epoch:03d}-top1{val/top1:.4f}",
        auto_insert_metric_name=False,
        monitor="val/top1",
        mode="max",
        save_last=True,
    )


class LitVisionCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--experiment",
            type=str,
            default="default",
            help="Run name: logs go to logs/<experiment>/version_N, checkpoints to checkpoints/<experiment>/.",
        )
        parser.set_defaults({"model": {"class_path": "lit_vision.models.SimpleNet"}})

    def instantiate_trainer(self, **kwargs):
        """Add the project's defaults (TensorBoard logger, checkpointing, LR monitor, submission
        writer) unless the user configured their own."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        experiment = config["experiment"]
        trainer_config = config["trainer"]
        callbacks = list(trainer_config.get("callbacks") or [])
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(LOG_ROOT, name=experiment, default_hp_metric=False)
        if trainer_config.get("enable_checkpointing", True) is not False and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        ):
            callbacks.append(default_checkpoint(experiment))
        if trainer_config.get("logger") is not False and not any(isinstance(c, LearningRateMonitor) for c in callbacks):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if self.subcommand == "predict" and not any(isinstance(c, SubmissionWriter) for c in callbacks):
            callbacks.append(SubmissionWriter())
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)


def user_message(error: LitVisionError) -> str:
    """The error's own message, without the traceback text that DataLoader workers prepend."""
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def build_cli(args: list[str] | None = None, run: bool = True) -> LitVisionCLI:
    """Parse `args` (default: sys.argv), build model, data and trainer, and run the subcommand."""
    return LitVisionCLI(
        ImageClassifier,
        MiniPlacesDataModule,
        subclass_mode_model=True,
        auto_configure_optimizers=False,  # each model owns its optimiser and schedule
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def find_user_error(error: BaseException) -> LitVisionError | None:
    """The LitVisionError behind `error`, if any: jsonargparse wraps errors raised while it
    instantiates classes (a model's __init__, say) in its own ValueError."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, LitVisionError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main(args: list[str] | None = None) -> None:
    try:
        build_cli(args)
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"lit-vision: error: {user_message(user_error)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
