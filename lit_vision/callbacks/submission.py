"""Writes `lit-vision predict` output in the MiniPlaces challenge format:
one line per test image, `test/00000001.jpg c1 c2 c3 c4 c5`, most likely class first.
Datasets whose classes are named by their folders (class per folder, CIFAR) get
`submission.csv` instead: `file,class_1,...,class_5` with the class names (a name may hold
spaces). The CLI adds it to every `predict` that `ImagePredictions` (a folder of the user's
images) does not run in (`lit_vision.cli.trainer_defaults`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from lit_vision.callbacks.run_data import gather_predictions
from lit_vision.utils.files import atomic_write_text


class SubmissionWriter(BasePredictionWriter):
    def __init__(self, output_path: str | None = None) -> None:
        """
        Args:
            output_path: where to write the file; default `<run log dir>/submission.txt`.
        """
        super().__init__(write_interval="epoch")
        self.output_path = output_path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if not predictions:
            return
        order = gather_predictions(trainer, pl_module, predictions, ["top5"])
        if not trainer.is_global_zero:
            return
        paths = trainer.datamodule.test_paths
        names = getattr(trainer.datamodule, "submission_names", None)
        if names:  # class names, in CSV
            path = Path(self.output_path or Path(trainer.log_dir or ".") / "submission.csv")
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["file"] + [f"class_{k}" for k in range(1, len(order[min(order)][0]) + 1)])
            writer.writerows([paths[i], *(names[c] for c in order[i][0])] for i in sorted(order))
            atomic_write_text(path, text.getvalue())
            rank_zero_info(f"Wrote predictions for {len(order)} images to {path}")
            return
        path = Path(self.output_path or Path(trainer.log_dir or ".") / "submission.txt")
        lines = [f"{paths[i]} {' '.join(map(str, order[i][0]))}" for i in sorted(order)]
        atomic_write_text(path, "\n".join(lines) + "\n")
        rank_zero_info(f"Wrote predictions for {len(lines)} images to {path}")
