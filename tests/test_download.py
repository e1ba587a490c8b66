"""The real-dataset download path, exercised against a small archive served on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import shutil
import tarfile
import threading

import pytest

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data import download as download_module
from lit_vision.data.download import download_miniplaces
from lit_vision.errors import LitVisionError


@pytest.fixture
def mirror(standin_dir, tmp_path):
    """A local HTTP server with data.tar.gz (images/ at the top, like MIT's) and the list files."""
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "data.tar.gz", "w:gz") as tar:
        tar.add(standin_dir / "images", arcname="images")
    for name in ("train.txt", "val.txt", "categories.txt"):
        shutil.copy(standin_dir / name, served / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield served, url
    server.shutdown()
    server.server_close()


def test_download_unpacks_a_verified_dataset(mirror, tmp_path):
    served, url = mirror
    target = tmp_path / "miniplaces"
    download_miniplaces(target, num_classes=4, archive_url=f"{url}/data.tar.gz", lists_url=url)
    assert (target / "images" / "val" / "00000001.jpg").is_file()
    assert (target / "train.txt").read_text() == (served / "train.txt").read_text()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    # A second call finds the dataset and downloads nothing.
    (served / "data.tar.gz").unlink()
    download_miniplaces(target, num_classes=4, archive_url=f"{url}/data.tar.gz", lists_url=url)


def test_datamodule_download_flag_uses_the_same_path(mirror, tmp_path, monkeypatch):
    _, url = mirror
    monkeypatch.setattr(download_module, "ARCHIVE_URL", f"{url}/data.tar.gz")
    monkeypatch.setattr(download_module, "LISTS_URL", url)
    datamodule = MiniPlacesDataModule(str(tmp_path / "mp"), num_classes=4, download=True, batch_size=4,
                                      num_workers=0, resize_size=36, crop_size=32)  # fmt: skip
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 64


def test_damaged_archive_leaves_nothing_behind(mirror, tmp_path):
    served, url = mirror
    payload = (served / "data.tar.gz").read_bytes()
    (served / "data.tar.gz").write_bytes(payload[: len(payload) // 2])
    target = tmp_path / "miniplaces"
    with pytest.raises(LitVisionError, match="damaged"):
        download_miniplaces(target, num_classes=4, archive_url=f"{url}/data.tar.gz", lists_url=url)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_list_naming_an_image_absent_from_the_archive_is_refused(mirror, tmp_path):
    served, url = mirror
    with open(served / "val.txt", "a") as handle:
        handle.write("val/99999999.jpg 1\n")
    target = tmp_path / "miniplaces"
    with pytest.raises(LitVisionError, match="val/99999999.jpg, which is not in"):
        download_miniplaces(target, num_classes=4, archive_url=f"{url}/data.tar.gz", lists_url=url)
    assert not target.exists()


def test_offline_error_says_how_to_install_by_hand(tmp_path):
    target = tmp_path / "miniplaces"
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(LitVisionError, match="Could not download.*To install it by hand.*images/train"):
        download_miniplaces(target, archive_url="http://127.0.0.1:9/data.tar.gz", lists_url="http://127.0.0.1:9")
    assert not target.exists()


def test_refuses_to_download_into_a_foreign_non_empty_folder(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(LitVisionError, match="refusing to download"):
        download_miniplaces(target, archive_url="http://127.0.0.1:9/x", lists_url="http://127.0.0.1:9")
    assert (target / "thesis.tex").read_text() == "precious"


def test_truncated_transfer_is_detected(tmp_path):
    """A server that promises more bytes than it sends (a dropped connection)."""

    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(LitVisionError, match="cut short|Could not download"):
            download_module.fetch(f"http://127.0.0.1:{server.server_address[1]}/f", tmp_path / "f")
    finally:
        server.shutdown()
        server.server_close()
