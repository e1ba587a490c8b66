"""`lit-vision tune`: an Optuna study over a recipe, each trial an ordinary `lit-vision fit`.

    lit-vision tune --config configs/quickstart.yaml --space configs/spaces/quickstart.yaml --trials 20
    lit-vision tune ... --storage postgresql://user:pw@host/db     # many machines, one study
    lit-vision tune ... --seeds 0,1,2                              # each trial's value: a mean over 3 seeds

The study (TPE sampler, median pruner, RDB storage) is Optuna's. Its storage is SQLite in
logs/<experiment>/tune/<study>/study.db unless `--storage` names any SQLAlchemy URL; every
process running the same command on the same storage takes its own trials from it. `--trials N`
is the study's total of finished (complete or pruned) trials: a restarted command runs only what
is missing, and a trial whose process died (its heartbeat stopped) is marked failed and run again.
Flags this command does not know (`--trainer.max_epochs 4`, ...) go to every trial's fit.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

import optuna  # at the top: `lit-vision tune` without it says which extra installs it

from lit_vision import console
from lit_vision.run_folders import LOG_ROOT
from lit_vision.errors import LitVisionError
import lit_vision.studies.report as report
import lit_vision.studies.runner as runner
from lit_vision.studies.pruning import OptunaPruning
from lit_vision.studies.seeds import parse_seeds
from lit_vision.studies.space import Space, check_against_cli, flag, load_space
from lit_vision.studies.storage import PRUNERS, make_pruner, make_storage, quiet_experimental

USER_ERROR_EXIT = 2
COLLAPSE_EXIT = 3  # a fit its collapse guard stopped: it ends with a measured, restored model


class TrialFailed(Exception):
    """A trial's run crashed: the trial is marked failed and the study goes on."""


class Interrupted(Exception):
    """SIGINT / SIGTERM reached this process during a trial: the study stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # One paragraph (argparse would print the whole usage first), exit 2 like every user error.
        raise LitVisionError(f"{message} for `lit-vision tune`. `lit-vision tune --help` lists every option.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lit-vision tune",
        description="An Optuna study: each trial is `lit-vision fit` with the recipe plus the trial's values.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", action="append", required=True, help="The recipe (several stack, as for fit).")
    parser.add_argument("--space", required=True, help="The search space YAML (see configs/spaces/).")
    parser.add_argument("--trials", type=int, required=True, help="Finished trials the study should hold in all.")
    parser.add_argument("--study", default=None, help="Study name (default: the space file's name).")
    parser.add_argument(
        "--storage", default=None,
        help="SQLAlchemy URL of the study's database (default: sqlite:///logs/<experiment>/tune/<study>/study.db).",
    )  # fmt: skip
    parser.add_argument("--metric", default=None, help="Logged metric to optimise (default: the space's, or val/top1).")
    parser.add_argument("--direction", choices=("maximize", "minimize"), default=None)
    parser.add_argument("--seeds", default=None, help="Run each trial over these seeds (0,1,2); its value is the mean.")
    parser.add_argument("--pruner", choices=PRUNERS, default="median")
    parser.add_argument("--pruner_startup_trials", type=int, default=5, help="Trials that finish before any is pruned.")
    parser.add_argument("--pruner_warmup_epochs", type=int, default=0, help="Epochs of each trial before it may be pruned.")
    parser.add_argument("--sampler_seed", type=int, default=None, help="Seed of the TPE sampler (default: random).")
    parser.add_argument(
        "--heartbeat", type=int, default=10,
        help="Seconds between the study process's heartbeats; a trial silent for 3 is dead (failed, run again).",
    )  # fmt: skip
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    args, passthrough = build_parser().parse_known_args(argv)
    if args.trials < 1:
        raise LitVisionError(f"--trials {args.trials}: expected a positive number of trials.")
    if args.heartbeat < 1:
        raise LitVisionError(f"--heartbeat {args.heartbeat}: expected a positive number of seconds.")
    if any(token.startswith("--seed_everything") for token in passthrough) and args.seeds:
        raise LitVisionError("--seeds and --seed_everything both set the seed: give one of them.")
    return args, passthrough


class Study:
    """One process's part of a study: the objective that runs trials, and the loop."""

    def __init__(self, args: argparse.Namespace, recipe_args: list[str], space: Space, experiment: str) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the study prints its own lines
        self.args = args
        self.recipe_args = recipe_args
        self.space = space
        self.metric = args.metric or space.metric
        self.direction = args.direction or space.direction
        self.seeds = parse_seeds(args.seeds) if args.seeds else [None]
        self.name = args.study or space.path.stem
        self.folder = Path(LOG_ROOT) / experiment / "tune" / self.name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.url = args.storage or f"sqlite:///{(self.folder / 'study.db').resolve()}"
        self.pruner = (args.pruner, args.pruner_startup_trials, args.pruner_warmup_epochs)
        self.storage = make_storage(self.url, heartbeat_s=args.heartbeat)
        self.study = optuna.create_study(
            study_name=self.name,
            storage=self.storage,
            # constant_liar: trials running in other processes count as bad guesses while they run,
            # so processes sharing the study do not all sample the same region (Optuna's advice).
            sampler=optuna.samplers.TPESampler(seed=args.sampler_seed, constant_liar=True),
            pruner=make_pruner(*self.pruner),
            direction=self.direction,
            load_if_exists=True,
        )
        self._check_same_study()

    def _check_same_study(self) -> None:
        """A study name in a storage means one space, metric and direction: a command that
        resumes it must ask the same question."""
        fingerprint = {**self.space.as_dict(), "metric": self.metric, "direction": self.direction}
        stored = self.study.user_attrs.get("space")
        if stored is None:
            self.study.set_user_attr("space", fingerprint)
            self.study.set_user_attr("recipe", self.recipe_args)
        elif stored != fingerprint:
            raise LitVisionError(
                f"study {self.name!r} in {self.url} was started with another search space, metric or direction "
                f"({stored}); this command asks {fingerprint}. Give --study a new name for a new study, or run "
                "the command that started it."
            )

    def finished(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    # ------------------------------------------------------------------ one trial
    def objective(self, trial) -> float:
        values = [p.suggest(trial) for p in self.space.params]
        flags = [flag(p.key, v) for p, v in zip(self.space.params, values)]
        console.say(f"trial {trial.number} of study {self.name!r}: {' '.join(flags)}")
        # Which process (and machine) ran it: several may share one study.
        trial.set_user_attr("study_process", f"{socket.gethostname()}:{os.getpid()}")
        results = []
        for index, seed in enumerate(self.seeds):
            pruning = runner.callback_flag(
                f"{OptunaPruning.__module__}.{OptunaPruning.__name__}",
                storage=self.url, study_name=self.name, trial_number=trial.number, monitor=self.metric,
                pruner=self.pruner[0], startup_trials=self.pruner[1], warmup_epochs=self.pruner[2],
                run_index=index, report=index == 0,
            )  # fmt: skip
            seed_flags = [] if seed is None else ["--seed_everything", str(seed)]
            result = runner.run("fit", self.recipe_args, [*flags, *seed_flags, pruning])
            value = self._value_of(trial, result, flags)
            if value is None:  # pruned: the remaining seeds would not change that
                raise optuna.TrialPruned(trial.user_attrs.get("reason", "pruned"))
            results.append(value)
        if len(results) > 1:
            trial.set_user_attr("seed_values", results)
        return sum(results) / len(results)

    def _value_of(self, trial, result: runner.RunResult, flags: list[str]) -> float | None:
        """The run's final metric, None if the run was pruned; raises for a run that failed."""
        if result.stopped_by_signal:
            signum = result.signal or (result.exit_code - 128)
            trial.set_user_attr("reason", f"stopped by {signal.Signals(signum).name}; run again as a new trial")
            # The same values go back into the queue: the same command resumes with them.
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
            raise Interrupted(signum)
        if result.exit_code == USER_ERROR_EXIT:
            trial.set_user_attr("reason", "the CLI refused the trial's values (exit 2)")
            raise LitVisionError(
                f"trial {trial.number}: `lit-vision fit {' '.join(self.recipe_args)} {' '.join(flags)}` exited 2 (its "
                f"message is above): check the space {self.space.path} against the recipe."
            )
        if result.exit_code not in (0, COLLAPSE_EXIT) or result.record is None:
            trial.set_user_attr("reason", f"its run failed (exit {result.exit_code}; its traceback is above)")
            raise TrialFailed(f"trial {trial.number}: its run exited {result.exit_code}")
        if result.exit_code == COLLAPSE_EXIT:
            trial.set_user_attr("reason", "the collapse guard stopped its run (weights of its best epoch restored)")
        # The pruning callback's word, as the run wrote it into the study.
        stored = self._stored_user_attrs(trial)
        if "pruned_at_epoch" in stored:
            trial.set_user_attr("reason", stored.get("reason", "pruned"))
            return None
        metrics = result.record["metrics"]
        if self.metric not in metrics:
            raise LitVisionError(
                f"--metric {self.metric}: trial {trial.number}'s run did not log it; it logged "
                f"{', '.join(sorted(metrics))}. Pick one of those (in the space's metric: or with --metric)."
            )
        return float(metrics[self.metric])

    def _stored_user_attrs(self, trial) -> dict:
        """The trial's user attributes as the storage holds them now (the run wrote some)."""
        study_id = self.storage.get_study_id_from_name(self.name)
        return self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)).user_attrs

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        """Run trials until the study holds `--trials` finished ones; returns the exit status."""
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        # A trial whose process died (no heartbeat for 3 intervals): failed, and queued again.
        with quiet_experimental():
            optuna.storages.fail_stale_trials(self.study)
        missing = self.args.trials - self.finished()
        code = 0
        if missing <= 0:
            console.say(f"study {self.name!r} already holds {self.finished()} finished trials (--trials {self.args.trials}).")
        else:
            try:
                self.study.optimize(
                    self.objective,
                    n_trials=missing,
                    catch=(TrialFailed,),
                    # Other processes on the same storage finish trials too: stop at the total.
                    callbacks=[MaxTrialsCallback(self.args.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
                )
            except Interrupted as stop:
                code = 128 + stop.signum
        outputs = report.write_report(self.study, self.recipe_args, self.space, self.folder)
        where = [str(outputs["table"])] + [str(p) for p in [outputs["best"], *outputs["plots"]] if p]
        console.say(f"study {self.name!r} ({self.url}): {self.finished()} finished trials; {', '.join(where)}.")
        if code:
            console.say(
                f"stopped by {signal.Signals(code - 128).name}: the interrupted trial is marked failed and queued "
                "again; the same command resumes the study."
            )
        return code


def _stop(signum: int, frame) -> None:
    raise Interrupted(signum)


def main(argv: list[str]) -> None:
    """`lit-vision tune ...` (the subcommand's entry): exits with the study's status, or 2 with
    one paragraph for bad input."""
    try:
        code = run(argv)
    except LitVisionError as error:
        console.say_error(str(error))
        sys.exit(USER_ERROR_EXIT)
    sys.exit(code)


def run(argv: list[str]) -> int:
    """`lit-vision tune ...`; returns the exit status (errors are raised as LitVisionError).
    A signal between trials stops at once (130 / 143); during a trial it goes to the trial's
    run, which saves last.ckpt, and the study stops after it."""
    args, passthrough = parse(argv)
    recipe_args = [token for config in args.config for token in ("--config", config)] + passthrough
    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        space = load_space(args.space)
        merged = check_against_cli(space, recipe_args)
        study = Study(args, recipe_args, space, str(merged.get("experiment") or "default"))
        return study.run()
    except Interrupted as stop:
        console.say(f"tune stopped by {signal.Signals(stop.signum).name} between trials.")
        return 128 + stop.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    main(sys.argv[1:])
