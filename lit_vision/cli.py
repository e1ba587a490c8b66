"""The `lit-vision` command (also `python -m lit_vision`): LightningCLI with fit, validate,
test and predict.

    lit-vision fit --config configs/quickstart.yaml
    lit-vision fit --config configs/quickstart.yaml --ckpt_path last        # resume the newest run
    lit-vision validate --config configs/quickstart.yaml --ckpt_path last
    lit-vision fit --model CustomNet1 --data.data_dir data/miniplaces --trainer.max_epochs 60

Every run is named by `--experiment NAME` and owns its folders (`lit_vision.run_folders`):
each `fit` claims checkpoints/NAME/version_N/ (last.ckpt and the best by --checkpoint_monitor) and logs
to logs/NAME/version_N/, the same N; validate/test/predict log to logs/NAME/eval/version_M/,
so `lit-vision plot logs/NAME` shows training runs only. Two runs never share a folder.
`--ckpt_path last` (or `best`) means that file of the newest version of NAME holding one.

What the CLI adds to Lightning's defaults (each only when the user configured none of its kind):
- checkpoints: the best by `--checkpoint_monitor` (val/top1 by default), and last.ckpt every `--checkpoint_every_n_steps` steps and
  at each epoch end, written atomically (`AtomicCheckpointIO`);
- SIGTERM / SIGINT during fit: the step finishes, last.ckpt is saved, exit 143 / 130
  (`StopOnSignal`); resume with `--ckpt_path last`;
- `FiniteLossCheck`: the first non-finite training loss stops the run (on a CPU run before it is
  applied; on an accelerator within `log_every_n_steps`) and no checkpoint is written after it;
- `--ckpt_path` (a file, `last` or `best`) is read with `torch.load(weights_only=True)` and
  checked against the config (architecture, class count) before anything is built, with errors
  that name both sides;
- TensorBoard logging, a learning-rate monitor, and a submission writer for `predict`.
Exit status: 0 done, 2 a user error (one paragraph naming the culprit), 3 a fit that
`AdversarialValidation` stopped on catastrophic over-fitting (its closing line says which epoch's
weights it kept), 130 / 143 stopped by SIGINT / SIGTERM, 1 anything else (a bug: its traceback is printed).

Multi-device runs need flags only: `--trainer.devices 4 --trainer.strategy ddp` (plus
`--trainer.num_nodes N` under torchrun or SLURM); see the README.

    lit-vision plot logs/quickstart/version_0 [more run folders] [--overlay] [--out PATH]

renders runs' learning-rate, loss and top-1/top-5 curves from their TensorBoard event files
as PNG (handled before LightningCLI; see `lit_vision.plot`).

    lit-vision export --config configs/quickstart.yaml --ckpt_path CKPT --format torchscript|exported|onnx

writes the model (normalisation inside, uint8 input, dynamic batch) and checks the file's logits
against the checkpoint's (handled before LightningCLI; see `lit_vision.export`).

    lit-vision optimize DATA_DIR STREAM_DIR     # then: lit-vision fit ... --data.stream STREAM_DIR

converts a dataset folder into LitData chunks (see `lit_vision.data.optimize`, docs/scale.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import yaml
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

import lit_vision.models  # noqa: F401  (registers every architecture for --model NAME)
from lit_vision import console, run_folders, signals
from lit_vision.callbacks.adversarial_validation import AdversarialValidation
from lit_vision.callbacks.checkpointing import LastCheckpoint, best_checkpoint
from lit_vision.callbacks.finite_loss import FiniteLossCheck
from lit_vision.callbacks.model_summary import SummaryWithoutZeroFlops
from lit_vision.callbacks.preemption import StopOnSignal
from lit_vision.callbacks.submission import SubmissionWriter
from lit_vision.checkpoints import (
    CKPT_PATH_KEYWORDS,
    AtomicCheckpointIO,
    check_checkpoint_matches,
    load_lightning_checkpoint,
)
from lit_vision.class_count_check import check_model_classes, flag_values
from lit_vision.data import MiniPlacesDataModule
from lit_vision.errors import LitVisionError
from lit_vision.flag_errors import flag_error_message
from lit_vision.models import ImageClassifier
from lit_vision.models.registry import model_class
from lit_vision.resume import NothingToTrain, check_something_to_train
from lit_vision.run_folders import EVAL_FOLDER, LOG_ROOT
from lit_vision.signals import Stopped

DEFAULT_MODEL = "lit_vision.models.SimpleNet"
# --ckpt_path as this CLI reads it (Lightning's help describes its own in-process meaning of "last").
CKPT_PATH_HELP = {
    "fit": "Resume a run: a checkpoint file, or 'last' (last.ckpt of the newest checkpoints/<experiment>/version_N/ "
    "holding one) or 'best' (its best-*.ckpt by --checkpoint_monitor). The run continues from that file's epoch, "
    "optimiser and schedule in a new version_N; a run that already reached --trainer.max_epochs trains nothing "
    "(raise it to train longer).",
    "other": "The weights to use: a checkpoint file, or 'last' (last.ckpt of the newest "
    "checkpoints/<experiment>/version_N/ holding one) or 'best' (its best-*.ckpt by --checkpoint_monitor).",
}
COLLAPSE_EXIT_CODE = 3  # a fit stopped by AdversarialValidation (catastrophic over-fitting)


def default_checkpoints(dirpath: str, every_n_steps: int, monitor: str = "val/top1") -> list[ModelCheckpoint]:
    """The best checkpoint by `monitor` and last.ckpt (every N steps and at epoch end). The
    best one comes first: last.ckpt, written after it, then records its latest state."""
    return [best_checkpoint(dirpath, monitor), LastCheckpoint(dirpath, every_n_train_steps=every_n_steps)]


def check_model_name(args: list[str]) -> None:
    """`--model NAME` with a name that is no architecture: list the ones there are (jsonargparse
    would only say that NAME is not a dot import path)."""
    for _, name in flag_values(args, ("--model",)):
        if "." in name or name.lstrip().startswith(("{", "[")) or name.endswith((".yaml", ".yml", ".json")):
            continue  # a class path, inline config or config file: jsonargparse checks those
        model_class(name)  # an unknown name raises an error that lists the registered ones


class LitVisionCLI(LightningCLI):
    def init_parser(self, **kwargs):
        # No abbreviations (`--trainer.max_epoch` is a mistake, not max_epochs) and parse errors
        # raised rather than printed after the whole usage: `parse_arguments` words them.
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        for subcommand, subparser in getattr(self, "_subcommand_parsers", {}).items():
            for action in subparser._actions:
                if action.dest == "ckpt_path":
                    action.help = CKPT_PATH_HELP.get(subcommand, CKPT_PATH_HELP["other"])

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--experiment",
            type=str,
            default="default",
            help="Run name: each fit logs to logs/<experiment>/version_N and checkpoints to "
            "checkpoints/<experiment>/version_N (a new N per run); validate/test/predict log to "
            "logs/<experiment>/eval/version_N. --ckpt_path last resumes the newest version's last.ckpt.",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=500,
            help="Write checkpoints/<experiment>/version_N/last.ckpt every N optimiser steps, as well as at every "
            "epoch end (0: at epoch end only). A killed run resumes with --ckpt_path last.",
        )
        parser.add_argument(
            "--checkpoint_monitor",
            type=str,
            default="val/top1",
            help="The metric (higher is better) that picks the run's best-*.ckpt: val/top1, or val/adv_top1 "
            "(PGD) or val/robust_top1 (per image correct clean, under PGD and FGSM) for a robust run (both logged by "
            "the AdversarialValidation callback).",
        )
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}})
        # The class count is stated once, by the data: the model's head always matches it.
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="parse")

    def parse_arguments(self, parser, args) -> None:
        self._raw_args = list(args) if isinstance(args, (list, tuple)) else (sys.argv[1:] if args is None else [])
        check_model_name(self._raw_args)
        try:
            super().parse_arguments(parser, args)
        except argparse.ArgumentError as error:
            subcommand = self._raw_args[0] if self._raw_args and self._raw_args[0] in self.subcommands() else None
            subparser = getattr(self, "_subcommand_parsers", {}).get(subcommand, parser)
            raise LitVisionError(flag_error_message(error, subcommand, subparser)) from None
        subcommand = self.config.get("subcommand")
        check_model_classes(self._raw_args, self.config[subcommand] if subcommand else self.config)

    def instantiate_trainer(self, **kwargs):
        """Add the project's defaults (TensorBoard logger, checkpointing, finite-loss check, LR
        monitor, submission writer, atomic checkpoint writes) unless the user configured their own."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        experiment = config["experiment"]
        trainer_config = config["trainer"]
        callbacks = list(trainer_config.get("callbacks") or [])
        default_logger = trainer_config.get("logger") in (None, True)
        default_checkpointing = trainer_config.get("enable_checkpointing", True) is not False and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        )
        training = self.subcommand in (None, "fit")
        # A fit claims a version (and its checkpoint folder) when it writes anything there.
        version = None
        if training and (default_logger or default_checkpointing):
            version = run_folders.fit_version(experiment)
        elif not training and default_logger:
            version = run_folders.eval_version(experiment)
        if default_logger:
            name = experiment if training else f"{experiment}/{EVAL_FOLDER}"
            kwargs["logger"] = TensorBoardLogger(LOG_ROOT, name=name, version=version, default_hp_metric=False)
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
        if trainer_config.get("enable_model_summary") is not False and not any(
            isinstance(c, ModelSummary) for c in callbacks
        ):
            callbacks.append(SummaryWithoutZeroFlops())
            kwargs["enable_model_summary"] = False  # Lightning's own default one (it would say it skips it)
        if training and not any(isinstance(c, StopOnSignal) for c in callbacks):
            callbacks.append(StopOnSignal())
        if not any(isinstance(c, FiniteLossCheck) for c in callbacks):
            callbacks.append(FiniteLossCheck())
        if trainer_config.get("logger") is not False and not any(isinstance(c, LearningRateMonitor) for c in callbacks):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if self.subcommand == "predict" and not any(isinstance(c, SubmissionWriter) for c in callbacks):
            callbacks.append(SubmissionWriter())
        kwargs["callbacks"] = callbacks
        plugins = trainer_config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs["plugins"] = plugins
        return super().instantiate_trainer(**kwargs)

    # ------------------------------------------------------------------ --ckpt_path
    def _parse_ckpt_path(self) -> None:
        """Read `--ckpt_path FILE` safely (weights_only=True; clear errors for a missing,
        truncated, foreign or unsafe file), check it against the config, then let its saved
        hyperparameters fill in the model's (as LightningCLI does): the checkpoint restores
        its architecture unless the user named a different one, which is an error."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path in ("last", "best"):
            ckpt_path = str(run_folders.resolve_ckpt_keyword(config["experiment"], ckpt_path))
            console.say(f"--ckpt_path {config['ckpt_path']}: using {ckpt_path} (the newest of experiment "
                        f"{config['experiment']!r}).")  # fmt: skip
            config["ckpt_path"] = ckpt_path
        if not ckpt_path or str(ckpt_path) in CKPT_PATH_KEYWORDS or "://" in str(ckpt_path):
            return
        checkpoint = load_lightning_checkpoint(ckpt_path)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        configured = (config.get("model") or {}).get("class_path")
        saved = hparams.get("_class_path")
        explicit = self._model_named_explicitly(config)
        check_checkpoint_matches(
            checkpoint, ckpt_path, configured if explicit else None, (config.get("data") or {}).get("num_classes")
        )
        if subcommand == "fit":
            trainer = config.get("trainer") or {}
            check_something_to_train(checkpoint, ckpt_path, trainer.get("max_epochs"), trainer.get("max_steps"))
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if saved:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    # ------------------------------------------------------------------ console
    def before_fit(self) -> None:
        self._start()

    def before_validate(self) -> None:
        self._start()

    def before_test(self) -> None:
        self._start()

    def before_predict(self) -> None:
        self._start()

    def _start(self) -> None:
        console.bar_may_be_open = self.trainer.progress_bar_callback is not None

    def after_fit(self) -> None:
        console.bar_may_be_open = False
        folders = {cb.dirpath for cb in self.trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)}
        # Only folders the run wrote into: a fast_dev_run (or a fit with nothing to save) names none.
        written = [folder for folder in sorted(folders) if os.path.isdir(folder) and os.listdir(folder)]
        where = [f"checkpoints in {os.path.relpath(folder)}" for folder in written]
        if self.trainer.logger is not None and self.trainer.log_dir and os.path.isdir(self.trainer.log_dir):
            where.append(f"logs in {os.path.relpath(self.trainer.log_dir)}")
        if where:
            console.say(f"fit done: {'; '.join(where)}.")
        elif self.trainer.fast_dev_run:
            console.say("fit done: a fast_dev_run checks the run end to end and writes no checkpoint or log.")
        else:
            console.say("fit done: no checkpoint or log written (checkpointing and the logger are off).")
        run_folders.release_unused()  # the version folders claimed for this run and left empty
        # A guard that ended the fit early says so last, and the exit status is not 0.
        for guard in self.trainer.callbacks:
            if isinstance(guard, AdversarialValidation) and guard.outcome():
                console.say(guard.outcome())
                if guard.stopped:
                    self.exit_code = COLLAPSE_EXIT_CODE

    def after_validate(self) -> None:
        self._say_where_logs_went("validate")

    def after_test(self) -> None:
        self._say_where_logs_went("test")

    def _say_where_logs_went(self, subcommand: str) -> None:
        console.bar_may_be_open = False
        if self.trainer.logger is not None and self.trainer.log_dir:
            console.say(f"{subcommand} done: logs in {os.path.relpath(self.trainer.log_dir)}.")

    def _model_named_explicitly(self, config) -> bool:
        """Whether the user chose the architecture (`--model X` or a config file's `model:`)
        rather than leaving the default."""
        if (config.get("model") or {}).get("class_path") != DEFAULT_MODEL:
            return True
        for token in getattr(self, "_raw_args", []):
            if token in ("--model", "--model.class_path") or token.startswith(("--model=", "--model.class_path=")):
                return True
        for path in list(self.config.get("config") or []) + list(config.get("config") or []):
            try:
                content = yaml.safe_load(Path(str(path)).read_text())
            except (OSError, yaml.YAMLError):
                continue
            model = content.get("model") if isinstance(content, dict) else None
            if isinstance(model, str) or (isinstance(model, dict) and "class_path" in model):
                return True
        return False


def user_message(error: Exception) -> str:
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


def find_user_error(error: BaseException) -> Exception | None:
    """The LitVisionError behind `error`, if any: jsonargparse wraps errors raised while it
    instantiates classes (a model's __init__, say) in its own ValueError. Lightning's
    MisconfigurationException (`--trainer.max_epochs -5`, say) is a user error too."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (LitVisionError, MisconfigurationException)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["plot"]:
        from lit_vision.plot import main as plot_main  # matplotlib only when plotting

        plot_main(argv[1:])
        return
    if argv[:1] == ["optimize"]:
        try:
            from lit_vision.data.optimize import main as optimize_main  # litdata only when converting
        except ImportError as error:
            console.say_error(f"lit-vision optimize needs LitData ({error}): pip install 'lit-vision[streaming]'.")
            sys.exit(2)

        optimize_main(argv[1:])
        return
    if argv[:1] == ["export"]:
        from lit_vision.export import main as export_main

        export_main(argv[1:])
        return
    console.silence_known_noise()
    # Until training starts (where StopOnSignal takes over) a signal has nothing to save: stop
    # at once with 143 / 130 (rather than Lightning's exit 0 for SIGTERM and 1 for Ctrl-C).
    previous = signals.install(signals.stop_at_once)
    try:
        cli = build_cli(args)
        run_folders.forget_claims()
        if getattr(cli, "exit_code", 0):
            sys.exit(cli.exit_code)
    except NothingToTrain as finished:
        console.say(str(finished))
    except Stopped as stopped:
        console.say(stopped.describe())
        sys.exit(stopped.exit_code)
    except SIGTERMException:  # Lightning's own, outside training
        console.say(Stopped(signal.SIGTERM).describe())
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        console.say(Stopped(signal.SIGINT).describe())
        sys.exit(128 + signal.SIGINT)
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        run_folders.release_unused()
        console.say_error(user_message(user_error))
        sys.exit(2)
    finally:
        signals.restore(previous)
        console.bar_may_be_open = False
        leave_the_process_group()


def leave_the_process_group() -> None:
    """Destroy a DDP process group before the interpreter finalises: Gloo's worker threads
    otherwise may still hold work when Python tears down, and the process aborts with
    "terminate called without an active exception" (exit -6) after a finished fit — seen
    here under load, pytorch issue 190489)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
