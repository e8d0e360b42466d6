"""Where MNIST-format files are found, and downloads from a local HTTP server.

Nothing here touches the real home folder, the real cache, or the internet: HOME,
FASTCONV_DATA, FASTCONV_CACHE, the system folders and the mirror table are all
pointed at temporary folders and a server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from fastconv.data import (
    DataError,
    DatasetNotFoundError,
    DownloadError,
    load_mnist,
    read_idx,
    sources,
    write_idx,
)
from tests.conftest import shared_data_dir

SHARED_DATA = shared_data_dir()  # read before the isolation fixture clears FASTCONV_DATA


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A fake HOME, no FASTCONV_* variables, a fake system folder, no mirrors, no proxy."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for variable in ("FASTCONV_DATA", "FASTCONV_CACHE", "http_proxy", "HTTP_PROXY", "https_proxy",
                     "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    system = tmp_path / "system"
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIRS", [system])
    # any download a test does not set up explicitly fails at once instead of going online
    monkeypatch.setattr(sources, "MIRRORS", {name: [] for name in sources.DATASETS})
    return dict(tmp=tmp_path, home=home, system=system)


def make_split(directory: Path, split: str, n: int, marker: int, gz: bool = True) -> None:
    """Write a tiny, recognisable split: every pixel of every image equals ``marker``."""
    images_stem, labels_stem = sources.SPLIT_FILES[split]
    suffix = ".gz" if gz else ""
    write_idx(directory / f"{images_stem}{suffix}", np.full((n, 28, 28), marker, np.uint8))
    write_idx(directory / f"{labels_stem}{suffix}", (np.arange(n) % 10).astype(np.uint8))


def marker_of(split="test", **kwargs) -> int:
    images, labels = load_mnist("mnist", split, download=False, **kwargs)
    return int(images[0, 0, 0])


# ------------------------------------------------------------------ lookup order
def test_lookup_order(isolated, monkeypatch):
    tmp = isolated["tmp"]
    explicit, data_env = tmp / "explicit", tmp / "fastconv-data"
    cache = isolated["home"] / ".cache" / "fastconv" / "mnist"
    places = [
        (explicit, 1),                      # root itself
        (explicit / "mnist", 2),            # root/<name>
        (data_env / "mnist", 3),            # $FASTCONV_DATA/<name>
        (data_env, 4),                      # $FASTCONV_DATA
        (cache, 5),                         # ~/.cache/fastconv/<name>
        (isolated["system"] / "mnist", 6),  # /usr/share/datasets/<name>
    ]
    for directory, marker in places:
        make_split(directory, "test", 3, marker)
    monkeypatch.setenv("FASTCONV_DATA", str(data_env))
    assert sources.candidate_dirs("mnist", explicit) == [place for place, _ in places]
    # remove the winner each time: the next place in the order takes over
    for directory, marker in places:
        assert marker_of(root=explicit) == marker
        for stem in sources.SPLIT_FILES["test"]:
            (directory / f"{stem}.gz").unlink()
    with pytest.raises(DatasetNotFoundError):
        marker_of(root=explicit)


def test_cache_dir_follows_fastconv_cache(isolated, monkeypatch):
    assert sources.cache_root() == isolated["home"] / ".cache" / "fastconv"
    monkeypatch.setenv("FASTCONV_CACHE", str(isolated["tmp"] / "elsewhere"))
    assert sources.cache_root() == isolated["tmp"] / "elsewhere"
    make_split(isolated["tmp"] / "elsewhere" / "mnist", "test", 2, marker=9)
    assert marker_of() == 9


def test_raw_and_gz_files_both_found_gz_first(isolated):
    directory = isolated["tmp"] / "d"
    make_split(directory, "test", 2, marker=7, gz=False)
    assert marker_of(root=directory) == 7
    make_split(directory, "test", 2, marker=8, gz=True)
    assert marker_of(root=directory) == 8


def test_a_folder_needs_both_files_of_the_split(isolated):
    directory = isolated["tmp"] / "d"
    make_split(directory, "test", 2, marker=1)
    assert sources.find_dataset_dir("mnist", "test", directory) == directory
    assert sources.find_dataset_dir("mnist", "train", directory) is None
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    assert sources.find_dataset_dir("mnist", "test", directory) is None


def test_missing_without_download_lists_places_and_remedy(isolated, monkeypatch):
    monkeypatch.setenv("FASTCONV_DATA", str(isolated["tmp"] / "env-data"))
    with pytest.raises(DatasetNotFoundError) as caught:
        load_mnist("fashion-mnist", "train", root=isolated["tmp"] / "mine", download=False)
    message = str(caught.value)
    for place in sources.candidate_dirs("fashion-mnist", isolated["tmp"] / "mine"):
        assert str(place) in message
    assert "download=True" in message and "FASTCONV_DATA" in message
    assert "train-images-idx3-ubyte" in message and "dataset-fashion-mnist" in message


def test_unknown_names_and_splits(isolated):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_mnist("cifar", "test", download=False)
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist("mnist", "validation", download=False)


def test_images_and_labels_must_agree(isolated):
    directory = isolated["tmp"] / "d"
    write_idx(directory / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="has 3 images but .* has 4 labels"):
        load_mnist("mnist", "test", root=directory, download=False)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 10], np.uint8))
    with pytest.raises(DataError, match="label 10 out of range"):
        load_mnist("mnist", "test", root=directory, download=False)


# ------------------------------------------------------------------ local HTTP server
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path.startswith("/cut-short/"):  # promises 1000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b" + b"\x00" * 8)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def file_server(tmp_path):
    """Serve ``tmp_path/'www'`` on 127.0.0.1 (ephemeral port) from a thread."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # a short poll interval makes shutdown() return quickly
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A localhost URL nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def publish_test_split(www: Path, mirror: str, marker: int) -> dict[str, str]:
    """Put a test split under ``www/mirror`` and return its checksum table."""
    make_split(www / mirror, "test", 5, marker)
    return {path.name: md5_of(path) for path in (www / mirror).iterdir()}


def assert_no_temp_files(directory: Path) -> None:
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".part"]
    assert leftovers == []


def test_download_success(isolated, file_server):
    www, base = file_server
    checksums = publish_test_split(www, "good", marker=42)
    dest = sources.download_dataset("mnist", splits=("test",), mirrors=[f"{base}/good/"],
                                    checksums=checksums, progress=False)
    assert dest == isolated["home"] / ".cache" / "fastconv" / "mnist"
    assert sorted(p.name for p in dest.iterdir()) == sorted(checksums)
    for name in checksums:
        assert (dest / name).read_bytes() == (www / "good" / name).read_bytes()
    assert_no_temp_files(dest)
    assert marker_of() == 42  # now found in the cache without downloading


def test_load_mnist_downloads_when_allowed(isolated, file_server, monkeypatch):
    www, base = file_server
    checksums = publish_test_split(www, "m", marker=11)
    monkeypatch.setenv("FASTCONV_CACHE", str(isolated["tmp"] / "cache"))
    monkeypatch.setattr(sources, "DATASETS", {
        **sources.DATASETS,
        "mnist": sources.IdxDataset("mnist", sources.DATASETS["mnist"].classes, (), checksums)})
    # mirror given as a module attribute, the way a user behind a proxy mirror would
    monkeypatch.setitem(sources.MIRRORS, "mnist", [f"{base}/m"])
    images, labels = load_mnist("mnist", "test", download=True)
    assert images.shape == (5, 28, 28) and int(images[0, 0, 0]) == 11
    assert labels.dtype == np.int64
    assert (isolated["tmp"] / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_checksum_mismatch_leaves_nothing(isolated, file_server):
    www, base = file_server
    checksums = publish_test_split(www, "tampered", marker=1)
    wrong = {name: "0" * 32 for name in checksums}
    dest = isolated["tmp"] / "dest"
    with pytest.raises(DownloadError) as caught:
        sources.download_dataset("mnist", splits=("test",), dest=dest, mirrors=[f"{base}/tampered/"],
                                 checksums=wrong, progress=False)
    message = str(caught.value)
    assert "checksum mismatch" in message and "0" * 32 in message
    assert "t10k-images-idx3-ubyte.gz" in message and f"{base}/tampered/" in message
    assert not dest.exists()  # no temp file, no half-verified file, not even the folder it made


def test_fallback_to_next_mirror(isolated, file_server):
    www, base = file_server
    checksums = publish_test_split(www, "good", marker=3)
    make_split(www / "stale", "test", 5, marker=99)  # different bytes: fails the checksum
    mirrors = [closed_port_url(), f"{base}/missing/", f"{base}/cut-short/", f"{base}/stale/", f"{base}/good/"]
    dest = sources.download_dataset("mnist", splits=("test",), dest=isolated["tmp"] / "dest",
                                    mirrors=mirrors, checksums=checksums, progress=False)
    assert int(read_idx(dest / "t10k-images-idx3-ubyte.gz")[0, 0, 0]) == 3
    assert_no_temp_files(dest)


def test_every_mirror_failing_reports_each(isolated, file_server):
    _, base = file_server
    refused = closed_port_url()
    urls = [refused, f"{base}/nothing/here.gz", f"{base}/cut-short/here.gz"]
    with pytest.raises(DownloadError) as caught:
        sources.download_file(urls, isolated["tmp"] / "d" / "here.gz", md5=None, progress=False)
    message = str(caught.value)
    assert all(url in message for url in urls)
    assert "404" in message and "incomplete download of here.gz: 10 of 1000 bytes" in message
    assert list((isolated["tmp"] / "d").iterdir()) == []


def test_load_mnist_download_with_no_mirror_fails_clearly(isolated):
    with pytest.raises(DownloadError, match="no mirror configured"):
        load_mnist("mnist", "test", download=True)


def test_existing_files_are_not_downloaded_again(isolated, file_server):
    www, base = file_server
    dest = isolated["tmp"] / "dest"
    make_split(dest, "test", 2, marker=5)
    # the mirror has nothing: any download attempt would fail
    sources.download_dataset("mnist", splits=("test",), dest=dest, mirrors=[f"{base}/empty/"], progress=False)
    assert int(read_idx(dest / "t10k-images-idx3-ubyte.gz")[0, 0, 0]) == 5


# ------------------------------------------------------------------ the checksum table vs real files
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_payload_checksums_match_real_files(name):
    if SHARED_DATA is None or not (SHARED_DATA / name).is_dir():
        pytest.skip(f"real {name} files not available (set FASTCONV_DATA)")
    results = sources.verify_dataset_files(name, SHARED_DATA / name)
    assert results and all(results.values()), results


def test_published_gz_checksums_match_real_mnist_files():
    """The shared MNIST test files are the published .gz bytes (Debian re-gzipped
    Fashion-MNIST, so only its payload checksums can match there)."""
    if SHARED_DATA is None or not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("real MNIST files not available (set FASTCONV_DATA)")
    for stem in sources.SPLIT_FILES["test"]:
        name = f"{stem}.gz"
        assert md5_of(SHARED_DATA / "mnist" / name) == sources.DATASETS["mnist"].gz_md5[name]


def test_download_real_file_verified_by_published_table(isolated, file_server):
    """Serve the real MNIST test labels locally; the default checksum table accepts them."""
    if SHARED_DATA is None or not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("real MNIST files not available (set FASTCONV_DATA)")
    www, base = file_server
    (www / "mirror").mkdir()
    for stem in sources.SPLIT_FILES["test"]:
        shutil.copy(SHARED_DATA / "mnist" / f"{stem}.gz", www / "mirror")
    dest = sources.download_dataset("mnist", splits=("test",), mirrors=[f"{base}/mirror/"], progress=False)
    images, labels = load_mnist("mnist", "test", download=False)
    assert dest.parent.parent == isolated["home"] / ".cache"
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
