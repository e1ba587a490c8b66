"""`LitVisionCLI`: LightningCLI for fit, validate, test and predict, and `build_cli`.

Every run is named by `--experiment NAME` and owns its folders (`lit_vision.run_folders`):
each `fit` claims checkpoints/NAME/version_N/ (last.ckpt and the best by --checkpoint_monitor) and
logs to logs/NAME/version_N/, the same N; validate/test/predict log to logs/NAME/eval/version_M/,
so `lit-vision plot logs/NAME` shows training runs only. Two runs never share a folder.
`--ckpt_path last` (or `best`) means that file of the newest version of NAME holding one
(`lit_vision.cli.ckpt_path`).

What this class adds to LightningCLI: the project's flags (`--experiment`,
`--checkpoint_every_n_steps`, `--checkpoint_monitor`), one class count linked from the data to
the model, flag mistakes worded as one paragraph (`flag_errors`), the Trainer defaults
(`trainer_defaults`), and a closing line saying where a run wrote. Multi-device runs need flags
only: `--trainer.devices 4 --trainer.strategy ddp` (plus `--trainer.num_nodes N` under torchrun
or SLURM); see the README.
"""

from __future__ import annotations

import argparse
import os
import sys

from lightning.pytorch.cli import LightningCLI

import lit_vision.models  # noqa: F401  (registers every architecture for --model NAME)
from lit_vision import console
from lit_vision.callbacks.adversarial_validation import AdversarialValidation
from lit_vision.callbacks.evaluated_images import EvaluatedImages
import lit_vision.run_folders as run_folders
from lit_vision.cli.ckpt_path import CKPT_PATH_HELP, DEFAULT_MODEL, checkpoint_model_settings
from lit_vision.cli.class_count_check import check_model_classes
from lit_vision.cli.config_files import flag_values
from lit_vision.cli.flag_errors import flag_error_message
from lit_vision.cli.loggers import add_logger_defaults, check_logger_packages, describe_other_loggers, logger_failure
from lit_vision.cli.subcommands import SEEDS_HELP, SEEDS_SUBCOMMANDS
from lit_vision.cli.timm_flags import expand_model_shorthand, fill_timm_img_size
from lit_vision.cli.trainer_defaults import trainer_kwargs
from lit_vision.data import MiniPlacesDataModule
from lit_vision.errors import LitVisionError
from lit_vision.models import ImageClassifier
from lit_vision.models.registry import model_class
from lit_vision.studies.summary import accuracy_intervals

COLLAPSE_EXIT_CODE = 3  # a fit stopped by AdversarialValidation (catastrophic over-fitting)


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
        expanded = expand_model_shorthand(self._raw_args)  # --model timm:NAME
        expanded = add_logger_defaults(expanded, run_folders.LOG_ROOT)  # a file logger's save_dir, MLflow's store
        if expanded != self._raw_args:
            args, self._raw_args = expanded, expanded
            # Lightning warns when args are given while sys.argv has some: these are sys.argv's own.
            console.ignore_lightning_warning("LightningCLI's args parameter is intended")
        check_model_name(self._raw_args)
        try:
            super().parse_arguments(parser, args)
        except argparse.ArgumentError as error:
            subcommand = self._raw_args[0] if self._raw_args and self._raw_args[0] in self.subcommands() else None
            subparser = getattr(self, "_subcommand_parsers", {}).get(subcommand, parser)
            raise LitVisionError(flag_error_message(error, subcommand, subparser)) from None
        subcommand = self.config.get("subcommand")
        check_model_classes(self._raw_args, self.config[subcommand] if subcommand else self.config)
        fill_timm_img_size(self.config[subcommand] if subcommand else self.config)
        check_logger_packages((self.config[subcommand] if subcommand else self.config).get("trainer.logger"))

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as error:
            # A logger that refuses its settings: its own reason, not jsonargparse's Union noise.
            parsed = self.config[self.subcommand] if self.subcommand else self.config
            failure = logger_failure(error, parsed.get("trainer.logger"))
            if failure is None:
                raise
            raise failure from error

    def instantiate_trainer(self, **kwargs):
        """The Trainer, with the project's defaults added (`lit_vision.cli.trainer_defaults`)."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        parsed = self.config[self.subcommand] if self.subcommand else self.config
        return super().instantiate_trainer(**trainer_kwargs(self.subcommand, config, kwargs, parsed.get("trainer.logger")))

    # ------------------------------------------------------------------ --ckpt_path
    def _parse_ckpt_path(self) -> None:
        """LightningCLI's hook for `--ckpt_path`: see `lit_vision.cli.ckpt_path`."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        model = checkpoint_model_settings(subcommand, self.config[subcommand], self.config, getattr(self, "_raw_args", []))
        if model:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

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
        if where and not self.trainer.fast_dev_run:
            where += describe_other_loggers(self.trainer.loggers)  # MLflow: where its run is
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
        self._say_accuracy_intervals()
        self._say_where_logs_went("validate")

    def after_test(self) -> None:
        self._say_accuracy_intervals()
        self._say_where_logs_went("test")

    def _say_accuracy_intervals(self) -> None:
        """Each top-1/top-5 accuracy with its Wilson 95% interval over the images evaluated: a
        figure from one evaluation of n images carries a binomial spread (±2.6 points at 90% on 500)."""
        counter = next((cb for cb in self.trainer.callbacks if isinstance(cb, EvaluatedImages)), None)
        if counter is None:
            return
        metrics = {name: float(value) for name, value in self.trainer.callback_metrics.items() if value.numel() == 1}
        for name, found in accuracy_intervals({"metrics": metrics, "images": counter.images}).items():
            console.say(
                f"{name} {found['value']:.4f}: 95% interval [{found['low']:.4f}, {found['high']:.4f}] "
                f"(Wilson, {found['images']} images)"
            )

    def _say_where_logs_went(self, subcommand: str) -> None:
        console.bar_may_be_open = False
        if self.trainer.logger is not None and self.trainer.log_dir:
            console.say(f"{subcommand} done: logs in {os.path.relpath(self.trainer.log_dir)}.")


def build_cli(args: list[str] | None = None, run: bool = True) -> LitVisionCLI:
    """Parse `args` (default: sys.argv), build model, data and trainer, and run the subcommand."""
    return LitVisionCLI(
        ImageClassifier,
        MiniPlacesDataModule,
        subclass_mode_model=True,
        auto_configure_optimizers=False,  # each model owns its optimiser and schedule
        save_config_kwargs={"overwrite": True},
        # `--seeds` is read before LightningCLI parses (lit_vision.studies.seeds): its help says so.
        parser_kwargs={name: {"epilog": SEEDS_HELP} for name in SEEDS_SUBCOMMANDS},
        args=args,
        run=run,
    )
