"""`main`: the process around a `lit-vision` command: which subcommand runs, and its exit status.

Exit status: 0 done, 2 a user error (one paragraph naming the culprit), 3 a fit that
`AdversarialValidation` stopped on catastrophic over-fitting (its closing line says which epoch's
weights it kept), 130 / 143 stopped by SIGINT / SIGTERM, 1 anything else (a bug: its traceback
is printed).

This module imports nothing heavy at its top: `lit-vision --help`, an unknown subcommand and the
package's own subcommands (`lit_vision.cli.subcommands`) answer without loading Lightning, which
alone takes seconds to import. Only Lightning's subcommands load it.
"""

from __future__ import annotations

import importlib
import signal
import sys

import lit_vision.cli.subcommands as subcommands

HELP_FLAGS = ("-h", "--help")


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in HELP_FLAGS:
        print(subcommands.help_text(), file=sys.stdout if argv else sys.stderr)
        if not argv:
            _error("a subcommand is expected (see the list above).")
        return
    name = argv[0]
    if name in subcommands.COMMANDS:
        run_command(subcommands.COMMANDS[name], name, argv[1:])
    elif name in subcommands.SEEDS_SUBCOMMANDS and any(a == "--seeds" or a.startswith("--seeds=") for a in argv[1:]):
        from lit_vision.studies.seeds import main as seeds_main  # the same run once per seed, then a summary

        seeds_main(name, argv[1:])
    elif name in subcommands.LIGHTNING_SUBCOMMANDS:
        run_lightning(args)
    elif name.startswith("-"):
        # Options before the subcommand (`--config`, `--print_config`) are LightningCLI's too;
        # a wrong word after them is answered here, with every subcommand, as without them.
        after = subcommands.subcommand_after_options(argv)
        if after is None and not any(a in HELP_FLAGS for a in argv):
            # Answered before Lightning loads (seconds): nothing would run without a subcommand.
            _error(subcommands.missing_subcommand_message())
        elif after is None or after in subcommands.LIGHTNING_SUBCOMMANDS:
            run_lightning(args)
        elif after in subcommands.COMMANDS:
            _error(subcommands.misplaced_options_message(after))
        else:
            _error(subcommands.unknown_subcommand_message(after))
    else:
        _error(subcommands.unknown_subcommand_message(name))


def run_command(command: subcommands.Command, name: str, argv: list[str]) -> None:
    """Import the subcommand's module (only now) and run its `main(argv)`."""
    try:
        module = importlib.import_module(command.module)
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if command.needs and missing.split(".")[0] == command.needs:
            install = f"pip install 'lit-vision[{command.extra}]'" if command.extra else f"pip install {command.needs}"
            _error(f"{subcommands.PROGRAM} {name} needs {command.needs} ({error}): {install}.")
        raise
    module.main(argv)


def run_lightning(args: list[str] | None) -> None:
    """fit / validate / test / predict through LitVisionCLI, with this package's exit statuses."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from lit_vision import console, signals
    import lit_vision.run_folders as run_folders
    from lit_vision.cli.lightning_cli import build_cli
    from lit_vision.cli.resume import NothingToTrain

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
    except signals.Stopped as stopped:
        console.say(stopped.describe())
        sys.exit(stopped.exit_code)
    except SIGTERMException:  # Lightning's own, outside training
        console.say(signals.Stopped(signal.SIGTERM).describe())
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        console.say(signals.Stopped(signal.SIGINT).describe())
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


def _error(message: str) -> None:
    """`lit-vision: error: message` on stderr, exit 2 (for the paths that load no console)."""
    print(f"{subcommands.PROGRAM}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def user_message(error: Exception) -> str:
    """The error's own message, without the traceback text that DataLoader workers prepend."""
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def find_user_error(error: BaseException) -> Exception | None:
    """The LitVisionError behind `error`, if any: jsonargparse wraps errors raised while it
    instantiates classes (a model's __init__, say) in its own ValueError. Lightning's
    MisconfigurationException (`--trainer.max_epochs -5`, say) is a user error too."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from lit_vision.errors import LitVisionError

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (LitVisionError, MisconfigurationException)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def leave_the_process_group() -> None:
    """Destroy a DDP process group before the interpreter finalises: Gloo's worker threads
    otherwise may still hold work when Python tears down, and the process aborts with
    "terminate called without an active exception" (exit -6) after a finished fit — seen
    here under load, pytorch issue 190489)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
