"""`MiniPlacesDataModule`: the real MiniPlaces (or its generated stand-in) as Lightning data.

Batches leave it as `[uint8 images (B, 3, crop, crop), labels]` in pixel space; the model
normalises. `test` runs on the labelled validation split (the challenge's test split has
no labels); `predict` runs on the unlabelled test split and yields item indices instead of
labels, which the submission writer maps back to file names.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from lit_vision.data.dataset import MiniPlacesImages
from lit_vision.data.download import download_miniplaces, manual_instructions
from lit_vision.data.listing import list_unlabelled_images, read_categories, read_labelled_list
from lit_vision.data.standin import generate_standin
from lit_vision.data.transforms import eval_transform, train_transform
from lit_vision.errors import LitVisionError


class MiniPlacesDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/miniplaces",
        batch_size: int = 256,
        num_workers: int = 4,
        num_classes: int = 100,
        download: bool = False,
        standin: bool = False,
        standin_train_per_class: int = 300,
        standin_val_per_class: int = 50,
        standin_test_images: int = 200,
        resize_size: int = 144,
        crop_size: int = 128,
        pin_memory: bool = True,
    ) -> None:
        """
        Args:
            data_dir: folder with images/{train,val,test}/, train.txt, val.txt (and categories.txt).
            batch_size: images per batch and per device.
            num_workers: data-loading processes per device (0 loads in the main process).
            num_classes: classes in the data; labels must lie in [0, num_classes).
            download: fetch and unpack the real MiniPlaces into data_dir when it is not there.
            standin: generate a small synthetic dataset in the MiniPlaces layout into data_dir
                (num_classes classes) instead of reading real data; written once and reused.
            standin_train_per_class: stand-in training images per class.
            standin_val_per_class: stand-in validation images per class.
            standin_test_images: stand-in unlabelled test images.
            resize_size: the shorter image side is resized to this before cropping (pixels).
            crop_size: side of the square crops the model sees (pixels).
            pin_memory: page-locked host memory for faster copies to a GPU.
        """
        super().__init__()
        if download and standin:
            raise LitVisionError("data.download and data.standin are exclusive: choose one.")
        for name, value in (("batch_size", batch_size), ("num_classes", num_classes), ("crop_size", crop_size)):
            if value < 1:
                raise LitVisionError(f"data.{name} must be a positive integer, got {value}.")
        if num_workers < 0:
            raise LitVisionError(f"data.num_workers must be >= 0, got {num_workers}.")
        if resize_size < crop_size:
            raise LitVisionError(f"data.resize_size ({resize_size}) must be >= data.crop_size ({crop_size}).")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.num_classes = num_classes
        self.class_names: list[str] = []
        self.test_paths: list[str] = []

    def prepare_data(self) -> None:
        # Runs on one process per node, before setup() on every rank.
        hp = self.hparams
        if hp.standin:
            generate_standin(
                self.data_dir, hp.num_classes, hp.standin_train_per_class, hp.standin_val_per_class,
                hp.standin_test_images, image_size=128,
            )  # fmt: skip
        elif hp.download:
            download_miniplaces(self.data_dir, hp.num_classes)

    def _check_layout(self) -> None:
        required = [self.data_dir / "images", self.data_dir / "train.txt", self.data_dir / "val.txt"]
        missing = [str(p) for p in required if not p.exists()]
        if missing:
            raise LitVisionError(
                f"data.data_dir {self.data_dir} is not a MiniPlaces folder: missing {', '.join(missing)}. "
                "Expected images/{train,val,test}/, train.txt and val.txt there. Set data.download: true to "
                "fetch the real dataset, or data.standin: true to generate a small stand-in. "
                + manual_instructions(self.data_dir)
            )

    def _labelled(self, list_name: str, transform) -> MiniPlacesImages:
        images = self.data_dir / "images"
        entries = read_labelled_list(self.data_dir / list_name, self.num_classes)
        # One stat per file at setup is cheap (~0.3 s for 110k) and turns a crash deep
        # inside a worker, hours into a run, into an error before the first step.
        for relative, _ in entries:
            if not (images / relative).is_file():
                raise LitVisionError(f"{self.data_dir / list_name} lists {relative}, but {images / relative} is missing.")
        paths, labels = zip(*entries)
        return MiniPlacesImages(images, list(paths), list(labels), transform)

    def setup(self, stage: str) -> None:
        self._check_layout()
        self.class_names = read_categories(self.data_dir / "categories.txt", self.num_classes)
        hp = self.hparams
        if stage == "fit":
            self.train_set = self._labelled("train.txt", train_transform(hp.resize_size, hp.crop_size))
        if stage in ("fit", "validate", "test"):
            self.val_set = self._labelled("val.txt", eval_transform(hp.resize_size, hp.crop_size))
        if stage == "predict":
            self.test_paths = list_unlabelled_images(self.data_dir / "images", "test")
            self.predict_set = MiniPlacesImages(
                self.data_dir / "images", self.test_paths, None, eval_transform(hp.resize_size, hp.crop_size)
            )

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        hp = self.hparams
        return DataLoader(
            dataset,
            batch_size=hp.batch_size,
            shuffle=shuffle,
            num_workers=hp.num_workers,
            pin_memory=hp.pin_memory,
            persistent_workers=hp.num_workers > 0,
            # A last tiny training batch only adds noise to BatchNorm statistics (and a batch of
            # one breaks it); evaluation keeps every sample.
            drop_last=shuffle and len(dataset) > hp.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)
