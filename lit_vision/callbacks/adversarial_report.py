"""What an adversarial evaluation leaves behind: the table (CSV and JSON, with the gradient-masking
checks), and a picture of clean / adversarial / amplified-perturbation examples.

Kept apart from `adversarial_eval`, which runs the attacks: this module only formats and writes.
Files are written atomically (a reader never sees half of one).
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import torch

from lit_vision.utils.files import atomic_write, atomic_write_text

TABLE_NAME = "adversarial_eval"
PICTURE_NAME = "adversarial_examples.png"


def write_tables(log_dir: str, rows: list[dict], checks: list[dict], meta: dict) -> dict[str, str]:
    """`adversarial_eval.csv` (the rows) and `adversarial_eval.json` (meta, rows and checks)."""
    text = io.StringIO()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    csv_path = os.path.join(log_dir, f"{TABLE_NAME}.csv")
    atomic_write_text(csv_path, text.getvalue())
    json_path = os.path.join(log_dir, f"{TABLE_NAME}.json")
    atomic_write_text(json_path, json.dumps({**meta, "rows": rows, "checks": checks}, indent=2))
    return {"csv": csv_path, "json": json_path}


def write_picture(path: str, picture: np.ndarray) -> str:
    from PIL import Image

    atomic_write(path, lambda handle: Image.fromarray(picture).save(handle, format="PNG"))
    return path


def render_examples(examples: dict[str, torch.Tensor], epsilon: float, names: list[str] | None) -> np.ndarray:
    """A (H, W, 3) uint8 picture: one row per image — original, adversarial, and the
    perturbation amplified to the full range (grey = 0, ±epsilon = black/white)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def name(index: int) -> str:
        text = names[index] if names and 0 <= index < len(names) else str(index)
        text = text.strip("/").split("/", 1)[-1] if "/" in text else text  # "/a/abbey" -> "abbey"
        return text if len(text) <= 22 else text[:21] + "…"

    clean, adversarial = examples["clean"], examples["adversarial"]
    delta = adversarial - clean
    amplified = (0.5 + delta / (2 * epsilon)).clamp(0, 1)
    rows = clean.shape[0]
    figure = Figure(figsize=(6.6, 2.35 * rows), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 3, squeeze=False)
    for i in range(rows):
        true, before, after = (int(examples[k][i]) for k in ("labels", "clean_pred", "adversarial_pred"))
        panels = [
            (clean[i], f"true: {name(true)}\npred: {name(before)}", "green" if before == true else "red"),
            (adversarial[i], f"adversarial\npred: {name(after)}", "green" if after == true else "red"),
            (amplified[i], f"perturbation\n(±{epsilon * 255:.2g}/255 → full range)", "black"),
        ]
        for ax, (image, title, colour) in zip(axes[i], panels):
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=8, color=colour)
            ax.axis("off")
    figure.tight_layout()
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
