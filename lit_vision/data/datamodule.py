"""`MiniPlacesDataModule`: the real MiniPlaces (or its generated stand-in) as Lightning data.

Batches leave it as `[uint8 images (B, 3, crop, crop), labels]` in pixel space; the model
normalises. `test` runs on the labelled validation split (the challenge's test split has
no labels); `predict` runs on the unlabelled test split and yields item indices instead of
labels, which the submission writer maps back to file names.

Training augmentation (`data.augmentation`, one `Augmentation` for every path) runs where
`data.augment_on` says:
- `auto` (default): `worker_batched` when the trainer's accelerator is the CPU, else `device`.
- `device`: workers only decode JPEGs (libjpeg-turbo, uint8) to the crop-size square;
  batches cross to the device as uint8 (a quarter of float's traffic) and `BatchAugment`
  applies flip, rotation, random resized crop and per-channel gain to the whole batch in one
  fused `grid_sample`, with its own random draw per sample, in `on_after_batch_transfer`
  during training only. Training batches then reach the model as float in [0, 1].
- `worker_batched`: the same `BatchAugment` runs in each loader worker on that worker's batch
  (`WorkerBatchAugment` as collate_fn), so on a CPU the training threads only train.
- `worker`: the per-image torchvision v2 pipeline runs in the workers (uint8 out); ~10×
  slower per worker on a CPU, kept for comparison.
On a CPU run every loader yields channels-last batches (see `lit_vision.data.collate`).
Evaluation (validate/test/predict) resizes the shorter side to `resize_size` and keeps the
centre `crop_size` square on every path; training does not resize to `resize_size` (see
`lit_vision.data.transforms`).
`data.cache: true` decodes each labelled split once into a memory-mapped uint8 array and
reads it instead of the JPEGs (see `lit_vision.data.cache`).

`data.layout` (`auto` detects it) reads MiniPlaces', Places365-Standard's, a class-per-folder
tree's (`train/<class>/`, as torchvision's ImageFolder) or CIFAR-10/100's files (torchvision's
format), see `lit_vision.data.layout`; `data.val_fraction` holds out a stratified share of
training images where the data has no validation split; `data.stream` reads the labelled splits from a LitData
stream written by `lit-vision optimize` (`lit_vision.data.streaming`). Training resumes mid-epoch
exactly where it stopped on every path: the folder and cache paths through
`lit_vision.data.resumable` (the resident placement saves the same position, so either continues
the other's checkpoint), the stream through LitData's loader state, on the worker grid it was
saved on (`lit_vision.data.stream_position`; another grid is refused, a checkpoint of the stream
on the folders or the reverse too); either state travels in this DataModule's `state_dict` (see
`lit_vision.data.train_position` for why). docs/scale.md.

Where the decoded images live (`data.placement`):
- `auto` (default): `loader` on every accelerator: it is the path measured on a GPU (docs/gpu-benchmark.md);
  `resident` has been measured on the CPU only, so it is chosen by name until a GPU run shows it faster.
- `loader`: DataLoader workers read JPEGs (or the cache) and batches cross to the device per step.
- `resident`: each labelled split is decoded once into the cache, then held whole on the
  training device (GPU memory; this process's memory on a CPU run) and batches are index-gathers
  from it, in the shared epoch order (see `lit_vision.data.resident`). Augmentation then runs on
  the device (`augment_on` auto or device). Too little free memory is an error naming the
  option to use instead. `predict` (unlabelled, uncached) always uses the loader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from torch.utils.data import DataLoader, IterableDataset

from lit_vision.data.augment_settings import Augmentation
from lit_vision.data.batch_augment import BatchAugment
from lit_vision.data.cache import CachedImages, build_cache, cache_path
from lit_vision.data.collate import WorkerBatchAugment, channels_last_collate
from lit_vision.data.dataset import MiniPlacesImages
from lit_vision.data.download import cifar_instructions, download_cifar, download_miniplaces, manual_instructions
from lit_vision.data.epoch_size import warn_dropped_images
from lit_vision.data.layout import LAYOUT_NAMES, DataLayout, LayoutName, detect_layout, no_layout_message
from lit_vision.data.listing import list_unlabelled_images
from lit_vision.utils.files import atomic_write_text
from lit_vision.data.places365 import download_places365, places365_instructions
from lit_vision.data.preflight import verify_images
from lit_vision.data.resumable import resumable_loader, run_seed
from lit_vision.data.resident import ResidentLoader, ResidentOrder, load_resident
from lit_vision.data.standin import generate_standin_for_run
from lit_vision.data.train_position import restore_train_position, saved_train_position, train_position_state
from lit_vision.data.transforms import SquareResize, eval_transform, train_transform
from lit_vision.errors import LitVisionError
from lit_vision.signals import leave_stops_to_the_main_process
from lit_vision.utils.generators import keyed_generator
from lit_vision.utils.rng import keeps_global_rng

AugmentPlace = Literal["auto", "device", "worker_batched", "worker"]
AUGMENT_PLACES = get_args(AugmentPlace)
Placement = Literal["auto", "loader", "resident"]
PLACEMENTS = get_args(Placement)


class MiniPlacesDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/miniplaces",
        batch_size: int = 256,
        num_workers: int | None = None,
        num_classes: int = 100,
        download: bool = False,
        standin: bool = False,
        standin_train_per_class: int = 300,
        standin_val_per_class: int = 50,
        standin_test_images: int = 200,
        resize_size: int = 144,
        crop_size: int = 128,
        pin_memory: bool = True,
        augment_on: AugmentPlace = "auto",
        augmentation: Augmentation = Augmentation(),  # frozen: one shared default is safe
        cache: bool = False,
        cache_dir: str | None = None,
        verify: bool = True,
        layout: LayoutName = "auto",
        stream: str | None = None,
        placement: Placement = "auto",
        val_fraction: float | None = None,
        val_seed: int = 0,
    ) -> None:
        """
        Args:
            data_dir: the dataset's folder: MiniPlaces' images/{train,val,test}/, train.txt, val.txt (and
                categories.txt), or Places365-Standard's (see `layout`).
            batch_size: images per batch and per device.
            num_workers: data-loading processes per device (0 loads in the main process);
                None: min(8, CPU cores available to this process).
            num_classes: classes in the data; labels must lie in [0, num_classes).
            download: fetch and unpack the real MiniPlaces into data_dir when it is not there.
            standin: generate a small synthetic dataset in the MiniPlaces layout into data_dir
                (num_classes classes) instead of reading real data; written once and reused. With
                data.stream, only predict reads it (the stream holds the labelled splits).
            standin_train_per_class: stand-in training images per class.
            standin_val_per_class: stand-in validation images per class.
            standin_test_images: stand-in unlabelled test images.
            resize_size: evaluation (validate, test, predict): the shorter image side is
                resized to this, then the centre crop_size square is kept (pixels). Training
                crops come from the whole image (augmentation.scale), so it does not apply there.
            crop_size: side of the square images the model sees (pixels).
            pin_memory: page-locked host memory for faster copies to a GPU (never on a CPU run).
            augment_on: where training augmentation runs: "auto" (worker_batched when the
                accelerator is the CPU, else device), "device" (batched, after the copy to the
                accelerator; workers only decode), "worker_batched" (batched, in each loader
                worker) or "worker" (per image, torchvision v2, in the workers).
            augmentation: the training augmentation, the same on every augment_on path.
            cache: decode each labelled split once into a uint8 memory-mapped file and read
                that instead of the JPEGs (train ≈ 4.9 GB for real MiniPlaces at 128 px).
            cache_dir: where cache files (and the image check's stamps) go (default: <data_dir>/cache).
            verify: before the first step, decode every image the run will read (in parallel,
                on num_workers) and name every unreadable one in one error; runs once per
                unchanged set of files (see `lit_vision.data.preflight`).
            layout: "miniplaces", "places365" (Places365-Standard: categories_places365.txt,
                places365_train_standard.txt, places365_val.txt, data_256/, val_256/),
                "image_folder" (train/<class>/ image folders, optional val/<class>/ and unlabelled
                test/; classes are the sorted folder names, as torchvision's ImageFolder),
                "cifar10" / "cifar100" (torchvision's cifar-10-batches-py/ or cifar-100-python/
                in data_dir) or "auto" (whichever of them data_dir holds; see
                `lit_vision.data.layout`). data.download fetches the layout named here (auto: MiniPlaces).
            val_fraction: image_folder without val/, and CIFAR: the share of each class's training
                images held out for validation (seeded, stratified). None: 0.1 for image_folder; 0
                for CIFAR, whose validation is then its 10,000 test images (the test stage always is).
            val_seed: the seed of that hold-out (fixed apart from the run's seed, so runs with
                different seeds validate on the same images).
            stream: read the labelled splits (fit, validate, test) from this LitData stream, a
                folder or a URL (s3://, gs://, local:/path, ...) that `lit-vision optimize` wrote,
                instead of from image files (see `lit_vision.data.streaming`); predict still reads
                data_dir's unlabelled images. Needs the `streaming` extra (litdata).
            placement: where decoded images live: "auto" (loader: the path measured on a GPU),
                "loader" (DataLoader workers read them per batch) or "resident" (each split
                decoded once via the cache and held whole on the training device; batches are
                index-gathers there; needs augment_on auto or device).
        """
        super().__init__()
        if download and standin:
            raise LitVisionError("data.download and data.standin are exclusive: choose one.")
        for name, value in (("batch_size", batch_size), ("num_classes", num_classes), ("crop_size", crop_size)):
            if value < 1:
                raise LitVisionError(f"data.{name} must be a positive integer, got {value}.")
        if num_workers is None:
            num_workers = min(8, available_cpus())
        if num_workers < 0:
            raise LitVisionError(f"data.num_workers must be >= 0, got {num_workers}.")
        if resize_size < crop_size:
            raise LitVisionError(f"data.resize_size ({resize_size}) must be >= data.crop_size ({crop_size}).")
        if augment_on not in AUGMENT_PLACES:
            raise LitVisionError(f"data.augment_on must be one of {', '.join(AUGMENT_PLACES)}; got {augment_on!r}.")
        if layout not in LAYOUT_NAMES:
            raise LitVisionError(f"data.layout must be one of {', '.join(LAYOUT_NAMES)}; got {layout!r}.")
        if standin and layout not in ("auto", "miniplaces"):
            raise LitVisionError(f"data.standin generates the MiniPlaces layout: it cannot be used with data.layout: {layout}.")
        if stream is not None and (cache or download):
            raise LitVisionError("data.stream reads a converted stream: data.cache and data.download apply to image "
                                 "folders; leave them false with data.stream.")  # fmt: skip
        if stream is not None and val_fraction is not None:
            # The stream's validation split was fixed when it was written; the option would do nothing.
            raise LitVisionError(
                f"data.val_fraction {val_fraction} holds out training images of a folder, but data.stream {stream} "
                "already holds its validation split (chosen when it was written: lit-vision optimize --val_fraction, "
                "--val_seed). Leave data.val_fraction unset with data.stream, or write the stream again."
            )
        if placement not in PLACEMENTS:
            raise LitVisionError(f"data.placement must be one of {', '.join(PLACEMENTS)}; got {placement!r}.")
        if placement == "resident" and augment_on in ("worker", "worker_batched"):
            raise LitVisionError(
                f"data.placement: resident has no loader workers, so data.augment_on: {augment_on} cannot run: "
                "set data.augment_on to auto or device (augmentation then runs on the training device)."
            )
        if stream is not None and placement == "resident":
            raise LitVisionError("data.stream streams chunks through LitData's loader: data.placement: resident "
                                 "holds decoded image folders instead; leave data.placement auto or loader with data.stream.")  # fmt: skip
        if not isinstance(augmentation, Augmentation):
            raise LitVisionError(f"data.augmentation must be an Augmentation, got {augmentation!r}.")
        self.save_hyperparameters()
        self.hparams["augmentation"] = augmentation.as_plain_dict()
        self.augmentation = augmentation
        self.num_workers = num_workers
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / "cache"
        # No parameters or buffers: it follows its input's device, or runs in the workers.
        self.batch_augment = BatchAugment(crop_size, augmentation)
        self._augment_generator: torch.Generator | None = None
        self.num_classes = num_classes
        self.class_names: list[str] = []
        self.submission_names: list[str] | None = None  # predict's submission.csv names classes (see setup)
        self.test_paths: list[str] = []
        self._train_loader = None
        self._train_loader_state: dict | None = None  # from a checkpoint, for the next train loader
        # data.placement: resident — the split tensors on the device, the training loader, and a
        # training-order position restored from a checkpoint before that loader exists.
        self._resident: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._resident_train: ResidentLoader | None = None
        self._found_layout: DataLayout | None = None  # once complete: a class-per-folder scan or CIFAR's arrays, kept

    @keeps_global_rng  # what was already on disk must not change a seeded run (lit_vision.utils.rng)
    def prepare_data(self) -> None:
        # Runs on one process per node, before setup() on every rank.
        hp = self.hparams
        stage = getattr(getattr(getattr(self, "trainer", None), "state", None), "fn", None)
        stage = getattr(stage, "value", stage)
        streamed = hp.stream is not None and stage != "predict"
        if hp.standin and not streamed:  # with a stream, the stand-in's folder serves predict only
            generate_standin_for_run(
                self.data_dir, hp.num_classes, hp.standin_train_per_class, hp.standin_val_per_class,
                hp.standin_test_images, image_size=128,
            )  # fmt: skip
        elif hp.download and hp.layout == "places365":
            download_places365(self.data_dir, num_classes=hp.num_classes)
        elif hp.download and hp.layout in ("cifar10", "cifar100"):
            download_cifar(self.data_dir, hp.layout)
        elif hp.download:
            download_miniplaces(self.data_dir, hp.num_classes)
        if streamed:
            return  # the stream's images were checked when it was written (lit-vision optimize)
        if hp.verify:
            self.check_images(stage)
        if hp.cache or self.placement == "resident":
            self._check_layout()
            for split in {"fit": ("train", "val"), "predict": ()}.get(stage, ("val",)):
                self._cached(split, build=True)

    def check_images(self, stage: str | None) -> None:
        """The pre-flight check (`lit_vision.data.preflight`) of every image `stage` reads."""
        layout = self._check_layout()
        images = layout.images
        layout.class_names(self.num_classes)  # a class-count mismatch first, named as such
        if layout.in_memory:
            return  # CIFAR: arrays, nothing to decode (checked as they are read)
        if stage == "predict":
            lists = {str(images / layout.unlabelled): list_unlabelled_images(images, layout.unlabelled)}
        else:
            lists: dict[str, list[str]] = {}
            for split in ("train", "val") if stage == "fit" else ("val",):
                # A held-out validation share comes from the same folder as training: one list.
                lists.setdefault(str(layout.list_file(split)), []).extend(
                    path for path, _ in layout.labelled(split, self.num_classes)
                )
        verify_images(images, lists, self.cache_dir, self.num_workers)

    @property
    def layout(self) -> DataLayout:
        """Where this dataset's lists and images are (detected anew until complete: a download may
        add them; then kept, as a class-per-folder scan or CIFAR's arrays are costly to redo)."""
        if self._found_layout is not None:
            return self._found_layout
        hp = self.hparams
        layout = detect_layout(self.data_dir, hp.layout, hp.get("val_fraction"), hp.get("val_seed", 0))
        if all(path.exists() for path in layout.required()):
            self._found_layout = layout
        return layout

    def _check_layout(self) -> DataLayout:
        layout = self.layout
        missing = [str(p) for p in layout.required() if not p.exists()]
        if missing and layout.name == "places365":
            raise LitVisionError(
                f"data.data_dir {self.data_dir} is not a Places365-Standard folder: missing {', '.join(missing)}. "
                + places365_instructions(self.data_dir)
            )
        if missing and self.hparams.layout == "auto":
            raise LitVisionError(no_layout_message(self.data_dir))
        if missing and layout.name == "image_folder":
            raise LitVisionError(
                f"data.data_dir {self.data_dir} is not a class-per-folder dataset: missing {', '.join(missing)}. "
                f"Expected {self.data_dir}/train/<class name>/<images>, one sub-folder per class (val/<class>/ and an "
                "unlabelled test/ are optional)."
            )
        if missing and layout.name in ("cifar10", "cifar100"):
            raise LitVisionError(
                f"data.data_dir {self.data_dir} is not a {layout.name} folder (torchvision's format): missing "
                f"{', '.join(missing)}. Set data.download: true to fetch it. " + cifar_instructions(self.data_dir, layout.name)
            )
        if missing:
            raise LitVisionError(
                f"data.data_dir {self.data_dir} is not a MiniPlaces folder: missing {', '.join(missing)}. "
                "Expected images/{train,val,test}/, train.txt and val.txt there. Set data.download: true to "
                "fetch the real dataset, or data.standin: true to generate a small stand-in. "
                + manual_instructions(self.data_dir)
            )
        return layout

    def _labelled(self, split: str, transform) -> MiniPlacesImages:
        layout = self.layout
        if layout.in_memory:
            layout.labelled(split, self.num_classes)  # the class count, checked
            return layout.dataset(split, transform)
        images = layout.images
        entries = layout.labelled(split, self.num_classes)
        # One stat per file at setup is cheap (~0.3 s for 110k) and turns a crash deep
        # inside a worker, hours into a run, into an error before the first step.
        for relative, _ in entries:
            if not (images / relative).is_file():
                raise LitVisionError(f"{layout.list_file(split)} lists {relative}, but {images / relative} is missing.")
        paths, labels = zip(*entries)
        return MiniPlacesImages(images, list(paths), list(labels), transform)

    @property
    def augment_placement(self) -> str:
        """Where training augmentation runs now: "device", "worker_batched" or "worker"."""
        if self.hparams.augment_on != "auto":
            return self.hparams.augment_on
        return "worker_batched" if self._on_cpu() and self.placement == "loader" else "device"

    @property
    def placement(self) -> str:
        """Where decoded images live now: "loader" or "resident" (see the module docstring)."""
        chosen = self.hparams.get("placement", "auto")
        # auto: the loader everywhere. On a GPU it is the path measured end to end; resident was
        # measured on the CPU only (and a stream is LitData's loader anyway).
        return "loader" if chosen == "auto" else chosen

    def _on_cpu(self) -> bool:
        return isinstance(getattr(getattr(self, "trainer", None), "accelerator", None), CPUAccelerator)

    def _split_transform(self, split: str):
        """What a worker applies to a decoded image of this split: the deterministic part
        (cacheable) and the random part (per image, `worker` placement only)."""
        hp = self.hparams
        if split != "train":  # val, or CIFAR's test split
            return eval_transform(hp.resize_size, hp.crop_size), None
        # Training: the crop-size square; the cache holds it, augmentation starts from it.
        random = train_transform(self.augmentation, hp.crop_size) if self.augment_placement == "worker" else None
        return SquareResize(hp.crop_size), random

    def _cached(self, split: str, build: bool = False) -> CachedImages:
        fixed, random = self._split_transform(split)
        kind = f"eval{self.hparams.resize_size}" if split != "train" else "train"
        size = self.hparams.crop_size
        path = cache_path(self.cache_dir, self._cache_key_file(split), kind, size)
        if build or not path.is_file():
            build_cache(path, self._labelled(split, fixed), size, self.num_workers)
        labels = [label for _, label in self.layout.labelled(split, self.num_classes)]
        return CachedImages(path, size, labels, random)

    def _cache_key_file(self, split: str) -> Path:
        """What names and keys `split`'s cache file: its list file, or for a layout without one
        (class folders, CIFAR) a listing of the split written into cache_dir."""
        layout = self.layout
        key = layout.cache_key(split, self.num_classes)
        if key is None:
            return layout.list_file(split)
        path = self.cache_dir / f"{layout.name}-{split}.txt"
        if not path.is_file() or path.read_text() != key:
            atomic_write_text(path, key)
        return path

    def _split(self, split: str):
        if self.hparams.cache or self.placement == "resident":
            return self._cached(split)
        fixed, random = self._split_transform(split)
        return self._labelled(split, random if random is not None else fixed)

    @keeps_global_rng
    def setup(self, stage: str) -> None:
        if self.hparams.stream is not None and stage != "predict":
            return self._setup_stream(stage)
        layout = self._check_layout()
        self.class_names = layout.class_names(self.num_classes)
        # The challenge layouts' submission keeps its class numbers; named classes are written by name.
        self.submission_names = None if layout.name in ("miniplaces", "places365") else self.class_names
        hp = self.hparams
        if stage == "fit":
            self.train_set = self._split("train")
        if stage in ("fit", "validate", "test"):
            # test reads the validation split (labelled), except CIFAR's own labelled test images
            self.val_set = self._split("test" if stage == "test" and "test" in layout.lists else "val")
        if self.placement == "resident":
            self._resident.clear()  # a new stage may run on another device: load again on demand
        if stage == "predict" and layout.in_memory:  # CIFAR: its test images, named test/<index>
            self.predict_set = layout.dataset("test", eval_transform(hp.resize_size, hp.crop_size), with_labels=False)
            self.test_paths = [path for path, _ in layout.labelled("test", self.num_classes)]
        elif stage == "predict":
            self.test_paths = list_unlabelled_images(layout.images, layout.unlabelled)
            self.predict_set = MiniPlacesImages(
                layout.images, self.test_paths, None, eval_transform(hp.resize_size, hp.crop_size)
            )

    def _setup_stream(self, stage: str) -> None:
        # Here, not in __init__: LitData reads the rank and world size when a dataset is built.
        try:
            from lit_vision.data.streaming import StreamedImages, check_trainable, read_stream_meta, split_url
        except ImportError as error:
            raise LitVisionError(f"data.stream needs LitData ({error}): pip install 'lit-vision[streaming]'.") from None
        hp = self.hparams
        cache_dir = str(hp.cache_dir) if hp.cache_dir else None
        meta = read_stream_meta(hp.stream, cache_dir)
        if stage == "fit":
            check_trainable(hp.stream, meta)  # a class-sorted stream would train on 2-class batches
        if meta["num_classes"] != self.num_classes:
            raise LitVisionError(
                f"data.stream {hp.stream} holds {meta['num_classes']} classes but data.num_classes is "
                f"{self.num_classes}: set data.num_classes: {meta['num_classes']}."
            )
        self.class_names = list(meta["class_names"])

        def split(name: str, shuffle: bool) -> StreamedImages:
            fixed, random = self._split_transform(name)
            # Training evens out ranks and workers (drop_last) whatever the world size, so that a
            # checkpoint's stream state fits a resume on another number of processes; every
            # validation sample counts once.
            return StreamedImages(split_url(hp.stream, name), random or fixed, shuffle=shuffle, seed=run_seed() % 2**32,
                                  cache_dir=cache_dir, drop_last=shuffle)  # fmt: skip

        if stage == "fit":
            self.train_set = split("train", shuffle=True)
        self.val_set = split("val", shuffle=False)

    def _resident_loader(self, dataset: CachedImages, shuffle: bool) -> ResidentLoader:
        """`data.placement: resident`: `dataset`'s cache file whole on the training device."""
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        key = str(dataset.path)
        if key not in self._resident or self._resident[key][0].device != device:
            what = f"the {len(dataset)} decoded images of {dataset.path.name}"
            self._resident[key] = load_resident(dataset.path, len(dataset), dataset.size, dataset.targets, device, what)
        images, labels = self._resident[key]
        order = ResidentOrder(
            len(dataset), self.hparams.batch_size, shuffle,
            # The run's seed (seed_everything sets it on every rank alike), as DistributedSampler's.
            seed=run_seed(),
            rank=getattr(trainer, "global_rank", 0), world_size=getattr(trainer, "world_size", 1),
            drop_last=shuffle and self._drops_last(len(dataset)), device=device,
        )  # fmt: skip
        # Training batches are augmented first (on_after_batch_transfer), then laid out.
        return ResidentLoader(images, labels, order, channels_last=self._on_cpu() and not shuffle)


    def _drops_last(self, num_samples: int) -> bool:
        """Whether training drops its last partial batch: only when each rank's shard holds more
        than one batch (decided per shard, so a small set under DDP still trains a step per rank)."""
        world_size = getattr(getattr(self, "trainer", None), "world_size", 1)
        return -(-num_samples // world_size) > self.hparams.batch_size

    def _loader(self, dataset, shuffle: bool, collate_fn=None) -> DataLoader:
        hp = self.hparams
        common = {
            "batch_size": hp.batch_size,
            "num_workers": self.num_workers,
            # On a CPU run, channels-last batches: oneDNN's convolutions are faster on them.
            "collate_fn": collate_fn or (channels_last_collate if self._on_cpu() else None),
            "pin_memory": hp.pin_memory and not self._on_cpu(),
            "worker_init_fn": leave_stops_to_the_main_process,
        }
        if isinstance(dataset, IterableDataset):  # a LitData stream (data.stream)
            from lit_vision.data.streaming import StreamingDataLoader

            return StreamingDataLoader(dataset, **common)  # LitData shards, shuffles and counts itself
        common["persistent_workers"] = self.num_workers > 0
        # A last tiny training batch only adds noise to BatchNorm statistics (and a batch of
        # one breaks it); evaluation keeps every sample.
        common["drop_last"] = shuffle and self._drops_last(len(dataset))
        if not shuffle:
            return DataLoader(dataset, shuffle=False, **common)  # Lightning shards it under DDP
        # Training resumes mid-epoch where it stopped (lit_vision.data.resumable).
        trainer = getattr(self, "trainer", None)
        rank, world_size = getattr(trainer, "global_rank", 0), getattr(trainer, "world_size", 1)
        return resumable_loader(dataset, seed=run_seed(), rank=rank, world_size=world_size, **common)

    def train_dataloader(self) -> DataLoader | ResidentLoader:
        if not isinstance(self.train_set, IterableDataset):  # a stream evens out ranks and workers itself
            world_size = getattr(getattr(self, "trainer", None), "world_size", 1)
            # drop_last as the loaders set it (below and in _resident_loader)
            warn_dropped_images(len(self.train_set), self.hparams.batch_size, world_size,
                                drop_last=self._drops_last(len(self.train_set)))  # fmt: skip
        if self.placement == "resident":
            self._resident_train = self._resident_loader(self.train_set, shuffle=True)
            self._restore_train_position(self._resident_train)
            return self._resident_train
        collate = None
        if self.augment_placement == "worker_batched":
            rank = getattr(getattr(self, "trainer", None), "global_rank", 0)
            collate = WorkerBatchAugment(self.batch_augment, rank)
        self._train_loader = self._loader(self.train_set, shuffle=True, collate_fn=collate)
        self._restore_train_position(self._train_loader)
        return self._train_loader

    def _restore_train_position(self, loader) -> None:
        """Hand a checkpoint's training position to this run's new training loader once, or
        refuse it (`lit_vision.data.train_position`)."""
        state, self._train_loader_state = self._train_loader_state, None
        if state is None:
            return
        trainer = getattr(self, "trainer", None)
        restore_train_position(
            loader, state, stream=self.hparams.stream, num_workers=max(1, self.num_workers),
            world_size=getattr(trainer, "world_size", 1), batch_size=self.hparams.batch_size,
        )  # fmt: skip

    # The training loader's position travels in the DataModule's own state: Lightning would
    # drop the loader's (why: lit_vision.data.train_position).
    def state_dict(self) -> dict:
        return train_position_state(self._train_loader, self._resident_train, self.hparams.stream)

    def load_state_dict(self, state_dict: dict) -> None:
        self._train_loader_state = saved_train_position(state_dict)
        loader = self._resident_train if self._resident_train is not None else self._train_loader
        if loader is not None and self._train_loader_state is not None:
            self._restore_train_position(loader)

    def val_dataloader(self) -> DataLoader | ResidentLoader:
        if self.placement == "resident":
            return self._resident_loader(self.val_set, shuffle=False)
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader | ResidentLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Lightning calls this for every stage; augmentation belongs to training only (not
        # to validation inside fit, nor to validate/test/predict).
        trainer = getattr(self, "trainer", None)
        if self.augment_placement == "device" and trainer is not None and trainer.training:
            generator = self.augment_generator(batch[0].device, trainer.global_rank)
            batch[0] = self.batch_augment(batch[0], generator)  # default_collate gives a list
            if self.placement == "resident" and self._on_cpu():
                batch[0] = batch[0].contiguous(memory_format=torch.channels_last)  # as the CPU loaders' batches
        return batch

    def augment_generator(self, device: torch.device, rank: int) -> torch.Generator:
        """A generator of its own for the device augmentation, seeded from the run's seed and
        the rank: seed_everything gives every DDP rank the same global seed, which would draw
        the same crop, rotation and flip for the i-th image of every rank's batch."""
        if self._augment_generator is None or self._augment_generator.device != device:
            self._augment_generator = keyed_generator(device, torch.initial_seed(), rank)
        return self._augment_generator


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
