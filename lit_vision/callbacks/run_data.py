"""What the writing callbacks read from a run: the datamodule's class names, and the
predictions of every rank gathered by item index. Shared by the submission writer, the
image-folder predictions, the class report and the adversarial evaluation, none of which
imports another for them."""

from __future__ import annotations

import torch


def class_names(trainer) -> list[str] | None:
    """The datamodule's class names in label order (categories.txt), or None when it has none."""
    names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
    return list(names) if names else None


def gather_predictions(trainer, pl_module, predictions: list[dict], keys: list[str]) -> dict[int, list]:
    """{item index: [value of each key, as lists]} over every rank's `predict_step` outputs
    (call it on every rank; only rank 0's result is complete)."""
    indices = torch.cat([p["index"] for p in predictions])
    values = [torch.cat([p[key] for p in predictions]) for key in keys]
    if trainer.world_size > 1:
        # Each rank predicted a shard; the distributed sampler may have padded with
        # repeats, which the de-duplication by index below removes.
        indices = pl_module.all_gather(indices).flatten(0, 1)
        values = [pl_module.all_gather(v).flatten(0, 1) for v in values]
    by_index = {}
    for i, index in enumerate(indices.tolist()):
        by_index[index] = [v[i].tolist() for v in values]
    return by_index
