"""Top-1/top-5 accuracy as papers and leaderboards report them."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


def accuracy_metrics(num_classes: int, prefix: str = "") -> MetricCollection:
    """`{prefix}top1` and `{prefix}top5`, micro-averaged: the fraction of images whose label is
    among the k highest logits (torchmetrics' default average is macro, a different number)."""
    return MetricCollection(
        {
            "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
        },
        prefix=prefix,
    )
