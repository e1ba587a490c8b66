"""The class-per-folder layout (`data.layout: image_folder`): read as torchvision's ImageFolder
reads it (every (file, label) pair the same, its extensions, its class order), a seeded
stratified hold-out when there is no val/, class names from the folders, one-paragraph errors
(class count, nothing found: every layout looked for), the small-dataset warning, and the
whole CLI on it: fit (pre-flight check, cache) -> validate -> test with the adversarial
evaluation -> predict (class names in the submission), the stream, and exact resume."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data.class_folders import IMAGE_EXTENSIONS
from lit_vision.data.epoch_size import dropped_per_epoch, epoch_size_warning
from lit_vision.data.layout import detect_layout
from lit_vision.errors import LitVisionError

# Sorted as torchvision sorts (upper case first): label i is the i-th name.
CLASS_NAMES = ["Zebra", "abbey", "sea lion", "volcano"]


def write_class_folders(standin: Path, root: Path, with_val: bool = True, with_test: bool = True) -> Path:
    """The stand-in's images as train/<class>/ (and val/<class>/, test/): mixed suffix case,
    some PNGs, a nested sub-folder, and files ImageFolder skips (no image suffix) or that this
    package skips on purpose (hidden)."""
    for split in ("train", "val") if with_val else ("train",):
        for n, line in enumerate((standin / f"{split}.txt").read_text().splitlines()):
            relative, label = line.split()
            folder = root / split / CLASS_NAMES[int(label)]
            if n % 5 == 1:
                folder = folder / "more"  # a nested folder: its images keep their class
            folder.mkdir(parents=True, exist_ok=True)
            source = standin / "images" / relative
            if n % 4 == 0:
                Image.open(source).save(folder / f"img{n:03d}.PNG")
            else:
                shutil.copy(source, folder / f"img{n:03d}.{'JPG' if n % 3 == 0 else 'jpg'}")
    (root / "train" / "abbey" / "notes.txt").write_text("not an image")
    if with_test:
        shutil.copytree(standin / "images" / "test", root / "test")
    return root


@pytest.fixture(scope="module")
def folders_with_val(standin_dir, tmp_path_factory) -> Path:
    return write_class_folders(standin_dir, tmp_path_factory.mktemp("data") / "folders")


@pytest.fixture(scope="module")
def folders_train_only(standin_dir, tmp_path_factory) -> Path:
    return write_class_folders(standin_dir, tmp_path_factory.mktemp("data") / "train_only", with_val=False)


def datamodule(root, **kwargs) -> MiniPlacesDataModule:
    settings = {"num_classes": 4, "batch_size": 8, "num_workers": 0, "resize_size": 36, "crop_size": 32,
                "verify": False, "augment_on": "worker", "pin_memory": False, **kwargs}  # fmt: skip
    return MiniPlacesDataModule(str(root), **settings)


def pairs(dataset) -> list[tuple[str, int]]:
    return [(str(dataset.images_dir / path), label) for path, label in zip(dataset.relative_paths, dataset.labels)]


def test_extensions_are_torchvisions():
    assert IMAGE_EXTENSIONS == IMG_EXTENSIONS


def test_agrees_with_torchvision_image_folder_on_every_file_and_label(folders_with_val):
    dm = datamodule(folders_with_val)  # layout: auto finds train/<class>/ without list files
    dm.setup("fit")
    assert dm.layout.name == "image_folder"
    for split, ours in (("train", dm.train_set), ("val", dm.val_set)):
        theirs = ImageFolder(str(folders_with_val / split))
        assert pairs(ours) == theirs.samples
        assert theirs.classes == CLASS_NAMES
    assert dm.class_names == CLASS_NAMES  # the per-class report and predictions read these
    assert len(dm.train_set) == 64 and len(dm.val_set) == 16
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8
    dm.setup("predict")
    assert dm.test_paths[0] == "test/00000001.jpg" and len(dm.test_paths) == 6


def test_hidden_files_and_folders_are_skipped(folders_with_val, tmp_path):
    root = shutil.copytree(folders_with_val, tmp_path / "hidden")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    shutil.copy(next((root / "train" / "abbey").glob("*.jpg")), root / "train" / "abbey" / "._copy.jpg")
    (root / "train" / "abbey" / ".thumbnails").mkdir()
    shutil.copy(next((root / "train" / "abbey").glob("*.jpg")), root / "train" / "abbey" / ".thumbnails" / "t.jpg")
    dm = datamodule(root)
    dm.setup("fit")
    assert dm.class_names == CLASS_NAMES and len(dm.train_set) == 64


def test_held_out_validation_is_stratified_seeded_and_covers_imagefolder(folders_train_only):
    dm = datamodule(folders_train_only, val_fraction=0.25)
    dm.setup("fit")
    theirs = ImageFolder(str(folders_train_only / "train")).samples
    ours = pairs(dm.train_set) + pairs(dm.val_set)
    assert sorted(ours) == sorted(theirs)  # a partition of exactly ImageFolder's pairs
    assert not set(pairs(dm.train_set)) & set(pairs(dm.val_set))
    assert sorted(dm.val_set.labels) == [c for c in range(4) for _ in range(4)]  # 25% of 16 per class
    again = datamodule(folders_train_only, val_fraction=0.25)
    torch.manual_seed(12345)  # another run seed: the split is data.val_seed's alone
    again.setup("fit")
    assert pairs(again.val_set) == pairs(dm.val_set)  # the same split on every run
    other = datamodule(folders_train_only, val_fraction=0.25, val_seed=1)
    other.setup("fit")
    assert pairs(other.val_set) != pairs(dm.val_set)
    default = datamodule(folders_train_only)  # 0.1 of 16 per class: 2
    default.setup("validate")
    assert len(default.val_set) == 8


def test_class_count_mismatch_is_one_paragraph_naming_the_folder(folders_with_val):
    with pytest.raises(LitVisionError, match=r"train holds 4 class folders \(Zebra, abbey, sea lion, volcano\) but "
                                             r"data.num_classes is 10: set data.num_classes: 4"):  # fmt: skip
        datamodule(folders_with_val, num_classes=10).setup("fit")


def test_val_folder_of_an_unknown_class_and_empty_class_folder_are_named(folders_with_val, tmp_path):
    root = shutil.copytree(folders_with_val, tmp_path / "a")
    (root / "val" / "tundra").mkdir()
    with pytest.raises(LitVisionError, match=r"val has class folders that .*train lacks: tundra"):
        datamodule(root).setup("fit")
    root = shutil.copytree(folders_with_val, tmp_path / "b")
    shutil.rmtree(root / "train" / "volcano")
    (root / "train" / "volcano").mkdir()
    with pytest.raises(LitVisionError, match=r"1 class folder\(s\) of .*train hold no images \(volcano\)"):
        datamodule(root).setup("fit")


def test_val_fraction_conflicts_are_named(folders_with_val, standin_dir):
    with pytest.raises(LitVisionError, match=r"data.val_fraction 0.2 would hold out part of .*val/ is there"):
        datamodule(folders_with_val, val_fraction=0.2).setup("fit")
    with pytest.raises(LitVisionError, match=r"read as miniplaces, whose val split is its own"):
        datamodule(standin_dir, val_fraction=0.2).setup("fit")
    with pytest.raises(LitVisionError, match=r"data.val_fraction must lie in \[0, 1\)"):
        datamodule(folders_with_val, val_fraction=1.5).setup("fit")
    # A data_dir that holds no dataset at all is named as such, not the option.
    with pytest.raises(LitVisionError, match=r"holds none of the dataset layouts this package reads"):
        datamodule(folders_with_val / "test", val_fraction=0.2).setup("fit")


def test_nothing_found_names_every_layout_looked_for_once(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"")
    with pytest.raises(LitVisionError) as error:
        datamodule(tmp_path / "photos").setup("fit")
    message = str(error.value)
    for layout in ("class per folder", "train/<class>/", "CIFAR-10", "cifar-10-batches-py", "MiniPlaces", "Places365"):
        assert layout in message
    assert "not a MiniPlaces folder" not in message
    with pytest.raises(LitVisionError, match="is missing. Looked for: class per folder"):
        datamodule(tmp_path / "absent").setup("fit")


def test_explicit_layout_names_what_it_misses(tmp_path):
    with pytest.raises(LitVisionError, match=r"not a class-per-folder dataset: missing .*train\. Expected"):
        datamodule(tmp_path, layout="image_folder").setup("fit")


def test_pre_flight_check_names_a_bad_image_in_a_class_folder(folders_train_only, tmp_path):
    root = shutil.copytree(folders_train_only, tmp_path / "bad")
    bad = root / "train" / "volcano" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    dm = datamodule(root, verify=True)
    dm.trainer = None
    with pytest.raises(LitVisionError, match=r"1 of the 65 listed images cannot be read: .*volcano/broken.jpg"):
        dm.check_images("fit")


def test_cache_holds_the_same_pixels_as_the_files(folders_train_only, tmp_path):
    root = shutil.copytree(folders_train_only, tmp_path / "cached")
    plain, cached = datamodule(root), datamodule(root, cache=True)
    cached.prepare_data()
    for dm in (plain, cached):
        dm.setup("validate")
    assert len(cached.val_set) == len(plain.val_set) == 8
    for i in range(len(plain.val_set)):
        assert torch.equal(cached.val_set[i][0], plain.val_set[i][0]) and cached.val_set[i][1] == plain.val_set[i][1]
    assert list((root / "cache").glob("image_folder-val-eval36-32px-*.u8"))


def test_epoch_that_drops_images_says_how_many():
    assert dropped_per_epoch(120, 64) == 56
    message = epoch_size_warning(120, 64)
    assert "leaves out 56 of the 120 training images: 1 full batch of 64" in message
    assert "set data.batch_size to 60 (2 steps) to train on all of them" in message
    assert epoch_size_warning(100_000, 256) is None  # 160 of 100k: not worth a line
    assert epoch_size_warning(128, 64) is None
    assert dropped_per_epoch(64, 64, drop_last=False) == 0
    assert "on each of 2 ranks" in epoch_size_warning(120, 32, world_size=2)  # shards of 60: 28 left out
    assert "data.batch_size 49 would leave out 1." in epoch_size_warning(1618, 64)  # 1618 = 2 × 809: no divisor
    message = epoch_size_warning(100, 64, world_size=2)  # shards of 50 < 64: every image left out
    assert "leaves out 100 of the 100 training images: 0 full batches" in message
    assert "set data.batch_size to 50 (1 step on each of 2 ranks)" in message


def test_datamodule_prints_the_warning_once(folders_train_only, capsys):
    dm = datamodule(folders_train_only, batch_size=40)  # 56 training images: 1 batch, 16 left out
    dm.setup("fit")
    dm.train_dataloader()
    err = capsys.readouterr().err
    assert err.count("warning: each training epoch leaves out 16 of the 56 training images") == 1


def test_a_shard_smaller_than_a_batch_still_trains_a_step_on_each_rank(folders_train_only):
    # 56 images on 2 ranks: shards of 28 < batch 40. Deciding drop_last on the whole set (56 > 40)
    # dropped each rank's only batch, so the epoch trained nothing.
    from types import SimpleNamespace

    dm = datamodule(folders_train_only, batch_size=40)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and len(batches[0][1]) == 28


def test_optimize_streams_the_class_folders(folders_train_only, tmp_path):
    pytest.importorskip("litdata")
    from lit_vision.data.optimize import optimize_dataset
    from lit_vision.data.streaming import StreamedImages

    out = optimize_dataset(folders_train_only, tmp_path / "stream", num_workers=1, chunk_size=16)
    meta = json.loads((out / "lit_vision.json").read_text())
    assert meta["layout"] == "image_folder" and meta["class_names"] == CLASS_NAMES
    assert meta["samples"] == {"train": 56, "val": 8}
    layout = detect_layout(folders_train_only)
    listed = layout.labelled("val", 4)
    stream = StreamedImages(str(out / "val"))
    stream.with_index = True
    assert sorted((index, label) for _, label, index in stream) == [(i, label) for i, (_, label) in enumerate(listed)]


# ------------------------------------------------------------------ the CLI, end to end
def write_run_config(tmp_path: Path, data_dir: Path, **data) -> Path:
    config = {
        "experiment": "folders", "seed_everything": 0,
        "model": {"class_path": "lit_vision.models.SimpleNet", "init_args": {"optimizer": "adamw", "lr": 2e-3, "warmup_epochs": 0}},
        "data": {"data_dir": str(data_dir), "num_classes": 4, "batch_size": 16, "num_workers": 0, "resize_size": 36,
                 "crop_size": 32, "pin_memory": False, **data},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False},
    }  # fmt: skip
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


ADV_EVAL = Path(__file__).resolve().parents[1] / "configs" / "adv_eval.yaml"


@pytest.mark.slow
def test_cli_fit_validate_test_adversarial_predict_on_class_folders(folders_with_val, run_cli, tmp_path, capsys):
    config = write_run_config(tmp_path, folders_with_val, cache=True)
    assert run_cli("fit", "--config", config) == 0
    (last,) = (tmp_path / "checkpoints" / "folders").rglob("last.ckpt")
    assert run_cli("validate", "--config", config, "--ckpt_path", last, "--trainer.callbacks+=ClassReport") == 0
    (report,) = (tmp_path / "logs").rglob("class_report.json")
    assert [row["name"] for row in json.loads(report.read_text())["classes"]] == CLASS_NAMES
    assert run_cli("test", "--config", config, "--config", ADV_EVAL, "--ckpt_path", last,
                   "--trainer.callbacks.init_args.sweep_max_batches", "1", "--trainer.limit_test_batches", "1.0") == 0  # fmt: skip
    (evaluation,) = (tmp_path / "logs").rglob("adversarial_eval.json")
    rows = {row["attack"]: row for row in json.loads(evaluation.read_text())["rows"]}
    assert 0 <= rows["true_label"]["top1"] <= rows["clean"]["top1"]  # the true-label PGD ran on these images
    assert run_cli("predict", "--config", config, "--ckpt_path", last) == 0
    (submission,) = (tmp_path / "logs").rglob("submission.csv")  # class names, not numbers
    rows = list(csv.reader(submission.read_text().splitlines()))
    assert rows[0] == ["file", "class_1", "class_2", "class_3", "class_4"] and len(rows) == 7  # 4 classes: top 4
    assert rows[1][0] == "test/00000001.jpg" and sorted(rows[1][1:]) == sorted(CLASS_NAMES)

    # export: the ONNX file (run by onnxruntime) gives the checkpoint's logits on a real image
    pytest.importorskip("onnxruntime")
    from test_export import load

    from lit_vision.data.dataset import decode_rgb
    from lit_vision.data.transforms import eval_transform
    from lit_vision.models import SimpleNet

    output = tmp_path / "model.onnx"
    assert run_cli("export", "--config", config, "--ckpt_path", last, "--format", "onnx", "--output", output) == 0
    run, _ = load("onnx", output)
    image = eval_transform(36, 32)(decode_rgb(folders_with_val / "test" / "00000001.jpg"))[None]
    reference = SimpleNet.load_from_checkpoint(last, map_location="cpu").eval()
    with torch.no_grad():
        torch.testing.assert_close(run(image), reference(image), rtol=0, atol=1e-4)

    # resume: one more epoch from last.ckpt, on the same scan of the folders
    assert run_cli("fit", "--config", config, "--ckpt_path", "last", "--trainer.max_epochs", "2") == 0
    resumed = torch.load(tmp_path / "checkpoints" / "folders" / "version_1" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 8  # 64 images / 16 per step, twice

    # adversarial training with TRADES on the folders
    trades = tmp_path / "trades.yaml"
    trades.write_text(yaml.safe_dump({"trainer": {"callbacks": [{
        "class_path": "lit_vision.callbacks.adversarial_training.AdversarialTraining",
        "init_args": {"fraction": 1.0, "epsilon": [0.0314, 0.0314], "steps": [2, 2], "step_scale": 2.5,
                      "random_start": True, "objective": "trades", "trades_beta": 6.0}}]}}))  # fmt: skip
    assert run_cli("fit", "--config", config, "--config", trades, "--experiment", "folders_trades") == 0
    assert list((tmp_path / "checkpoints" / "folders_trades").rglob("last.ckpt"))
    capsys.readouterr()


@pytest.mark.slow
def test_cli_small_dataset_warning_and_auto_layout(folders_train_only, run_cli, tmp_path, capsys):
    config = write_run_config(tmp_path, folders_train_only, batch_size=40)
    assert run_cli("fit", "--config", config, "--trainer.max_epochs", "1") == 0
    err = capsys.readouterr().err
    assert "warning: each training epoch leaves out 16 of the 56 training images" in err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_class_folders_resume_mid_epoch_trains_every_image_exactly_once(tiny_config, folders_with_val, tmp_path):
    """The 2-process DDP kill-and-resume check of test_exactly_once, on the class-per-folder
    layout: the folder scan gives the same 64 training images in the same order on every
    rank and on the resumed run, so the saved position means the same images."""
    from test_exactly_once import assert_exactly_once, killed_then_resumed, trained

    data = ("--data.data_dir", str(folders_with_val), "--data.verify", "false")
    _, saved_step = killed_then_resumed(tmp_path, tiny_config, kill_extra=data, resume_extra=data)
    assert_exactly_once(trained(tmp_path / "killed", epoch=0), 64)
    epoch1 = trained(tmp_path / "killed", 1, up_to_step=saved_step) + trained(tmp_path / "resumed", 1)
    assert_exactly_once(epoch1, 64)
