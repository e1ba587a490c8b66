"""Top-1/top-5 accuracy as papers and leaderboards report them."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


def accuracy_metrics(num_classes: int, prefix: str = "") -> MetricCollection:
    """`{prefix}top1` and `{prefix}top5`, micro-averaged: the fraction of images whose label is
    among the k highest logits (torchmetrics' default average is macro, a different number).

    `validate_args=False`: torchmetrics' input checks read values back from the device on every
    update, a host-device synchronisation per training step that stalls the GPU pipeline; labels
    are range-checked once when the list files are read instead."""
    return MetricCollection(
        {
            "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro", validate_args=False),
            "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro", validate_args=False),
        },
        prefix=prefix,
    )
