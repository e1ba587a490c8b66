"""What the CLI itself prints: one paragraph per message, on stderr, each starting on a line
of its own even when a progress bar was cut off mid-line (an error or a signal mid-epoch).
Also silences Lightning's promotional tips, which are not about the user's run."""

from __future__ import annotations

import logging
import sys

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
