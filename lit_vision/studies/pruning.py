"""`OptunaPruning`: the Lightning callback through which a trial's run reports its metric to the
study after every validation and stops when Optuna's pruner says the trial is hopeless.

The trial runs in a child process (see `runner`), so the callback reaches the study through its
storage (the same SQLAlchemy URL as the study's process) and the trial's id, not through a
`Trial` object handed over in memory. optuna-integration's `PyTorchLightningPruningCallback`
takes such an object and raises `optuna.TrialPruned` out of `trainer.fit`: in a child that is a
crash with a traceback and no checkpoint of the last epoch. This callback stops the fit the way
`EarlyStopping` does (`trainer.should_stop`), so the pruned run ends like any other (last.ckpt,
closed logs, exit 0) and its folder says why it stopped (`trial.json`); the study's process
reads that and tells Optuna the trial was pruned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lightning.pytorch import Callback

from lit_vision.studies.storage import make_pruner, make_storage
from lit_vision.utils.files import atomic_write_text

TRIAL_FILE = "trial.json"  # in the trial's log folder: which trial it is, its values, its state


def write_trial_file(log_dir: str | os.PathLike, content: dict) -> None:
    atomic_write_text(Path(log_dir) / TRIAL_FILE, json.dumps(content, indent=2, default=str) + "\n")


class OptunaPruning(Callback):
    """Report `monitor` to trial `trial_number` of study `study_name` in `storage` at each
    validation end; stop the fit when the study's pruner prunes the trial. Also records the
    run's folders in the study (`log_dir_<run_index>`) and a `trial.json` in its log folder."""

    def __init__(
        self,
        storage: str,
        study_name: str,
        trial_number: int,
        monitor: str = "val/top1",
        pruner: str = "median",
        startup_trials: int = 5,
        warmup_epochs: int = 0,
        run_index: int = 0,
        report: bool = True,
    ) -> None:
        self.storage = storage
        self.study_name = study_name
        self.trial_number = trial_number
        self.run_index = run_index  # which of the trial's runs (one per seed) this is
        self.report = report  # only one run per trial reports (an epoch is reported once)
        self.trial_id: int | None = None
        self.monitor = monitor
        self.pruner = (pruner, startup_trials, warmup_epochs)
        self.pruned_at: int | None = None
        self._trial = None

    def _the_trial(self):
        if self._trial is None:
            import optuna

            storage = make_storage(self.storage)
            study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=make_pruner(*self.pruner))
            study_id = storage.get_study_id_from_name(self.study_name)
            self.trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def _folder_record(self, trainer, state: str, **extra) -> dict:
        trial = self._the_trial()
        return {
            "study": self.study_name,
            "trial": trial.number,
            "params": trial.params,
            "monitor": self.monitor,
            "state": state,
            "pid": os.getpid(),
            "checkpoint_dir": self._checkpoint_dir(trainer),
            **extra,
        }

    @staticmethod
    def _checkpoint_dir(trainer) -> str | None:
        folders = [cb.dirpath for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
        return os.path.abspath(folders[0]) if folders else None

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        trial = self._the_trial()
        # Where the run writes: the study's table and its resume point to these folders.
        if trainer.log_dir:
            trial.set_user_attr(f"log_dir_{self.run_index}", os.path.abspath(trainer.log_dir))
            write_trial_file(trainer.log_dir, self._folder_record(trainer, "RUNNING"))
        if self._checkpoint_dir(trainer):
            trial.set_user_attr(f"checkpoint_dir_{self.run_index}", self._checkpoint_dir(trainer))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not self.report:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:
                trial = self._the_trial()
                trial.report(float(value), step=trainer.current_epoch)
                prune = trial.should_prune()
        # Every rank stops at the same epoch: rank 0 asked the study.
        prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True
            if trainer.is_global_zero:
                value = float(trainer.callback_metrics[self.monitor])
                reason = (
                    f"pruned after epoch {self.pruned_at}: {self.monitor} {value:.4g} judged hopeless by the study's "
                    f"{self.pruner[0]} pruner"
                )
                self._the_trial().set_user_attr("pruned_at_epoch", self.pruned_at)
                self._the_trial().set_user_attr("reason", reason)
                if trainer.log_dir:
                    write_trial_file(
                        trainer.log_dir,
                        self._folder_record(trainer, "PRUNED", pruned_at_epoch=self.pruned_at, reason=reason),
                    )
                from lit_vision import console

                console.say(f"trial {self._the_trial().number} {reason}.")
