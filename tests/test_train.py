"""The training loop: loss goes down, interrupt-and-resume gives the same weights, NaN stops clearly."""
import pytest
import torch
from torch import nn

from odecore.train import fit, seed_everything


def make(seed: int = 0):
    seed_everything(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.2), nn.Linear(8, 1))  # dropout: RNG matters
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))  # same data whatever the seed
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def batches(epoch):
        order = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
        return [(x[i], y[i]) for i in order.split(16)]

    loss_fn = lambda b: ((model(b[0]) - b[1]) ** 2).mean()  # noqa: E731
    return model, opt, sched, loss_fn, batches


def test_loss_goes_down():
    model, opt, sched, loss_fn, batches = make()
    history = fit(model, opt, loss_fn, batches, num_epochs=6, scheduler=sched, progress=False)
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


def test_interrupt_and_resume_matches_uninterrupted(tmp_path):
    model, opt, sched, loss_fn, batches = make()
    fit(model, opt, loss_fn, batches, num_epochs=5, scheduler=sched, progress=False)
    reference = [p.detach().clone() for p in model.parameters()]

    ckpt = tmp_path / "run.pt"
    model, opt, sched, loss_fn, batches = make()

    def interrupting(epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        fit(model, opt, loss_fn, batches, num_epochs=5, scheduler=sched, checkpoint=ckpt,
            evaluate=interrupting, progress=False)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2  # epochs 1-3 saved (0-based 2)

    torch.manual_seed(1234)  # a fresh process has another RNG state; resume must restore it
    model, opt, sched, loss_fn, batches = make(seed=99)  # fresh weights, overwritten by the checkpoint
    history = fit(model, opt, loss_fn, batches, num_epochs=5, scheduler=sched, checkpoint=ckpt, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    for p, q in zip(model.parameters(), reference):
        assert torch.equal(p, q)


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    model, opt, sched, loss_fn, batches = make()
    bad = lambda b: loss_fn(b) * float("nan")  # noqa: E731
    with pytest.raises(FloatingPointError, match="loss is nan at epoch 1, step 1"):
        fit(model, opt, bad, batches, num_epochs=2, checkpoint=tmp_path / "c.pt", progress=False)


def test_extras_are_averaged():
    model, opt, sched, loss_fn, batches = make()
    history = fit(model, opt, lambda b: (loss_fn(b), {"nfe": 4.0}), batches, num_epochs=1, progress=False)
    assert history[0]["nfe"] == 4.0
