"""Per-class report of a `validate` or `test` run: which classes the model gets wrong, and what
it takes them for.

    lit-vision validate --config configs/quickstart.yaml --config configs/class_report.yaml \\
        --ckpt_path last

Over the whole evaluation the callback counts a confusion matrix (torchmetrics'
`MulticlassConfusionMatrix`, synchronised across ranks, so DDP gives the single-process
numbers) and keeps a few misclassified images. At the end rank 0 writes into the run's log
folder (`trainer.log_dir`):
- `class_report.csv` / `.json`: per class, its images, correct, top-1, and the class it is most
  often taken for; the JSON adds the overall top-1 and the most-confused pairs;
- `confusion_matrix.png`: rows normalised per true class, restricted to the classes of the
  most-confused pairs (readable at 100 classes);
- `confused_pairs.png`: the most-confused (true → predicted) pairs with example images;
- `hardest_images.png`: the misclassified images the model was surest of, with true and
  predicted names and the confidence.
The pictures also go to TensorBoard (`<stage>/confusion_matrix`, ...). The report runs on
`validate` and `test` only, not on the validation epochs inside `fit`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch.nn import functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from lit_vision.callbacks.run_data import class_names as datamodule_class_names
from lit_vision.errors import LitVisionError
from lit_vision.utils.files import atomic_write, atomic_write_text
from lit_vision.utils.images import to_unit_float

REPORT_NAME = "class_report"
STAGES = ("validate", "test")


class ClassReport(Callback):
    """Per-class top-1, confusion matrix, most-confused pairs and hardest images.

    Args:
        class_names: names of the classes in label order; None reads them from the datamodule's
            `class_names` (categories.txt), else uses the indices.
        matrix_classes: at most this many classes in the confusion-matrix picture (those of
            the most-confused pairs).
        num_pairs: most-confused (true, predicted) pairs in the JSON and the pairs picture.
        examples_per_pair: example images per pair in the picture.
        num_hardest: misclassified images in the hardest-images grid.
        thumbnail_size: side (pixels) of the kept example images (inputs are resized to it).
    """

    def __init__(
        self,
        class_names: list[str] | None = None,
        matrix_classes: int = 20,
        num_pairs: int = 6,
        examples_per_pair: int = 4,
        num_hardest: int = 16,
        thumbnail_size: int = 64,
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("matrix_classes", matrix_classes, 2), ("num_pairs", num_pairs, 0),
            ("examples_per_pair", examples_per_pair, 0), ("num_hardest", num_hardest, 0),
            ("thumbnail_size", thumbnail_size, 8),
        ):  # fmt: skip
            if value < least:
                raise LitVisionError(f"ClassReport {name} must be >= {least}, got {value}.")
        self.explicit_names = list(class_names) if class_names else None
        self.matrix_classes = matrix_classes
        self.num_pairs = num_pairs
        self.examples_per_pair = examples_per_pair
        self.num_hardest = num_hardest
        self.thumbnail_size = thumbnail_size
        self.names: list[str] | None = None
        self.confusion: MulticlassConfusionMatrix | None = None
        self.pair_examples: dict[tuple[int, int], list[tuple[torch.Tensor, float]]] = {}
        self.hardest: dict[str, torch.Tensor] | None = None
        self.report: dict | None = None  # the last report, as written to JSON
        self.paths: dict[str, Path] = {}  # what rank 0 wrote

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The datamodule's setup runs before the callbacks': its class names are known here.
        self.names = self.explicit_names or datamodule_class_names(trainer)

    def _active(self, trainer: L.Trainer) -> bool:
        return not trainer.sanity_checking and trainer.state.fn is not None and trainer.state.fn.value in STAGES

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0):
        if self._active(trainer):
            self._update(trainer, pl_module, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0):
        if self._active(trainer):
            self._update(trainer, pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active(trainer):
            self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active(trainer):
            self._finish(trainer, pl_module, "test")

    # ------------------------------------------------------------- counting
    def _reset(self) -> None:
        self.confusion = None  # built on the first batch, when the class count is known
        self.pair_examples = {}
        self.hardest = None

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch) -> None:
        images, labels = batch[0], batch[1]
        if isinstance(outputs, torch.Tensor) and outputs.ndim == 2 and outputs.shape[0] == labels.shape[0]:
            logits = outputs  # the module's validation/test step returns its logits
        else:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                logits = pl_module(images)
        if self.confusion is None:
            self.confusion = MulticlassConfusionMatrix(logits.shape[1]).to(logits.device)
        confidence, predicted = logits.detach().float().softmax(1).max(1)
        self.confusion.update(predicted, labels)

        wrong = (predicted != labels).nonzero().flatten()
        if wrong.numel() == 0:
            return
        thumbnails = self._thumbnails(images[wrong])
        true, pred, conf = labels[wrong].cpu(), predicted[wrong].cpu(), confidence[wrong].cpu()
        for i in range(wrong.numel()):
            examples = self.pair_examples.setdefault((int(true[i]), int(pred[i])), [])
            if len(examples) < self.examples_per_pair:
                examples.append((thumbnails[i], float(conf[i])))
        candidates = {"images": thumbnails, "true": true, "pred": pred, "confidence": conf}
        if self.hardest is not None:
            candidates = {key: torch.cat([self.hardest[key], value]) for key, value in candidates.items()}
        keep = candidates["confidence"].argsort(descending=True, stable=True)[: self.num_hardest]
        self.hardest = {key: value[keep] for key, value in candidates.items()}

    def _thumbnails(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 copies on the CPU, `thumbnail_size` pixels a side: memory stays small, and every
        rank's examples share one shape for all_gather."""
        images = to_unit_float(images.detach()).float()
        if tuple(images.shape[-2:]) != (self.thumbnail_size,) * 2:
            images = F.interpolate(images, size=(self.thumbnail_size,) * 2, mode="bilinear", antialias=True)
        return images.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()

    # --------------------------------------------------------------- report
    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.confusion is None:
            return
        counts = self.confusion.compute().long().cpu()  # synchronised across ranks
        self.confusion.reset()
        num_classes = counts.shape[0]
        names = self.names if self.names and len(self.names) == num_classes else [str(i) for i in range(num_classes)]
        pairs = most_confused_pairs(counts, self.num_pairs)
        pair_images = self._gather_pair_examples(pl_module, pairs)
        hardest = self._gather_hardest(pl_module)
        # trainer.log_dir broadcasts from rank 0: every rank must ask for it.
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        self.report = build_report(counts, names, pairs, stage, trainer.ckpt_path)
        self._write(trainer, log_dir, stage, counts, names, pairs, pair_images, hardest)

    def _gather_pair_examples(self, pl_module, pairs: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Every rank's examples of the chosen pairs (the same pairs everywhere: the counts are
        synchronised), padded to one shape for all_gather; rank 0 keeps the first valid ones."""
        size = self.thumbnail_size
        shape = (len(pairs), self.examples_per_pair)
        images = torch.zeros(*shape, 3, size, size, dtype=torch.uint8)
        valid = torch.zeros(shape, dtype=torch.bool)
        for p, pair in enumerate(pairs):
            for e, (thumbnail, _) in enumerate(self.pair_examples.get(pair, [])):
                images[p, e] = thumbnail
                valid[p, e] = True
        if pl_module.trainer.world_size > 1:
            images = pl_module.all_gather(images.to(pl_module.device)).cpu().transpose(0, 1).flatten(1, 2)
            valid = pl_module.all_gather(valid.to(pl_module.device)).cpu().transpose(0, 1).flatten(1, 2)
        return [images[p][valid[p]][: self.examples_per_pair] for p in range(len(pairs))]

    def _gather_hardest(self, pl_module) -> dict[str, torch.Tensor]:
        size, k = self.thumbnail_size, self.num_hardest
        padded = {
            "images": torch.zeros(k, 3, size, size, dtype=torch.uint8),
            "true": torch.zeros(k, dtype=torch.long),
            "pred": torch.zeros(k, dtype=torch.long),
            "confidence": torch.full((k,), -1.0),  # -1 marks padding
        }
        if self.hardest is not None:
            n = self.hardest["true"].shape[0]
            for key, value in self.hardest.items():
                padded[key][:n] = value.to(padded[key].dtype)
        if pl_module.trainer.world_size > 1:
            padded = {
                key: pl_module.all_gather(v.to(pl_module.device)).cpu().flatten(0, 1) for key, v in padded.items()
            }
        order = padded["confidence"].argsort(descending=True, stable=True)
        order = order[padded["confidence"][order] >= 0][:k]
        return {key: value[order] for key, value in padded.items()}

    def _write(self, trainer, log_dir: Path, stage: str, counts, names, pairs, pair_images, hardest) -> None:
        import lit_vision.callbacks.class_report_figures as figures  # matplotlib only here

        rows = self.report["classes"]
        csv_text = io.StringIO()
        writer = csv.DictWriter(csv_text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.paths = {
            "csv": atomic_write_text(log_dir / f"{REPORT_NAME}.csv", csv_text.getvalue()),
            "json": atomic_write_text(log_dir / f"{REPORT_NAME}.json", json.dumps(self.report, indent=2) + "\n"),
        }
        matrix_classes = classes_of_pairs(most_confused_pairs(counts, counts.numel()), self.matrix_classes)
        rates = per_true_class(counts)
        pictures = {
            "confusion_matrix": figures.confusion_matrix(rates[np.ix_(matrix_classes, matrix_classes)],
                                                         [names[c] for c in matrix_classes]),
            "hardest_images": figures.hardest_images(
                hardest["images"], [names[t] for t in hardest["true"].tolist()],
                [names[p] for p in hardest["pred"].tolist()], hardest["confidence"].tolist(),
            ),
        }  # fmt: skip
        if pairs:
            pictures["confused_pairs"] = figures.confused_pairs(
                [(names[t], names[p], int(counts[t, p]), float(rates[t, p])) for t, p in pairs], pair_images
            )
        for name, picture in pictures.items():
            if picture is None:
                continue
            self.paths[name] = atomic_write(
                log_dir / f"{name}.png", lambda handle, p=picture: figures.save_png(p, handle)
            )
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(f"{stage}/{name}", picture, trainer.global_step, dataformats="HWC")
        overall = self.report["top1"]
        worst = sorted((r for r in rows if r["images"]), key=lambda r: r["top1"])[:5]
        rank_zero_info(
            f"Per-class report ({stage}, top-1 {overall:.4f}); lowest: "
            + ", ".join(f"{r['name']} {r['top1']:.2f}" for r in worst)
            + "\nWrote "
            + ", ".join(str(p) for p in self.paths.values())
        )


# ------------------------------------------------------------------------- numbers
def per_true_class(counts: torch.Tensor) -> np.ndarray:
    """The confusion matrix normalised per true class (rows sum to 1; empty rows stay 0)."""
    counts = counts.double().numpy()
    support = counts.sum(1, keepdims=True)
    return np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)


def most_confused_pairs(counts: torch.Tensor, limit: int) -> list[tuple[int, int]]:
    """Off-diagonal (true, predicted) pairs with at least one image, most images first (ties:
    the higher rate within the true class, then the lower indices)."""
    rates = per_true_class(counts)
    pairs = [(t, p) for t, p in counts.nonzero().tolist() if t != p]
    pairs.sort(key=lambda tp: (-int(counts[tp]), -rates[tp], tp))
    return pairs[:limit]


def classes_of_pairs(pairs: list[tuple[int, int]], limit: int) -> list[int]:
    """The classes met first in `pairs` (both ends), at most `limit`, in index order."""
    chosen: list[int] = []
    for pair in pairs:
        for c in pair:
            if c not in chosen and len(chosen) < limit:
                chosen.append(c)
    return sorted(chosen)


def build_report(counts: torch.Tensor, names: list[str], pairs, stage: str, checkpoint: str | None) -> dict:
    support = counts.sum(1)
    correct = counts.diagonal()
    rates = per_true_class(counts)
    off_diagonal = rates.copy()
    np.fill_diagonal(off_diagonal, -1)
    rows = []
    for c, name in enumerate(names):
        n = int(support[c])
        other = int(off_diagonal[c].argmax())
        confused = n > 0 and counts[c, other] > 0
        rows.append({
            "index": c,
            "name": name,
            "images": n,
            "correct": int(correct[c]),
            "top1": float(correct[c]) / n if n else None,
            "most_confused_with": names[other] if confused else "",
            "confused_rate": float(rates[c, other]) if confused else 0.0,
        })  # fmt: skip
    total = int(support.sum())
    return {
        "stage": stage,
        "checkpoint": checkpoint,
        "images": total,
        "top1": float(correct.sum()) / total if total else None,
        "classes": rows,
        "most_confused_pairs": [
            {"true": names[t], "predicted": names[p], "images": int(counts[t, p]), "rate": float(rates[t, p])}
            for t, p in pairs
        ],
    }
