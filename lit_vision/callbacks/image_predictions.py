"""`lit-vision predict` on the user's own images: a folder (recursively, any format Pillow
reads, any size) or a single file, instead of MiniPlaces' test split.

    lit-vision predict --config configs/quickstart.yaml --ckpt_path last \\
        --trainer.callbacks+=ImagePredictions --trainer.callbacks.input_path ~/photos

Each image gets the evaluation transform of the run's data config (shorter side to
`data.resize_size`, centre crop `data.crop_size`), so any size works. Rank 0 writes
`predictions.csv` (file, class_1, probability_1, ..., class_5, probability_5) and
`predictions.json` (the same as a list of {file, top5: [{class, probability}]}) into the run's
log folder (or `output_dir`), and prints a top-5 table for the first few files. File paths are
written relative to `input_path` (a single file: its name). Class names come from the
datamodule (categories.txt), else indices. The challenge submission is not written meanwhile.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from lit_vision.callbacks.run_data import class_names as datamodule_class_names
from lit_vision.callbacks.run_data import gather_predictions
from lit_vision.data.image_folder import ImageFiles, list_image_files
from lit_vision.data.transforms import eval_transform
from lit_vision.errors import LitVisionError
from lit_vision.utils.files import atomic_write_text

OUTPUT_NAME = "predictions"


class ImagePredictions(BasePredictionWriter):
    """Predict every image under `input_path` and write the top-5 classes with probabilities.

    Args:
        input_path: an image file, or a folder searched recursively for image files.
        output_dir: where predictions.csv/.json go; default the run's log folder.
        print_rows: files shown in the printed top-5 table (0: none).
    """

    def __init__(self, input_path: str, output_dir: str | None = None, print_rows: int = 5) -> None:
        super().__init__(write_interval="epoch")
        if print_rows < 0:
            raise LitVisionError(f"ImagePredictions print_rows must be >= 0, got {print_rows}.")
        self.input_path = Path(input_path).expanduser()
        self.output_dir = output_dir
        self.print_rows = print_rows
        self.files: list[Path] = []
        self.rows: list[dict] = []  # the last prediction's rows, as written to JSON
        self.paths: dict[str, Path] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "predict_set"):
            raise LitVisionError(
                "ImagePredictions needs the MiniPlaces datamodule (its evaluation transform and class names)."
            )
        self.files = list_image_files(self.input_path)
        hparams = datamodule.hparams
        # The datamodule's setup (run before the callbacks') built its test split; the folder
        # takes its place, with the same evaluation transform.
        datamodule.predict_set = ImageFiles(self.files, eval_transform(hparams.resize_size, hparams.crop_size))

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if not predictions:
            return
        by_index = gather_predictions(trainer, pl_module, predictions, ["top5", "top5_probability"])
        if not trainer.is_global_zero:
            return
        names = datamodule_class_names(trainer)
        self.rows = [
            {
                "file": self._shown_path(self.files[i]),
                "top5": [
                    {"class": names[c] if names and c < len(names) else str(c), "probability": round(p, 6)}
                    for c, p in zip(*by_index[i])
                ],
            }
            for i in sorted(by_index)
        ]
        folder = Path(self.output_dir or trainer.log_dir or ".")
        self.paths = {
            "csv": atomic_write_text(folder / f"{OUTPUT_NAME}.csv", to_csv(self.rows)),
            "json": atomic_write_text(
                folder / f"{OUTPUT_NAME}.json",
                json.dumps(
                    {"input": str(self.input_path), "checkpoint": trainer.ckpt_path, "predictions": self.rows}, indent=2
                )
                + "\n",
            ),
        }
        table = top5_table(self.rows[: self.print_rows]) if self.print_rows else ""
        rank_zero_info(
            f"{table}\nPredicted {len(self.rows)} images from {self.input_path}; wrote "
            + ", ".join(str(p) for p in self.paths.values())
        )

    def _shown_path(self, file: Path) -> str:
        return file.name if self.input_path.is_file() else file.relative_to(self.input_path).as_posix()


def to_csv(rows: list[dict]) -> str:
    k = max(len(row["top5"]) for row in rows)
    header = ["file"] + [f"{key}_{j}" for j in range(1, k + 1) for key in ("class", "probability")]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row["file"]] + [v for guess in row["top5"] for v in (guess["class"], guess["probability"])])
    return text.getvalue()


def top5_table(rows: list[dict]) -> str:
    from lit_vision.utils.tables import format_table

    ordinals = ["1st", "2nd", "3rd", "4th", "5th"]
    return format_table(
        [
            {
                "file": row["file"],
                **{ordinals[j]: f"{g['class']} {g['probability']:.2f}" for j, g in enumerate(row["top5"])},
            }
            for row in rows
        ]
    )
