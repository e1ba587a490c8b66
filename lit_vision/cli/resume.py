"""Whether `fit --ckpt_path X` has anything left to train.

Resuming a run that already reached its `max_epochs` (or `max_steps`) trains nothing: Lightning
restores it, finds its loop done and returns. The CLI checks this before claiming a run
folder, says so and how to train longer, and exits 0 instead of claiming an empty version_N.
"""

from __future__ import annotations

# Lightning's fit loop: max_epochs None with max_steps -1 means 1000 epochs; with a step limit, no epoch limit.
LIGHTNING_DEFAULT_EPOCHS = 1000


class NothingToTrain(Exception):
    """`fit --ckpt_path` on a finished run: the message says so (not an error: exit 0)."""


def epoch_limit(max_epochs: int | None, max_steps: int) -> int:
    """The epoch limit Lightning's fit loop applies (-1: none)."""
    if max_epochs is None:
        return LIGHTNING_DEFAULT_EPOCHS if max_steps == -1 else -1
    return max_epochs


def check_something_to_train(checkpoint: dict, path: str, max_epochs: int | None, max_steps: int | None) -> None:
    """Raise NothingToTrain when the checkpoint's run already reached these limits, judged as
    Lightning's fit loop does (`epoch_progress.current.processed`, `global_step`)."""
    max_steps = -1 if max_steps is None else max_steps
    epochs = epoch_limit(max_epochs, max_steps)
    progress = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}
    done_epochs = (progress.get("current") or {}).get("processed")
    steps = checkpoint.get("global_step")
    if isinstance(steps, int) and max_steps != -1 and steps >= max_steps:
        limit, how = f"--trainer.max_steps {max_steps} ({steps} steps done)", f"--trainer.max_steps {max(2 * steps, steps + 1)}"
    elif isinstance(done_epochs, int) and epochs != -1 and done_epochs >= epochs:
        limit, how = f"--trainer.max_epochs {epochs} ({done_epochs} epoch{'s' if done_epochs != 1 else ''} done)", f"--trainer.max_epochs {done_epochs + epochs}"
    else:
        return
    raise NothingToTrain(
        f"{path} is a finished run: it reached {limit}, so resuming it trains nothing and no new run folder was "
        f"claimed. To train it longer, raise the limit: add `{how}` to this command."
    )
