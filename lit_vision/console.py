"""What the CLI itself prints: one paragraph per message, on stderr, each starting on a line
of its own even when a progress bar was cut off mid-line (an error or a signal mid-epoch).
Also silences Lightning's promotional tips and the warnings that are noise on every run of
this CLI (each filter names its one message: nothing else is hidden)."""

from __future__ import annotations

import logging
import sys
import warnings

from lightning.fabric.utilities.rank_zero import rank_zero_only

PROGRAM = "lit-vision"
# Set while a progress bar may hold an unfinished line (a subcommand is running with one).
bar_may_be_open = False


@rank_zero_only
def say(message: str) -> None:
    """Print `lit-vision: message` on stderr (rank 0 only), on a fresh line."""
    prefix = "\n" if bar_may_be_open else ""
    print(f"{prefix}{PROGRAM}: {message}", file=sys.stderr, flush=True)


def say_error(message: str) -> None:
    """Like `say`, on every rank: each rank's failure is its own."""
    prefix = "\n" if bar_may_be_open else ""
    print(f"{prefix}{PROGRAM}: error: {message}", file=sys.stderr, flush=True)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in str(record.msg)


def silence_lightning_tips() -> None:
    """Drop Lightning's "💡 Tip: ... try installing litlogger/litmodels" lines."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())


def silence_known_noise() -> None:
    """Lightning's tips, and the one warning every command printed that is not about the
    user's run: Lightning 2.6's own use of a torch API that torch 2.14 deprecates."""
    silence_lightning_tips()
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )  # fmt: skip


def ignore_lightning_warning(message_start: str) -> None:
    """Hide the Lightning warning whose message starts with `message_start` (for a situation
    this CLI creates on purpose, such as a new checkpoint folder for every resumed run)."""
    import re

    warnings.filterwarnings("ignore", message=re.escape(message_start), module=r"lightning\.pytorch\.")
