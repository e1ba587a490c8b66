"""CIFAR-10 / CIFAR-100 in torchvision's on-disk format: fixtures written as the real pickled
batches are read by this package and by torchvision's `CIFAR10` / `CIFAR100` identically
(pixels, labels, class names); the splits (val: the test images or a held-out share; test:
the test images); the download (torchvision's URLs and md5s; served from 127.0.0.1, checked,
unpacked atomically); the standard 32-px augmentation (pad-4 crop + flip) on both augmentation
paths; and the whole CLI on it: fit -> validate -> test with the adversarial evaluation -> predict."""

from __future__ import annotations

import functools
import http.server
import json
import pickle
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torchvision.datasets import CIFAR10, CIFAR100

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data import download as download_module
from lit_vision.data.augment_settings import Augmentation
from lit_vision.data.batch_augment import BatchAugment
from lit_vision.data.cifar import CIFAR10 as OUR_CIFAR10
from lit_vision.data.cifar import CIFAR100 as OUR_CIFAR100
from lit_vision.data.download import CIFAR_ARCHIVES, download_cifar
from lit_vision.data.places365 import md5_of
from lit_vision.data.transforms import train_transform
from lit_vision.errors import LitVisionError

REPO = Path(__file__).resolve().parents[1]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _batch(rng, count: int, num_classes: int, label_key: str, title: str) -> dict:
    labels = [int(i % num_classes) for i in rng.permutation(count)]
    # A colour per class plus noise: learnable, and every image differs.
    base = (np.arange(num_classes)[:, None] * 977 % 256).astype(np.int64)
    data = (base[labels] + rng.integers(0, 60, (count, 3072))) % 256
    batch = {"batch_label": title, label_key: labels, "data": data.astype(np.uint8),
             "filenames": [f"image_{i}.png" for i in range(count)]}  # fmt: skip
    if label_key == "fine_labels":
        batch["coarse_labels"] = [label // 5 for label in labels]
    return batch


def _dump(path: Path, content: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)  # the protocol of the real (Python 2) files


def write_cifar10(root: Path, per_batch: int = 10, test: int = 20) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _dump(base / f"data_batch_{i}", _batch(rng, per_batch, 10, "labels", f"training batch {i} of 5"))
    _dump(base / "test_batch", _batch(rng, test, 10, "labels", "testing batch 1 of 1"))
    _dump(base / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": CIFAR10_NAMES, "num_vis": 3072})
    return root


def write_cifar100(root: Path, train: int = 200, test: int = 100) -> Path:
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    _dump(base / "train", _batch(rng, train, 100, "fine_labels", "training batch 1 of 1"))
    _dump(base / "test", _batch(rng, test, 100, "fine_labels", "testing batch 1 of 1"))
    _dump(base / "meta", {"fine_label_names": [f"fine_{i:02d}" for i in range(100)],
                          "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)]})  # fmt: skip
    return root


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("data") / "cifar")


@pytest.fixture(scope="module")
def cifar100_dir(tmp_path_factory) -> Path:
    return write_cifar100(tmp_path_factory.mktemp("data") / "cifar")


def datamodule(root, **kwargs) -> MiniPlacesDataModule:
    settings = {"num_classes": 10, "batch_size": 8, "num_workers": 0, "resize_size": 32, "crop_size": 32,
                "augment_on": "worker", "pin_memory": False, **kwargs}  # fmt: skip
    return MiniPlacesDataModule(str(root), **settings)


def test_urls_md5s_and_files_are_torchvisions():
    for ours, theirs, name in ((OUR_CIFAR10, CIFAR10, "cifar10"), (OUR_CIFAR100, CIFAR100, "cifar100")):
        assert CIFAR_ARCHIVES[name] == (theirs.url, theirs.tgz_md5)
        assert ours.folder == theirs.base_folder
        assert list(ours.train_files) == [name for name, _ in theirs.train_list]
        assert [ours.test_file] == [name for name, _ in theirs.test_list]
        assert (ours.meta_file, ours.names_key) == (theirs.meta["filename"], theirs.meta["key"])


@pytest.mark.parametrize("layout, fixture, theirs, classes", [("cifar10", "cifar10_dir", CIFAR10, 10),
                                                              ("cifar100", "cifar100_dir", CIFAR100, 100)])  # fmt: skip
def test_read_exactly_as_torchvision_reads_them(layout, fixture, theirs, classes, request, monkeypatch):
    root = request.getfixturevalue(fixture)
    # torchvision checks every file's md5: give it the fixture's (the real files' are in its tables).
    base = root / theirs.base_folder
    monkeypatch.setattr(theirs, "train_list", [[name, md5_of(base / name)] for name, _ in theirs.train_list])
    monkeypatch.setattr(theirs, "test_list", [[name, md5_of(base / name)] for name, _ in theirs.test_list])
    monkeypatch.setattr(theirs, "meta", {**theirs.meta, "md5": md5_of(base / theirs.meta["filename"])})
    dm = datamodule(root, num_classes=classes, layout=layout)
    dm.setup("fit")
    tv_train, tv_test = theirs(str(root), train=True), theirs(str(root), train=False)
    assert dm.class_names == tv_train.classes
    for ours, tv in ((dm.train_set, tv_train), (dm.val_set, tv_test)):  # val: the test images by default
        assert ours.labels == list(tv.targets)
        assert torch.equal(ours.images.permute(0, 2, 3, 1), torch.from_numpy(tv.data))  # torchvision keeps HWC
    image, label = dm.val_set[3]  # the evaluation transform at 32 px leaves the pixels as they are
    assert torch.equal(image, torch.from_numpy(np.array(tv_test[3][0])).permute(2, 0, 1)) and label == tv_test[3][1]
    assert MiniPlacesDataModule(str(root), num_classes=classes).layout.name == layout  # auto finds it


def test_splits_val_holdout_test_and_predict(cifar10_dir):
    dm = datamodule(cifar10_dir, val_fraction=0.2)
    dm.setup("fit")
    assert len(dm.train_set) == 40 and len(dm.val_set) == 10  # 50 training images, 1 of 5 per class held out
    assert sorted(dm.val_set.labels) == list(range(10))
    dm.setup("test")
    assert len(dm.val_set) == 20  # the test stage: CIFAR's own test images
    dm.setup("predict")
    assert len(dm.predict_set) == 20 and dm.test_paths[:2] == ["test/0", "test/1"]
    assert dm.predict_set[5][1] == 5  # predict yields indices, as for image files


def test_cache_and_a_crop_other_than_32(cifar10_dir, tmp_path):
    root = shutil.copytree(cifar10_dir, tmp_path / "c")
    plain, cached = datamodule(root), datamodule(root, cache=True)
    cached.prepare_data()
    for dm in (plain, cached):
        dm.setup("validate")
    assert all(torch.equal(cached.val_set[i][0], plain.val_set[i][0]) for i in range(len(plain.val_set)))
    big = datamodule(root, resize_size=40, crop_size=36)
    big.setup("fit")
    assert big.val_set[0][0].shape == (3, 36, 36) and big.train_set[0][0].shape == (3, 36, 36)


def test_resident_placement_holds_the_same_images(cifar10_dir, tmp_path):
    root = shutil.copytree(cifar10_dir, tmp_path / "r")
    dm = datamodule(root, placement="resident", augment_on="device")
    dm.prepare_data()  # decodes (copies) each split into the cache the resident path loads
    dm.setup("fit")
    images, labels = next(iter(dm.val_dataloader()))
    plain = datamodule(root)
    plain.setup("fit")
    assert torch.equal(images, plain.val_set.images[: len(images)]) and labels.tolist() == plain.val_set.labels[: len(images)]
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8


def test_class_count_and_missing_files_are_named(cifar10_dir, cifar100_dir, tmp_path):
    with pytest.raises(LitVisionError, match=r"data.layout cifar10 has 10 classes but data.num_classes is 100: "
                                             r"set data.num_classes: 10"):  # fmt: skip
        datamodule(cifar10_dir, num_classes=100).setup("fit")
    root = shutil.copytree(cifar10_dir, tmp_path / "partial")
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(LitVisionError, match=r"not a cifar10 folder .*missing .*data_batch_3\. Set data.download: true.*"
                                             r"cifar-10-python.tar.gz \(md5 c58f30108f718f92721af3b95e74349a\)"):  # fmt: skip
        datamodule(root, layout="cifar10").setup("fit")
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(LitVisionError, match=r"data_batch_3 is not a CIFAR batch file"):
        datamodule(root).setup("fit")
    both = shutil.copytree(cifar100_dir, tmp_path / "both")
    shutil.copytree(cifar10_dir / "cifar-10-batches-py", both / "cifar-10-batches-py")
    with pytest.raises(LitVisionError, match="holds both CIFAR-10 and CIFAR-100"):
        datamodule(both).setup("fit")


def test_optimize_declines_cifar(cifar10_dir, tmp_path):
    pytest.importorskip("litdata")
    from lit_vision.data.optimize import optimize_dataset

    with pytest.raises(LitVisionError, match="read whole into memory"):
        optimize_dataset(cifar10_dir, tmp_path / "stream", num_workers=1)


# ------------------------------------------------------------------ download
@pytest.fixture
def cifar_mirror(cifar10_dir, tmp_path, monkeypatch):
    """127.0.0.1 serving the fixture packed as torchvision's archive, and the md5 table set to its digest."""
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar10_dir / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
    monkeypatch.setitem(download_module.CIFAR_ARCHIVES, "cifar10", (url, md5_of(archive)))
    yield archive, url
    server.shutdown()
    server.server_close()


def test_download_through_the_datamodule(cifar_mirror, cifar10_dir, tmp_path):
    target = tmp_path / "downloads"
    target.mkdir()
    (target / "other.txt").write_text("the user's")  # torchvision's root may hold other datasets
    dm = datamodule(target, layout="cifar10", download=True)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 50 and dm.class_names == CIFAR10_NAMES
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        assert (target / "cifar-10-batches-py" / name).read_bytes() == (cifar10_dir / "cifar-10-batches-py" / name).read_bytes()
    assert (target / "other.txt").read_text() == "the user's"
    assert not [p for p in target.iterdir() if ".partial-" in p.name]
    download_cifar(target, "cifar10", url="http://127.0.0.1:9/none")  # there already: no request


def test_corrupt_download_is_named_and_leaves_nothing(cifar_mirror, tmp_path):
    archive, url = cifar_mirror
    payload = bytearray(archive.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    archive.write_bytes(bytes(payload))
    with pytest.raises(LitVisionError, match=r"cifar-10-python.tar.gz is corrupt: its md5 is [0-9a-f]{32}, expected .*download .* by hand"):
        download_cifar(tmp_path / "d", "cifar10")
    assert not (tmp_path / "d" / "cifar-10-batches-py").exists()
    assert not [p for p in (tmp_path / "d").iterdir() if ".partial-" in p.name]


def test_offline_download_says_how_to_install_by_hand(tmp_path):
    with pytest.raises(LitVisionError, match=r"Could not download .*unpack it in .*cifar-100-python/ exists"):
        download_cifar(tmp_path, "cifar100", url="http://127.0.0.1:9/cifar-100-python.tar.gz")


# ------------------------------------------------------------------ augmentation
def _shifts(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    size = image.shape[-1]
    return [padded[:, t : t + size, s : s + size] for t in range(2 * pad + 1) for s in range(2 * pad + 1)]


def test_pad4_crop_and_flip_exactly_on_both_paths():
    """Every output is one of the 81 shifts (zero fill) of the image or of its mirror, on the
    batched path (device / worker_batched) and the per-image one (worker); both use many shifts."""
    settings = yaml.safe_load((REPO / "configs" / "data" / "cifar10.yaml").read_text())["augmentation"]
    augmentation = Augmentation(**settings)
    assert augmentation.padding == 4 and augmentation.flip
    image = torch.randint(1, 256, (3, 32, 32), dtype=torch.uint8)
    candidates = _shifts(image, 4) + _shifts(image.flip(-1), 4)
    batch = image.expand(64, 3, 32, 32).contiguous()
    batched = BatchAugment(32, augmentation)(batch, torch.Generator().manual_seed(0))
    per_image = torch.stack([train_transform(augmentation, 32)(image) for _ in range(64)])
    for outputs, scale in ((batched, 255.0), (per_image.float(), 1.0)):
        found = []
        for out in outputs:
            matches = [i for i, c in enumerate(candidates) if torch.allclose(out * scale, c.float(), atol=1e-3)]
            assert matches, "an output that is no pad-4 shift of the image"
            found.append(matches[0])
        assert len(set(found)) > 20 and any(i >= 81 for i in found) and any(i < 81 for i in found)


# ------------------------------------------------------------------ the CLI, end to end
@pytest.mark.slow
def test_cli_fit_validate_test_adversarial_predict_on_cifar(cifar10_dir, run_cli, tmp_path, capsys):
    config = {
        "experiment": "cifar", "seed_everything": 0,
        "data": str(REPO / "configs" / "data" / "cifar10.yaml"),
        "model": {"class_path": "lit_vision.models.SimpleNet", "init_args": {"optimizer": "adamw", "lr": 2e-3, "warmup_epochs": 0}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False},
    }  # fmt: skip
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    flags = ["--config", path, "--data.data_dir", cifar10_dir, "--data.download", "false", "--data.batch_size", "8",
             "--data.num_workers", "0", "--data.pin_memory", "false", "--data.val_fraction", "0.2"]  # fmt: skip
    assert run_cli("fit", *flags) == 0
    (last,) = (tmp_path / "checkpoints" / "cifar").rglob("last.ckpt")
    assert run_cli("validate", *flags, "--ckpt_path", last, "--trainer.callbacks+=ClassReport") == 0
    (report,) = (tmp_path / "logs").rglob("class_report.json")
    assert [row["name"] for row in json.loads(report.read_text())["classes"]] == CIFAR10_NAMES
    assert run_cli("test", *flags, "--config", REPO / "configs" / "adv_eval.yaml", "--ckpt_path", last,
                   "--trainer.callbacks.init_args.sweep_max_batches", "1") == 0  # fmt: skip
    (evaluation,) = (tmp_path / "logs").rglob("adversarial_eval.json")
    rows = {row["attack"]: row for row in json.loads(evaluation.read_text())["rows"]}
    assert 0 <= rows["true_label"]["top1"] <= rows["clean"]["top1"]  # the true-label PGD ran on these images
    assert run_cli("predict", *flags, "--ckpt_path", last) == 0
    (submission,) = (tmp_path / "logs").rglob("submission.csv")
    lines = submission.read_text().splitlines()
    assert len(lines) == 21 and lines[1].startswith("test/0,") and lines[1].split(",")[1] in CIFAR10_NAMES
    capsys.readouterr()
