"""The training loader's position in a checkpoint, for the DataModule: what its `state_dict`
saves, and how a new training loader takes it back (or refuses it) on resume.

Why the DataModule carries it: Lightning saves a stateful train loader's state in the checkpoint
itself, but drops it on resume when configure_optimizers has sized the loader through
trainer.estimated_stepping_batches (Lightning issue 20550; ours does): the loader then exists
before the loop state is restored. The DataModule's own state is restored before that, so it
carries the loader's position across.

Two forms of position:
- the image folders' and the cache's (either placement, `loader` or `resident`): one epoch order
  (`lit_vision.data.epoch_order`), so a mid-epoch checkpoint of one placement continues on the
  other;
- a LitData stream's (`data.stream`): LitData's own loader state plus `complete`, continued only
  on the grid it was saved on (`lit_vision.data.stream_position`).
A mid-epoch position of one form cannot continue on the other path (its sample order differs);
an epoch-end position can: the next epoch starts afresh on any path.
"""

from __future__ import annotations

from lit_vision.data.epoch_order import is_stream_state, saved_position
from lit_vision.data.stream_position import check_stream_grid, stream_loader_complete, stream_position_complete
from lit_vision.errors import LitVisionError


def train_position_state(train_loader, resident_train, stream: str | None) -> dict:
    """The DataModule's `state_dict`: {"train_loader": position} for the training loader this
    run built (`resident_train` for the resident placement, else `train_loader`), {} before one."""
    state = {}
    if resident_train is not None:
        state["train_loader"] = resident_train.state_dict()
    elif hasattr(train_loader, "state_dict"):
        state["train_loader"] = train_loader.state_dict()
        if stream is not None:
            state["train_loader"]["complete"] = stream_loader_complete(train_loader)
    return state


def saved_train_position(state_dict: dict) -> dict | None:
    """The training position in a DataModule state from a checkpoint (None: none saved)."""
    # "resident_train_order": where older checkpoints kept the resident placement's position.
    return state_dict.get("train_loader", state_dict.get("resident_train_order"))


def restore_train_position(
    loader, state: dict, *, stream: str | None, num_workers: int, world_size: int, batch_size: int
) -> None:
    """Hand `state` (a checkpoint's training position) to this run's new training `loader`, or
    refuse (before the first step) a mid-epoch position this run cannot continue exactly.
    `stream` is this run's data.stream; `num_workers` (at least 1), `world_size` and
    `batch_size` its grid, checked against a mid-epoch stream position's."""
    if is_stream_state(state) != (stream is not None):  # another order: LitData's vs the epoch order
        if stream is None and not stream_position_complete(state):
            saved_position(state)  # raises, naming the stream's order
        if stream is not None and not saved_position(state)["complete"]:
            raise LitVisionError(
                f"The checkpoint was saved in the middle of an epoch read from image folders (data.placement "
                f"loader or resident), but this run reads data.stream {stream}, whose order is LitData's: "
                "continuing would train some samples twice and others never. Resume without data.stream, or "
                "from a checkpoint saved at an epoch's end."
            )
        return  # an epoch-end position: the next epoch starts afresh on any path
    if stream is None:
        loader.load_state_dict(state)  # either placement's position (lit_vision.data.epoch_order)
        return
    saved_seed = state.get("dataset", {}).get("seed")
    if saved_seed is not None:
        # The saved seed wins, as on the folder placements: a resumed run whose seed was drawn
        # anew (seed_everything: true) continues the interrupted order (LitData refuses another).
        loader.dataset.seed = int(saved_seed)
    if stream_position_complete(state):
        loader.current_epoch = int(state["current_epoch"])  # the next epoch's LitData order, nothing to skip
        return
    check_stream_grid(state, stream, num_workers, world_size, batch_size)
    loader.load_state_dict({key: value for key, value in state.items() if key != "complete"})
