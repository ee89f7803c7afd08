"""MNIST from the four original IDX files: find, verify, download, parse, and batch on the device.

No torchvision: the IDX format is a big-endian header and raw bytes, read here in a few lines.
Where the files are looked for, in order: `$ODECORE_MNIST_DIR`, then `data/mnist/` in the
repository; if neither holds them, they are downloaded into `data/mnist/` from the usual mirrors.
Every file's sha256 is checked wherever it came from. A file that is present but wrong is an error
(never silently replaced), and a download that does not match is deleted before the next mirror
is tried, so a corrupt copy is never kept.

The whole set lives in memory as tensors on the training device (60k x 28 x 28 floats is 188 MB);
augmentation (random crop of the zero-padded image, 4 pixels by default) runs on 64 batches at a time on that
device, so a training step never waits on a data loader (benchmarks/mnist.py measures the share).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from odecore import settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "data" / "mnist"

# name -> (sha256, bytes); from ../shared/data/mnist/README.md (the original distribution).
FILES: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
# The mirrors torchvision uses, in its order; the original site now often refuses plain downloads.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FIX = ("To fix: set ODECORE_MNIST_DIR to a folder holding the four original files "
       f"({', '.join(FILES)}), or copy them into {DEFAULT_DIR}, or allow a download from "
       f"{' or '.join(MIRRORS)}. Check a copy with `sha256sum -c` against the sums above.")


class MNISTError(RuntimeError):
    """The MNIST files are missing or corrupt; the message says where we looked and how to fix it."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def search_dirs() -> list[Path]:
    """Where the files are looked for, in order: $ODECORE_MNIST_DIR (if set; `locate` refuses one that is not a
    folder), then data/mnist/."""
    chosen = settings.current().mnist_dir
    return ([chosen] if chosen else []) + [DEFAULT_DIR]


def _fetch(url: str, dest: Path) -> None:
    """Download `url` to `dest` (replaced in tests by a monkeypatch or a local server URL)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        while block := response.read(1 << 20):
            out.write(block)


def download(name: str, folder: Path, mirrors: tuple[str, ...] = MIRRORS,
             fetch: Callable[[str, Path], None] | None = None) -> Path:
    """Fetch one file into `folder` from the first mirror whose copy has the right sha256.

    The download goes to a temp file that is renamed only after its checksum matches; a wrong or
    partial download is deleted. Raises MNISTError naming every mirror and what it gave.
    """
    fetch = fetch or _fetch
    expected, size = FILES[name]
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for mirror in mirrors:
        url = mirror + name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp)
        try:
            fetch(url, tmp)
            got = sha256(tmp)
            if got == expected:
                os.replace(tmp, folder / name)
                return folder / name
            problems.append(f"{url}: sha256 {got} ({tmp.stat().st_size} bytes), expected {expected} ({size} bytes)")
        except Exception as err:  # network errors of every kind: try the next mirror
            problems.append(f"{url}: {type(err).__name__}: {err}")
        finally:
            tmp.unlink(missing_ok=True)
    raise MNISTError(f"could not download {name}:\n  " + "\n  ".join(problems) + f"\n{FIX}")


def locate(*, allow_download: bool = True, fetch: Callable[[str, Path], None] | None = None,
           mirrors: tuple[str, ...] = MIRRORS) -> Path:
    """The folder holding all four verified files, downloading into data/mnist/ if none has them.

    Raises:
        MNISTError: $ODECORE_MNIST_DIR is set but is not a folder (a typo: nothing is looked up or
            downloaded elsewhere), a file is present but its checksum is wrong (it is not replaced), or
            the files are nowhere and the download failed or was not allowed.
    """
    chosen = settings.current().mnist_dir
    if chosen is not None and not chosen.is_dir():   # a typo would otherwise fall back to data/mnist/ and a download
        raise MNISTError(f"ODECORE_MNIST_DIR={chosen} is not a folder: set it to the folder that holds the four files, "
                         f"or unset it to use {DEFAULT_DIR}.\n{FIX}")
    looked = []
    for folder in search_dirs():
        present = [n for n in FILES if (folder / n).is_file()]
        looked.append(f"{folder} ({len(present)} of 4 files)")
        for name in present:
            got, (expected, size) = sha256(folder / name), FILES[name]
            if got != expected:
                raise MNISTError(
                    f"{folder / name} is corrupt: sha256 {got} ({(folder / name).stat().st_size} bytes), "
                    f"expected {expected} ({size} bytes). Delete it (it is re-downloaded) or replace it "
                    f"with the original file.\n{FIX}")
        if len(present) == len(FILES):
            return folder
    if not allow_download:
        raise MNISTError("MNIST files not found; looked in " + ", ".join(looked) + f".\n{FIX}")
    target = DEFAULT_DIR
    for name in FILES:
        if not (target / name).is_file():
            try:
                download(name, target, mirrors=mirrors, fetch=fetch)
            except MNISTError as err:
                raise MNISTError(f"MNIST files not found; looked in {', '.join(looked)}; then {err}") from None
    return target


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzip-compressed IDX file (unsigned bytes) into an array of its stated shape.

    Raises MNISTError naming the file when it is no gzip stream, is cut short, or fails gzip's CRC
    (a flipped bit), instead of gzip's bare EOFError or BadGzipFile.
    """
    try:
        data = gzip.decompress(Path(path).read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        kind = "zlib.error" if isinstance(err, zlib.error) else type(err).__name__
        raise MNISTError(f"{path} cannot be decompressed ({kind}: {err}): it is truncated or corrupt. "
                         f"Delete it (it is downloaded again) or replace it with the original file.\n{FIX}") from err
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08 or not 1 <= magic & 0xFF <= 3:  # 0x08: unsigned byte; then the number of dims
        raise MNISTError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise MNISTError(f"{path}: header says {shape} but holds {body.size} bytes")
    return body.reshape(shape)


def load(split: str, folder: Path | None = None) -> tuple[Tensor, Tensor]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) of 'train' (60k) or 'test' (10k).

    A `folder` given here skips `locate`'s checksums, so the shapes are checked instead: a labels
    file in place of an images file (or the splits mixed up) is an error, not images of shape (N,).
    """
    folder = folder or locate()
    image_file, label_file = (folder / n for n in SPLITS[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise MNISTError(f"{image_file}: expected images of shape (N, 28, 28), found {images.shape}.\n{FIX}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise MNISTError(f"{label_file}: expected {len(images)} labels of shape ({len(images)},), "
                         f"found {labels.shape}.\n{FIX}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


@dataclass
class MNIST:
    """The three splits as float tensors in [0, 1] on one device; x: (N, 1, 28, 28), y: (N,)."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor


def splits(n_val: int = 5000, *, n_train: int | None = None, n_test: int | None = None,
           device: torch.device | str = "cpu", seed: int = 0) -> MNIST:
    """Hold `n_val` of the 60k training images out for validation (a fixed random choice).

    n_train / n_test cut the training split / test set to their first images (smoke profiles).
    Raises ValueError for sizes that would leave a split empty or cut it by a negative count.
    """
    for name, n, most, optional in (("n_val", n_val, 59_999, False), ("n_train", n_train, None, True),
                                    ("n_test", n_test, 10_000, True)):
        most = 60_000 - n_val if most is None else most      # n_val is checked first
        if not (optional and n is None) and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= most):
            raise ValueError(f"{name} must be an int from 1 to {most}, got {n!r}")
    folder = locate()
    x, y = load("train", folder)
    tx, ty = load("test", folder)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val], perm[n_val:]
    if n_train is not None:
        train = train[:n_train]
    if n_test is not None:
        tx, ty = tx[:n_test], ty[:n_test]

    def put(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        return (images.to(device).unsqueeze(1).float().div_(255), labels.to(device))

    return MNIST(*put(x[train], y[train]), *put(x[val], y[val]), *put(tx, ty))


def random_crop(x: Tensor, padding: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Random crop of a zero-padded batch, one offset per image, in one gather on x's device.

    x: (B, C, H, W) -> (B, C, H, W); the same as torchvision's RandomCrop(H, padding) per image.
    The padded batch is viewed as all its (2p+1)^2 windows (unfold makes no copy) and each image
    picks its own.
    """
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 2p+1, 2p+1, H, W)
    return windows[torch.arange(b, device=x.device), :, offsets[0], offsets[1]]


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def batches(x: Tensor, y: Tensor, batch_size: int, *, epoch: int, seed: int, images_per_epoch: int | None = None,
            augment: bool = True, padding: int = 4) -> Iterator[tuple[Tensor, Tensor]]:
    """Training batches of epoch `epoch`, reproducible from (seed, epoch) alone, so a resumed run
    sees the same batches.

    The split is shuffled once per pass; with `images_per_epoch` < N an "epoch" is the next
    `images_per_epoch` images of that stream (consecutive epochs cover the split before any image
    repeats). The last incomplete batch is dropped.
    """
    check_batch_size(batch_size)
    n = len(x)
    per_epoch = min(images_per_epoch or n, n)
    start = epoch * per_epoch
    order = []
    while sum(len(o) for o in order) < per_epoch:
        pass_, offset = divmod(start, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + pass_))
        take = perm[offset:offset + per_epoch - sum(len(o) for o in order)]
        order.append(take)
        start += len(take)
    order = torch.cat(order).to(x.device)
    gen = torch.Generator().manual_seed(seed * 100_003 + 7_919 * (epoch + 1))
    chunk = batch_size * 64  # gather and crop 64 batches at once: the per-call cost is paid once
    for start in range(0, per_epoch - batch_size + 1, chunk):
        idx = order[start:min(start + chunk, per_epoch)]
        xs, ys = x[idx], y[idx]
        if augment:
            xs = random_crop(xs, padding, gen)
        for i in range(0, len(idx) - batch_size + 1, batch_size):
            yield xs[i:i + batch_size], ys[i:i + batch_size]


class Batches:
    """`batches(...)` with a length, so the training loop's progress bar knows its total."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, **kw):
        check_batch_size(batch_size)      # here too: len() divides by it before any batch is drawn
        self.x, self.y, self.batch_size, self.kw = x, y, batch_size, kw

    def __len__(self) -> int:
        return min(self.kw.get("images_per_epoch") or len(self.x), len(self.x)) // self.batch_size

    def __iter__(self):
        return batches(self.x, self.y, self.batch_size, **self.kw)
