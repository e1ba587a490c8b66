"""How many training images an epoch leaves out, and the one warning line that says so.

The training loaders drop the last incomplete batch (`drop_last`: a tiny last batch only adds
noise to BatchNorm's statistics, and a batch of one breaks it). On a large dataset that is a
few images of many; on a small one it can be half of them: 120 images at batch 64 train on 64
per epoch. Each rank trains on its shard of the epoch (the sampler pads it to an equal length),
so what is left out is the remainder of the shard, on every rank.
"""

from __future__ import annotations

import math

from lit_vision import console

WARN_SHARE = 0.01  # silent below this share of the training set (100k images at batch 256 leave out 160)


def dropped_per_epoch(num_samples: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> int:
    """Training images an epoch leaves out: the incomplete last batch of each rank's shard."""
    if not drop_last:
        return 0
    per_rank = math.ceil(num_samples / world_size)
    return min(num_samples, (per_rank % batch_size) * world_size)


def epoch_size_warning(num_samples: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> str | None:
    """The warning for a training set whose epoch leaves out a noticeable share (None otherwise)."""
    dropped = dropped_per_epoch(num_samples, batch_size, world_size, drop_last)
    if dropped == 0 or dropped < WARN_SHARE * num_samples:
        return None
    per_rank = math.ceil(num_samples / world_size)
    steps = per_rank // batch_size
    ranks = f" on each of {world_size} ranks" if world_size > 1 else ""
    # The batch size between half and all of this one that leaves out the fewest (the largest on a tie).
    largest = min(batch_size, per_rank)
    candidates = range(largest, max(1, min(batch_size // 2, largest)) - 1, -1)
    best = min(candidates, key=lambda size: per_rank % size)
    left = (per_rank % best) * world_size
    if left == 0:
        count = per_rank // best
        advice = f"set data.batch_size to {best} ({count} step{'s' if count != 1 else ''}{ranks}) to train on all of them"
    elif left < dropped:
        advice = f"data.batch_size {best} would leave out {left}"
    else:
        advice = "no batch size from half this one up to it leaves out fewer"
    return (
        f"warning: each training epoch leaves out {dropped} of the {num_samples} training images: {steps} "
        f"full batch{'es' if steps != 1 else ''} of {batch_size}{ranks}, and the incomplete last batch is dropped "
        f"(a different {dropped} each epoch, as the order is shuffled); {advice}."
    )


def warn_dropped_images(num_samples: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> None:
    """Print `epoch_size_warning` (rank 0), when there is one."""
    message = epoch_size_warning(num_samples, batch_size, world_size, drop_last)
    if message:
        console.say(message)
