"""The committed `cpu` weights give exactly the test errors Table 1 shows (on all 10,000 test images with --runslow).

Table 1's `cpu` row is the book's headline; these tests re-derive it from the committed selected
weights and the original test files, read by a 10-line IDX reader written here rather than
odecore's, so a bug in the loader or in the recording cannot hide in both.

The record keeps which test images each model gets wrong. Every run checks that they count to the
test error, and re-derives them image by image on the first SUBSET images (whole batches of the size
the experiment evaluated in, so an adaptive solver takes the same steps) for each model's first seed;
--runslow re-derives every seed's test error on all 10,000 (an ODE-Net alone takes a minute of one core).
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


SUBSET = 2_000


RECORDED = json.loads(RECORD.read_text()) if RECORD.exists() else None   # read once: every test reads it


def rows() -> dict:
    return RECORDED["metrics"]["table1"] if RECORDED else {}


def eval_batch() -> int:
    """The batch the experiment evaluated the test set in."""
    return RECORDED["config"]["eval_batch"]


def make_model(name: str, index: int):
    """A model of the record's config with the committed weights of its `index`-th seed, in eval mode."""
    cfg, row = RECORDED["config"], rows()[name]
    model = models.make(name, downsampling=cfg["downsampling"], tol=cfg["tol"], rk_method=cfg["rk_method"],
                        rk_step=cfg["rk_step"])
    model.load_state_dict(weights(name, row["seeds"][index]))
    return model.eval()


def wrong_in(model, x, y, batch: int) -> list[int]:
    with torch.no_grad():
        hits = torch.cat([model(x[i:i + batch]).argmax(1) != y[i:i + batch] for i in range(0, len(x), batch)])
    return hits.nonzero().flatten().tolist()


SEEDS = [(name, i) for name, row in rows().items() for i in range(len(row["seeds"]))]


@pytest.mark.parametrize("name,index", SEEDS)
def test_the_recorded_misclassified_images_count_to_the_test_error(name, index):
    row, n_test = rows()[name], RECORDED["metrics"]["split"]["test"]
    wrong = row["misclassified"][index]
    assert n_test == 10_000 and wrong == sorted(set(wrong)) and all(0 <= i < n_test for i in wrong)
    assert 100.0 * len(wrong) / n_test == pytest.approx(row["test_error"][index], abs=1e-9)


@pytest.mark.parametrize("name", list(rows()))
def test_committed_weights_misclassify_the_recorded_images(name, test_set):
    batch = eval_batch()
    assert SUBSET % batch == 0
    x, y = test_set
    recorded = [i for i in rows()[name]["misclassified"][0] if i < SUBSET]
    assert wrong_in(make_model(name, 0), x[:SUBSET], y[:SUBSET], batch) == recorded


@pytest.mark.slow
@pytest.mark.parametrize("name,index", SEEDS)
def test_committed_weights_give_the_recorded_test_error(name, index, test_set):
    x, y = test_set
    assert len(x) == 10_000
    wrong = wrong_in(make_model(name, index), x, y, eval_batch())
    assert 100.0 * len(wrong) / len(x) == pytest.approx(rows()[name]["test_error"][index], abs=1e-9)
