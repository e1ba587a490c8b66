"""Every `lit-vision` subcommand, in one table: what `lit-vision --help` lists, what the
wrong-subcommand error offers, and where `main` sends the command line.

Two kinds:
- Lightning's own (`fit`, `validate`, `test`, `predict`): the `LightningCLI` in
  `lit_vision.cli.lightning_cli` parses and runs them. Listed here only for the help text.
- Commands of this package (`export`, `plot`, `optimize`, ...): a module with a
  `main(argv: list[str]) -> None` that parses the arguments after the subcommand's name itself
  (argparse, exit 2 with one paragraph on bad input). Its module is imported only when that
  subcommand runs, so `lit-vision --help` and every other command never pay for its imports.

Adding a subcommand is one entry in `COMMANDS` below, e.g. for an Optuna study:

    "tune": Command("lit_vision.cli.tune", "search hyperparameters with an Optuna study",
                    needs="optuna", extra="tune"),

and a module `lit_vision/cli/tune.py` with its `main(argv)`. `needs`/`extra` name an optional
dependency: when it is missing, the command says which `pip install 'lit-vision[extra]'` adds
it instead of failing with an ImportError. Nothing else needs editing (help, dispatch and the
unknown-subcommand error all read this table).
"""

from __future__ import annotations

from dataclasses import dataclass

PROGRAM = "lit-vision"


@dataclass(frozen=True)
class Command:
    """A subcommand run by a module's `main(argv)` rather than by LightningCLI."""

    module: str  # imported when the subcommand runs: it defines main(argv: list[str]) -> None
    summary: str  # one line for `lit-vision --help`
    needs: str | None = None  # an optional package the module imports (e.g. "litdata")
    extra: str | None = None  # the pyproject extra that installs it (e.g. "streaming")


# Lightning's subcommands, in its order, with the one line `lit-vision --help` shows.
LIGHTNING_SUBCOMMANDS = {
    "fit": "train a model (--config FILE; --ckpt_path last resumes the newest run)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split (labelled data)",
    "predict": "predict the test split (the challenge submission file) or a folder of images",
}

# Lightning's subcommands that `--seeds` repeats (`lit_vision.studies.seeds` takes the flag off the
# command line before LightningCLI parses it, so Lightning's own help would never mention it).
SEEDS_SUBCOMMANDS = ("fit", "validate", "test")
SEEDS_HELP = (
    "--seeds 0,1,2: run this command once per seed (--seed_everything S, each run in its own folder), then print "
    "and save one summary over the runs (mean, standard deviation, 95% interval) under the experiment's log folder."
)

# Subcommands of this package: one entry each.
COMMANDS: dict[str, Command] = {
    "export": Command(
        "lit_vision.cli.export", "write a checkpoint as TorchScript, torch.export or ONNX, checked against it"
    ),
    "plot": Command("lit_vision.cli.plot", "render runs' learning-rate, loss and accuracy curves as PNG"),
    "optimize": Command(
        "lit_vision.data.optimize", "convert a dataset folder into LitData chunks for --data.stream",
        needs="litdata", extra="streaming",
    ),  # fmt: skip
    "tune": Command(
        "lit_vision.studies.tune", "search hyperparameters with an Optuna study (each trial a fit; --seeds too)",
        needs="optuna", extra="tune",
    ),  # fmt: skip
}


# LightningCLI's options that may precede the subcommand and take the next word as their value
# (`--config FILE fit`); its other leading options (`--print_config[=flags]`, `-h`) take none.
LEADING_OPTIONS_WITH_VALUE = ("-c", "--config")


def subcommand_after_options(argv: list[str]) -> str | None:
    """The word that leading options precede (`--config FILE fit` -> "fit"): the first that is
    neither an option nor an option's value; None when there is none."""
    takes_value = False
    for token in argv:
        if takes_value:
            takes_value = False
        elif token.startswith("-"):
            takes_value = token in LEADING_OPTIONS_WITH_VALUE
        else:
            return token
    return None


def misplaced_options_message(name: str) -> str:
    """One paragraph for options written before one of this package's subcommands."""
    return (
        f"options before the subcommand are read by {', '.join(LIGHTNING_SUBCOMMANDS)} only; {name!r} takes its "
        f"options after its name: {PROGRAM} {name} [options] (`{PROGRAM} {name} --help` lists them)."
    )


def all_names() -> list[str]:
    """Every subcommand's name: Lightning's first, then this package's."""
    return [*LIGHTNING_SUBCOMMANDS, *COMMANDS]


def help_text() -> str:
    """`lit-vision --help`: usage and one line per subcommand."""
    width = max(map(len, all_names()))
    lines = [
        f"usage: {PROGRAM} SUBCOMMAND [options]   ({PROGRAM} SUBCOMMAND --help for its options)",
        "",
        "MiniPlaces scene classification with PyTorch Lightning.",
        "",
        "subcommands:",
    ]
    for name, summary in [*LIGHTNING_SUBCOMMANDS.items(), *((n, c.summary) for n, c in COMMANDS.items())]:
        lines.append(f"  {name:<{width}}  {summary}")
    lines += ["", f"e.g. {PROGRAM} fit --config configs/quickstart.yaml"]
    return "\n".join(lines)


def missing_subcommand_message() -> str:
    """One paragraph for leading options (`--config FILE`) that no subcommand follows."""
    return (
        f"a subcommand is expected after the options: one of {', '.join(all_names())} "
        f"(e.g. {PROGRAM} --config FILE fit, or {PROGRAM} fit --config FILE; options before the subcommand are "
        f"read by {', '.join(LIGHTNING_SUBCOMMANDS)} only). `{PROGRAM} --help` says what each does."
    )


def unknown_subcommand_message(given: str) -> str:
    """One paragraph for `lit-vision NAME` with a NAME that is no subcommand."""
    import difflib

    close = difflib.get_close_matches(given, all_names(), n=1)
    guess = f" (did you mean {close[0]}?)" if close else ""
    return (
        f"unknown subcommand {given!r}{guess}: expected one of {', '.join(all_names())}. "
        f"`{PROGRAM} --help` says what each does."
    )
