"""The committed `cpu` weights give exactly the test errors Table 1 shows.

Table 1's `cpu` row is the book's headline; this test re-derives it from the committed selected
weights and the original test files, read by a 10-line IDX reader written here rather than
odecore's, so a bug in the loader or in the recording cannot hide in both.
"""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from odecore.datasets import mnist as data
from odecore.experiments import mnist as experiment
from odecore.models import mnist as models

REPO = Path(__file__).resolve().parent.parent

PROFILE = "cpu"
RECORD = REPO / "data" / "results" / f"mnist-{PROFILE}.json"


def read_idx(path) -> np.ndarray:
    """An IDX file: magic (two zero bytes, dtype code 0x08 = uint8, number of dimensions), the
    dimensions as big-endian int32, then the bytes."""
    raw = gzip.open(path).read()
    assert raw[:3] == b"\x00\x00\x08", f"{path}: not a uint8 IDX file"
    dims = np.frombuffer(raw, ">i4", count=raw[3], offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


@pytest.fixture(scope="module")
def test_set():
    try:
        folder = data.locate(allow_download=False)  # where the files are; reading them is done here
    except data.MNISTError:
        pytest.skip("the MNIST files are not on this machine (ODECORE_MNIST_DIR)")
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    return torch.from_numpy(images.copy()).unsqueeze(1).float() / 255, torch.from_numpy(labels.astype(np.int64))


def weights(name: str, seed: int):
    folder = REPO / ("data/checkpoints" if name == "odenet" else f"data/scratch/mnist-{PROFILE}")
    path = folder / experiment.weights_path(PROFILE, name, seed).name
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


# Every model's first seed in every run; the other seeds (the same code path on other files, about two
# minutes of CI's ten for the package) with --runslow.
CASES = [pytest.param(name, i, marks=[pytest.mark.slow] if i else [])
         for name, row in json.loads(RECORD.read_text())["metrics"]["table1"].items()
         for i in range(len(row["seeds"]))] if RECORD.exists() else []


@pytest.mark.parametrize("name,index", CASES)
def test_committed_weights_give_the_recorded_test_error(name, index, test_set):
    record = json.loads(RECORD.read_text())
    cfg, row = record["config"], record["metrics"]["table1"][name]
    model = models.make(name, downsampling=cfg["downsampling"], tol=cfg["tol"], rk_method=cfg["rk_method"],
                        rk_step=cfg["rk_step"])
    model.load_state_dict(weights(name, row["seeds"][index]))
    model.eval()
    x, y = test_set
    with torch.no_grad():
        wrong = sum(int((model(x[i:i + 500]).argmax(1) != y[i:i + 500]).sum()) for i in range(0, len(x), 500))
    assert len(x) == 10_000
    assert 100.0 * wrong / len(x) == pytest.approx(row["test_error"][index], abs=1e-9)
