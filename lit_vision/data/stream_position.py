"""A LitData stream's training position in a checkpoint: is it mid-epoch, and can this run continue it?

`StreamingDataLoader.state_dict()` (LitData) counts the samples handed to the main process on a
grid of (processes × loader workers) with a batch size; the DataModule adds `complete` (the
epoch was trained to its end). LitData tries an "elastic" resume when that grid changes, but it
does not continue the epoch exactly: resumed with 2 workers after 1 (one process, 64 samples,
batch 8) it trained 56 of the interrupted epoch's 64 samples. So a mid-epoch stream position is
continued only on the grid it was saved on; any other grid is refused before the first step,
naming both. An epoch-end position needs no grid: the next epoch starts afresh.

No LitData import here: the DataModule imports this module whether or not the `streaming`
extra is installed.
"""

from __future__ import annotations

from lit_vision.errors import LitVisionError


def stream_loader_complete(loader) -> bool:
    """Whether a `StreamingDataLoader` has handed out every batch of its current epoch."""
    yielded = int(getattr(loader, "_num_samples_yielded_streaming", 0))
    return yielded > 0 and yielded >= len(loader) * int(loader.batch_size or 1)


def stream_position_complete(state: dict) -> bool:
    """Whether a saved stream position is at an epoch's end (older checkpoints without the
    DataModule's `complete` flag count as mid-epoch once a sample was yielded)."""
    if "complete" in state:
        return bool(state["complete"])
    return int(state.get("num_samples_yielded", 0) or 0) == 0


def check_stream_grid(state: dict, stream: str, num_workers: int, world_size: int, batch_size: int) -> None:
    """Refuse to continue a mid-epoch stream position on another grid than it was saved on."""
    saved = state.get("dataset", {})
    pairs = {
        "data.num_workers": (saved.get("num_workers"), num_workers),
        "processes (trainer.devices × trainer.num_nodes)": (saved.get("world_size"), world_size),
        "data.batch_size": (saved.get("batch_size"), batch_size),
    }
    changed = {name: pair for name, pair in pairs.items() if pair[0] is not None and int(pair[0]) != int(pair[1])}
    if not changed:
        return
    details = "; ".join(f"{name} {old} in the checkpoint, {new} now" for name, (old, new) in changed.items())
    settings = ", ".join(f"{name} {old}" for name, (old, _) in changed.items())
    raise LitVisionError(
        f"The checkpoint was saved in the middle of an epoch of data.stream {stream}, on another grid than this run's "
        f"({details}; LitData counts 0 workers as 1). LitData cannot continue a stream's epoch on a changed grid "
        f"without skipping or repeating samples, so this run stops before its first step. Resume with {settings}, "
        "or from a checkpoint saved at an epoch's end (which any grid continues)."
    )
