"""The training order of one epoch: a permutation keyed by (seed, epoch), cut into rank shards.

One definition for the folder/cache loaders' resumable sampler and the device-resident
batches, so that both draw the same order for the same (seed, epoch), every DDP rank takes a
disjoint shard, all shards together cover the epoch, and a run resumed mid-epoch can recompute
the order it was in the middle of instead of storing it. The permutation is always drawn by a
CPU generator (then moved to the device that asks for it): torch's CPU and CUDA generators give
different permutations for the same seed, so drawing where the data lives would give the two
placements different orders on a GPU and a checkpoint of one could not continue on the other.

A training position saved by either placement is `{"epoch", "position", "num_samples", "seed",
"world_size", "batch_size", "complete"}` (`saved_position` also reads the older resident form,
which counted batches): `position` entries of the epoch's permutation have been trained on by all
ranks together, so a resume may change the placement and the worker count and still continue at
that entry; the world size and batch size may change as long as a step takes no more images than
before (`check_continuable`). A LitData stream keeps its own order and state
(`lit_vision.data.streaming`); `saved_position` names that as a different order.

Sharding follows `torch.utils.data.DistributedSampler`: with `drop_last` the permutation is
cut to a multiple of the world size, otherwise it is padded by repeating its head (so every
rank runs the same number of steps, which DDP needs); rank r takes every world-size-th index
starting at r.
"""

from __future__ import annotations

import torch

from lit_vision.errors import LitVisionError
from lit_vision.utils.generators import keyed_generator

# Distinguishes this stream from the other keyed streams of a run (augmentation, attack starts).
_ORDER_STREAM = 0x0DE7


def epoch_permutation(num_samples: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A permutation of range(num_samples) (int64, on `device`) that depends only on
    (seed, epoch): the same on every rank, every device and every resume."""
    if num_samples < 1:
        raise ValueError(f"epoch_permutation needs at least one sample, got {num_samples}.")
    generator = keyed_generator("cpu", _ORDER_STREAM, seed, epoch)  # one source for every placement
    return torch.randperm(num_samples, generator=generator).to(device)


def rank_shard(order: torch.Tensor, rank: int, world_size: int, drop_last: bool = False) -> torch.Tensor:
    """This rank's indices of `order` (see the module docstring for the padding rule)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
    total = len(order)
    if drop_last:
        order = order[: total - total % world_size]
    elif total % world_size:
        padding = world_size - total % world_size
        order = torch.cat([order, order[:padding].repeat(-(-padding // total))[:padding]])
    return order[rank::world_size]


def shard_for_epoch(
    num_samples: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """`rank_shard(epoch_permutation(...))`: the indices this rank trains on in `epoch`, in order."""
    return rank_shard(epoch_permutation(num_samples, seed, epoch, device), rank, world_size, drop_last)


POSITION_KEYS = ("epoch", "position", "num_samples", "seed", "world_size", "batch_size")


def is_stream_state(state: dict) -> bool:
    """A LitData `StreamingDataLoader` state (data.stream), not an epoch-order position."""
    return "dataset" in state and "num_samples_yielded" in state


def saved_position(state: dict) -> dict:
    """A checkpoint's training position of the loader or resident placement, in the form of the
    module docstring (`complete`: the saved epoch was trained to its end)."""
    if is_stream_state(state):
        raise LitVisionError(
            "The checkpoint's training position is in a LitData stream's order (it was saved with data.stream), "
            "but this run reads image folders, whose epoch order differs. Resume with the checkpoint's data.stream, "
            "or from a checkpoint saved at an epoch's end."
        )
    if "consumed" in state and "position" not in state:  # the resident placement's older form
        steps = int(state.get("batch_size", 0)) * int(state.get("world_size", 0))
        state = {**state, "position": min(int(state.get("num_samples", 0)), int(state["consumed"]) * steps)}
    missing = [key for key in POSITION_KEYS if key not in state]
    if missing:
        raise LitVisionError(f"The checkpoint's training-loader state lacks {', '.join(missing)}: got {state}.")
    position = {key: int(state[key]) for key in POSITION_KEYS}
    position["complete"] = bool(state.get("complete", position["position"] >= position["num_samples"]))
    return position


def check_continuable(position: dict, num_samples: int, batch_size: int, world_size: int) -> None:
    """Refuse a saved position this run cannot continue exactly (before its first step).

    Lightning restores its own count of the interrupted epoch's batches, k, in the saved run's
    steps, and ends the epoch when that count reaches this run's batches per epoch. A run that
    takes more images per step (batch size × processes) than the saved one would stop before the
    permutation's end: measured, batch 8 → 16 after 3 of 8 batches trained 40 of the 64 images.
    The same or fewer images per step continue to the end of the permutation."""
    if position["num_samples"] != num_samples:
        raise LitVisionError(
            f"The checkpoint was saved mid-epoch on a training set of {position['num_samples']} images, but this "
            f"run's training set has {num_samples}: resume with the same data (or from an epoch-end checkpoint)."
        )
    saved_step = position["batch_size"] * position["world_size"]
    if position["complete"] or batch_size * world_size <= saved_step:
        return
    raise LitVisionError(
        f"The checkpoint was saved in the middle of an epoch with data.batch_size {position['batch_size']} on "
        f"{position['world_size']} process(es) ({saved_step} images per step), but this run takes {batch_size * world_size} "
        f"(data.batch_size {batch_size} on {world_size}): Lightning counts the interrupted epoch's batches in the "
        "checkpoint's steps and would end the epoch before its last images were trained. Resume with "
        f"data.batch_size {position['batch_size']} on {position['world_size']} process(es) (or fewer images per step), "
        "or from a checkpoint saved at an epoch's end."
    )


def batches_left(num_samples: int, start: int, batch_size: int, world_size: int, drop_last: bool) -> int:
    """Batches each rank takes from entry `start` of an epoch's permutation to its end."""
    per_rank = -(-(num_samples - min(start, num_samples)) // world_size)
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)
