"""MNIST loader: IDX parsing, checksums, where it looks, downloads (faked), batching on tensors."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from odecore.datasets import mnist as data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (unsigned bytes) holding `array`, gzip-compressed as the originals are."""
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_files(tmp_path, monkeypatch):
    """Four small, valid IDX files; FILES and DEFAULT_DIR patched to expect exactly them."""
    rng = np.random.default_rng(0)
    contents = {
        "train-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, (20, 28, 28))),
        "train-labels-idx1-ubyte.gz": idx_bytes(np.arange(20) % 10),
        "t10k-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, (6, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(np.arange(6) % 10),
    }
    monkeypatch.setattr(data, "FILES", {n: (hashlib.sha256(b).hexdigest(), len(b)) for n, b in contents.items()})
    monkeypatch.setattr(data, "DEFAULT_DIR", tmp_path / "default")
    monkeypatch.delenv("ODECORE_MNIST_DIR", raising=False)
    return contents


def write(folder: Path, contents: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in contents.items():
        (folder / name).write_bytes(blob)
    return folder


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    (tmp_path / "x.gz").write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.gz"), array)


def test_read_idx_rejects_truncated_and_foreign(tmp_path):
    blob = gzip.decompress(idx_bytes(np.zeros((2, 3), dtype=np.uint8)))
    (tmp_path / "short.gz").write_bytes(gzip.compress(blob[:-1]))
    with pytest.raises(data.MNISTError, match="header says"):
        data.read_idx(tmp_path / "short.gz")
    (tmp_path / "float.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + b"\0" * 4))
    with pytest.raises(data.MNISTError, match="not an unsigned-byte IDX"):
        data.read_idx(tmp_path / "float.gz")


@pytest.mark.parametrize("damage,cause", [
    (lambda blob: blob[:len(blob) // 2], "EOFError"),                          # cut short
    (lambda blob: blob[:-8] + bytes([blob[-8] ^ 1]) + blob[-7:], "CRC check failed"),  # one flipped bit
    (lambda blob: b"not a gzip file", "BadGzipFile"),
], ids=["truncated", "bit-flipped", "not-gzip"])
def test_an_unreadable_gz_is_named_with_the_remedy(tmp_path, damage, cause):
    blob = idx_bytes(np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(blob))
    with pytest.raises(data.MNISTError, match=f"{path} cannot be decompressed .*{cause}.*truncated or corrupt. "
                                              "Delete it .* or replace it with the original file"):
        data.read_idx(path)


def test_env_dir_comes_first_then_default(fake_files, tmp_path, monkeypatch):
    write(data.DEFAULT_DIR, fake_files)
    assert data.locate(allow_download=False) == data.DEFAULT_DIR
    env = write(tmp_path / "env", fake_files)
    monkeypatch.setenv("ODECORE_MNIST_DIR", str(env))
    assert data.search_dirs() == [env, data.DEFAULT_DIR]
    assert data.locate(allow_download=False) == env


def test_corrupt_file_is_an_error_that_says_what_and_how(fake_files, tmp_path, monkeypatch):
    env = write(tmp_path / "env", fake_files)
    (env / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    monkeypatch.setenv("ODECORE_MNIST_DIR", str(env))
    with pytest.raises(data.MNISTError) as err:
        data.locate()
    text = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz is corrupt" in text and str(env) in text
    assert data.FILES["t10k-labels-idx1-ubyte.gz"][0] in text and "To fix" in text
    assert (env / "t10k-labels-idx1-ubyte.gz").read_bytes() == b"not mnist"  # never replaced silently


def test_missing_files_say_where_we_looked(fake_files, tmp_path, monkeypatch):
    (tmp_path / "nowhere").mkdir()                    # a folder, but without the files
    monkeypatch.setenv("ODECORE_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(data.MNISTError) as err:
        data.locate(allow_download=False)
    text = str(err.value)
    assert str(tmp_path / "nowhere") in text and str(data.DEFAULT_DIR) in text
    assert "ODECORE_MNIST_DIR" in text and "train-images-idx3-ubyte.gz" in text


def test_download_skips_a_corrupt_mirror_and_keeps_nothing_bad(fake_files):
    calls = []

    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        dest.write_bytes(b"garbage" if url.startswith("http://bad/") else fake_files[name])

    folder = data.locate(fetch=fetch, mirrors=("http://bad/", "http://good/"))
    assert folder == data.DEFAULT_DIR
    assert sorted(p.name for p in folder.iterdir()) == sorted(fake_files)  # no .part left behind
    assert len(calls) == 8 and calls[0].startswith("http://bad/")
    x, y = data.load("train", folder)
    assert x.shape == (20, 28, 28) and x.dtype == torch.uint8 and y.tolist() == list(range(10)) * 2


def test_failed_download_names_every_mirror_and_keeps_nothing(fake_files):
    def fetch(url: str, dest: Path) -> None:
        if "offline" in url:
            raise OSError("network unreachable")
        dest.write_bytes(b"truncated")

    with pytest.raises(data.MNISTError) as err:
        data.locate(fetch=fetch, mirrors=("http://offline/", "http://corrupt/"))
    text = str(err.value)
    assert "http://offline/train-images-idx3-ubyte.gz: OSError: network unreachable" in text
    assert "http://corrupt/train-images-idx3-ubyte.gz: sha256" in text and "To fix" in text
    assert not data.DEFAULT_DIR.exists() or not any(data.DEFAULT_DIR.iterdir())


def test_download_from_a_local_http_server(fake_files, tmp_path):
    """The real fetch (urllib) against a server on localhost: the code path used with the mirrors."""
    served = write(tmp_path / "served", fake_files)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        mirror = f"http://127.0.0.1:{server.server_address[1]}/"
        assert data.locate(mirrors=("http://127.0.0.1:1/", mirror)) == data.DEFAULT_DIR
    finally:
        server.shutdown()
    for name, blob in fake_files.items():
        assert (data.DEFAULT_DIR / name).read_bytes() == blob


@pytest.mark.skipif(not (SHARED / "train-labels-idx1-ubyte.gz").exists(), reason="no shared MNIST copy")
def test_real_files(monkeypatch):
    monkeypatch.setenv("ODECORE_MNIST_DIR", str(SHARED))
    x, y = data.load("train")
    assert x.shape == (60000, 28, 28) and y[0] == 5
    counts = torch.bincount(y)
    assert counts[1] == 6742 and counts[5] == 5421
    tx, ty = data.load("test")
    assert tx.shape == (10000, 28, 28) and len(ty) == 10000


@pytest.mark.skipif(not (SHARED / "train-labels-idx1-ubyte.gz").exists(), reason="no shared MNIST copy")
def test_splits_hold_out_validation(monkeypatch):
    monkeypatch.setenv("ODECORE_MNIST_DIR", str(SHARED))
    d = data.splits(5000)
    assert d.train_x.shape == (55000, 1, 28, 28) and d.val_x.shape == (5000, 1, 28, 28)
    assert d.test_x.shape == (10000, 1, 28, 28) and 0 <= d.train_x.min() and d.train_x.max() <= 1
    # no image index is in both: the validation pixels never appear among the training ones
    train_keys = {hash(r.numpy().tobytes()) for r in d.train_x[:2000]}
    assert not train_keys & {hash(r.numpy().tobytes()) for r in d.val_x[:2000]} - {hash(torch.zeros(1, 28, 28).numpy().tobytes())}


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.rand(16, 2, 28, 28)
    out = data.random_crop(x, 4, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4,) * 4)
    for b in range(16):
        hits = [(i, j) for i in range(9) for j in range(9) if torch.equal(padded[b, :, i:i + 28, j:j + 28], out[b])]
        assert hits, f"crop {b} is not a window of its padded image"
    assert torch.equal(data.random_crop(x, 0), x)


def test_batches_are_reproducible_and_cover_the_split():
    x = torch.arange(100.0).reshape(100, 1, 1, 1).expand(100, 1, 28, 28).contiguous()
    y = torch.arange(100)
    first = [b[1] for b in data.batches(x, y, 10, epoch=0, seed=3, images_per_epoch=40, augment=False)]
    again = [b[1] for b in data.batches(x, y, 10, epoch=0, seed=3, images_per_epoch=40, augment=False)]
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and len(first) == 4
    seen = torch.cat([b[1] for e in range(2) for b in data.batches(x, y, 10, epoch=e, seed=3, images_per_epoch=40,
                                                                   augment=False)])
    assert len(set(seen.tolist())) == 80  # consecutive epochs take new images until a pass is used up
    wrap = torch.cat([b[1] for b in data.batches(x, y, 10, epoch=2, seed=3, images_per_epoch=40, augment=False)])
    assert len(wrap) == 40 and set(seen.tolist()) | set(wrap[:20].tolist()) == set(range(100))  # pass 1 ends
    assert len(data.Batches(x, y, 10, epoch=0, seed=3, images_per_epoch=45)) == 4
    xb, yb = next(iter(data.batches(x, y, 10, epoch=0, seed=3)))
    assert torch.equal(xb[:, 0, 14, 14], yb.float())  # labels stay with their images (crop keeps the centre region)


def test_load_from_a_folder_checks_the_shapes(fake_files, tmp_path):
    """load(split, folder) skips locate's checksums; a labels file in place of the images is still an error."""
    folder = write(tmp_path / "given", fake_files)
    images, labels = data.load("test", folder)
    assert images.shape == (6, 28, 28) and labels.shape == (6,)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(fake_files["t10k-labels-idx1-ubyte.gz"])
    with pytest.raises(data.MNISTError, match=r"t10k-images-idx3-ubyte.gz: expected images of shape \(N, 28, 28\), "
                                              r"found \(6,\)"):
        data.load("test", folder)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(fake_files["t10k-images-idx3-ubyte.gz"])
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(fake_files["train-labels-idx1-ubyte.gz"])   # 20 labels for 6
    with pytest.raises(data.MNISTError, match=r"expected 6 labels of shape \(6,\), found \(20,\)"):
        data.load("test", folder)


def test_a_misspelt_folder_is_an_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ODECORE_MNIST_DIR", str(tmp_path / "typo"))
    fetched = []
    with pytest.raises(data.MNISTError, match=r"ODECORE_MNIST_DIR=.*typo is not a folder"):
        data.locate(fetch=lambda url, dest: fetched.append(url))
    assert fetched == []


@pytest.mark.parametrize("kwargs,message", [({"n_val": -1}, "n_val must be an int from 1 to 59999"),
                                            ({"n_val": 70_000}, "n_val must be"),
                                            ({"n_val": 5000, "n_train": -5}, "n_train must be an int from 1 to 55000"),
                                            ({"n_test": 0}, "n_test must be")])
def test_split_sizes_that_empty_or_cut_a_split_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.splits(**kwargs)


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        next(data.batches(torch.zeros(4, 1, 28, 28), torch.zeros(4), 0, epoch=0, seed=0))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):   # before len() divides by it
        data.Batches(torch.zeros(4, 1, 28, 28), torch.zeros(4), 0, epoch=0, seed=0)
