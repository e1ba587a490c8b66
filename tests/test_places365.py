"""Places365-Standard in the same DataModule: the layout is read as torchvision's `Places365`
reads it (same files, same labels, same classes), the class count comes from the categories
file (a mismatch is named), and the download fetches the real archive names, checks their md5
and unpacks them atomically (served from 127.0.0.1)."""

from __future__ import annotations

import functools
import http.server
import shutil
import tarfile
import threading

import numpy as np
import pytest
import torch
from torchvision.datasets import Places365

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data import places365 as places365_module
from lit_vision.data.dataset import decode_rgb
from lit_vision.data.places365 import ARCHIVES, download_places365, md5_of
from lit_vision.errors import LitVisionError


def datamodule(root, **kwargs) -> MiniPlacesDataModule:
    settings = {"num_classes": 4, "batch_size": 8, "num_workers": 0, "resize_size": 36, "crop_size": 32,
                "verify": False, "augment_on": "worker", **kwargs}  # fmt: skip
    return MiniPlacesDataModule(str(root), **settings)


def test_reader_agrees_with_torchvision_places365(places365_dir, tmp_path, monkeypatch):
    # torchvision's own download renames data_256 to data_256_standard: read that root as it is.
    root = shutil.copytree(places365_dir, tmp_path / "tv")
    (root / "data_256").rename(root / "data_256_standard")
    monkeypatch.setattr(Places365, "_check_integrity", lambda self, file, md5, download: True)  # fixture md5s
    dm = datamodule(root)  # layout: auto detects Places365
    dm.setup("fit")
    assert dm.layout.name == "places365"
    for split, ours in (("train-standard", dm.train_set), ("val", dm.val_set)):
        theirs = Places365(str(root), split=split, small=True)
        assert [str(ours.images_dir / p) for p in ours.relative_paths] == [path for path, _ in theirs.imgs]
        assert ours.labels == theirs.targets
    # Class names: torchvision keeps "/a/apartment_building/outdoor"; ours drops the letter folder.
    theirs = Places365(str(root), split="val", small=True)
    assert {name: i for i, name in enumerate(dm.class_names)} == {
        name.strip("/").split("/", 1)[1]: i for name, i in theirs.class_to_idx.items()
    }
    assert "apartment_building/outdoor" in dm.class_names
    # The same pixels, within JPEG decoders' rounding (Pillow there, libjpeg-turbo here).
    path, _ = theirs.imgs[0]
    pil = torch.from_numpy(np.array(theirs.loader(path))).permute(2, 0, 1).float()
    assert (pil - decode_rgb(path).float()).abs().mean() < 1.0


def test_places365_feeds_every_split_and_predict(places365_dir):
    dm = datamodule(places365_dir, layout="places365", verify=True)
    dm.prepare_data()  # the pre-flight image check, over both Places365 folders
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and len(dm.train_set) == 64 and len(dm.val_set) == 16
    assert dm.train_set.relative_paths[0] == "data_256/a/airfield/00000001.jpg"
    dm.setup("predict")
    assert dm.test_paths[0] == "test_256/Places365_test_00000001.jpg" and len(dm.test_paths) == 6


def test_class_count_comes_from_the_categories_file(places365_dir):
    dm = datamodule(places365_dir, num_classes=3)
    with pytest.raises(LitVisionError, match=r"categories_places365.txt names 4 classes but data.num_classes is 3"):
        dm.setup("fit")


def test_missing_places365_folder_names_what_is_missing_and_how_to_get_it(places365_dir, tmp_path):
    root = shutil.copytree(places365_dir, tmp_path / "p")
    shutil.rmtree(root / "val_256")
    with pytest.raises(LitVisionError, match=r"not a Places365-Standard folder: missing .*val_256.*val_256.tar"):
        datamodule(root, layout="places365").setup("fit")


@pytest.fixture
def places_mirror(places365_dir, tmp_path, monkeypatch):
    """A local server with the fixture packed like MIT's archives (names as the real ones),
    and the module's md5 table set to the fixture archives' digests."""
    served = tmp_path / "served"
    served.mkdir()
    members = {"lists": ["categories_places365.txt", "places365_train_standard.txt", "places365_val.txt"],
               "train": ["data_256"], "val": ["val_256"], "test": ["test_256"]}  # fmt: skip
    digests = {}
    for name, (archive, _) in ARCHIVES.items():
        with tarfile.open(served / archive, "w") as tar:
            for member in members[name]:
                tar.add(places365_dir / member, arcname=member)
        digests[name] = (archive, md5_of(served / archive))
    monkeypatch.setattr(places365_module, "ARCHIVES", digests)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(places365_module, "BASE_URL", url)
    yield served, url
    server.shutdown()
    server.server_close()


def test_real_archive_names_and_checksums_are_torchvisions():
    table = Places365._IMAGES_META
    assert ARCHIVES["train"] == table[("train-standard", True)]
    assert ARCHIVES["val"] == table[("val", True)] and ARCHIVES["test"] == table[("test", True)]
    assert ARCHIVES["lists"] == Places365._DEVKIT_META["standard"]


def test_download_through_the_datamodule(places_mirror, places365_dir, tmp_path):
    target = tmp_path / "places"
    dm = datamodule(target, layout="places365", download=True)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 64 and dm.class_names[1] == "apartment_building/outdoor"
    assert (target / "places365_val.txt").read_bytes() == (places365_dir / "places365_val.txt").read_bytes()
    assert not (target / "test_256").exists()  # the unlabelled split only on request
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    download_places365(target, base_url="http://127.0.0.1:9", num_classes=4)  # there already: no request


def test_corrupt_archive_is_named_and_leaves_nothing(places_mirror, tmp_path):
    served, url = places_mirror
    archive = ARCHIVES["val"][0]
    payload = bytearray((served / archive).read_bytes())
    payload[-1] ^= 0xFF
    (served / archive).write_bytes(bytes(payload))
    target = tmp_path / "places"
    with pytest.raises(LitVisionError, match=rf"{archive} is corrupt: its md5 is [0-9a-f]{{32}}, expected"):
        download_places365(target, num_classes=4)
    assert not target.exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_offline_download_error_says_how_to_install_by_hand(tmp_path):
    with pytest.raises(LitVisionError, match="Could not download.*train_256_places365standard.tar"):
        download_places365(tmp_path / "places", base_url="http://127.0.0.1:9")


def test_download_refuses_a_folder_holding_something_else(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("the user's")
    with pytest.raises(LitVisionError, match=rf"{foreign} exists, is not empty and is not a Places365 folder"):
        download_places365(foreign, base_url="http://127.0.0.1:9")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
