"""Pictures of the per-class report (`ClassReport`): confusion matrix, most-confused pairs,
hardest misclassified images. Each function returns an (H, W, 3) uint8 array, which goes both
to a PNG file and to TensorBoard. matplotlib is imported here only, and this module only when
a report is drawn."""

from __future__ import annotations

import math
from typing import BinaryIO

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_png(picture: np.ndarray, handle: BinaryIO) -> None:
    from PIL import Image

    Image.fromarray(picture).save(handle, format="PNG")


def short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _render(figure: Figure) -> np.ndarray:
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def _show(ax, image: torch.Tensor) -> None:
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def confusion_matrix(rates: np.ndarray, names: list[str]) -> np.ndarray:
    """Heat map of `rates` (rows: true class, normalised over all its images, so a row of a
    subset sums to at most 1), with percentages written in the cells when they fit."""
    n = len(names)
    side = min(14.0, 3.0 + 0.42 * n)
    figure = _figure(side + 1.2, side)
    ax = figure.add_subplot()
    shown = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    labels = [short(name) for name in names]
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix, rows normalised per true class ({n} most-confused classes)", fontsize=9)
    if n <= 25:
        for t in range(n):
            for p in range(n):
                if rates[t, p] >= 0.005:
                    colour = "white" if rates[t, p] > 0.5 else "black"
                    ax.text(p, t, f"{100 * rates[t, p]:.0f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    figure.tight_layout()
    return _render(figure)


def confused_pairs(pairs: list[tuple[str, str, int, float]], images: list[torch.Tensor]) -> np.ndarray:
    """One row per (true, predicted, images, rate) pair with up to k example images of the true
    class that were taken for the predicted one."""
    columns = max(1, max((len(row) for row in images), default=1))
    figure = _figure(1.6 * columns + 0.4, 1.9 * len(pairs))
    axes = figure.subplots(len(pairs), columns, squeeze=False)
    for (true, predicted, count, rate), row_images, row_axes in zip(pairs, images, axes):
        for column, ax in enumerate(row_axes):
            if column < len(row_images):
                _show(ax, row_images[column])
            else:
                ax.axis("off")
        row_axes[0].set_title(
            f"{short(true, 24)} → {short(predicted, 24)}: {count} images ({100 * rate:.0f}% of {short(true, 24)})",
            fontsize=8, loc="left",
        )  # fmt: skip
    figure.tight_layout()
    return _render(figure)


def hardest_images(images: torch.Tensor, true: list[str], predicted: list[str], confidence: list[float]):
    """A grid of misclassified images, surest first, titled with true/predicted names and the
    predicted class's probability; None when there are none."""
    if len(true) == 0:
        return None
    columns = min(8, len(true))
    rows = math.ceil(len(true) / columns)
    figure = _figure(1.7 * columns, 2.1 * rows + 0.3)
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for i, ax in enumerate(axes):
        if i >= len(true):
            ax.axis("off")
            continue
        _show(ax, images[i])
        ax.set_title(
            f"{short(true[i], 16)}\n→ {short(predicted[i], 12)} {100 * confidence[i]:.0f}%", fontsize=7, color="red"
        )
    figure.suptitle("Hardest misclassified images: true class → predicted class, its probability", fontsize=9)
    figure.tight_layout()
    return _render(figure)
