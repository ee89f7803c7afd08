"""The training loop: loss goes down, interrupt-and-resume gives the same weights, NaN stops clearly."""
import pytest
import torch
from torch import nn

from odecore.train import fit, run_progress, seed_everything


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


def test_resume_inside_an_epoch_matches_uninterrupted(tmp_path):
    """A run cut off mid-epoch (per-step one-cycle lr, checkpoints every 2 steps) resumes at the step it reached."""
    def setup(seed=0):
        model, opt, _, loss_fn, batches = make(seed)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=3, steps_per_epoch=4)
        return model, opt, sched, loss_fn, batches

    model, opt, sched, loss_fn, batches = setup()
    ref_hist = fit(model, opt, lambda b: (loss_fn(b), {"k": 1.0}), batches, num_epochs=3, scheduler=sched,
                   scheduler_interval="step", keep_steps=("k",), progress=False)
    reference = [p.detach().clone() for p in model.parameters()]

    ckpt = tmp_path / "run.pt"
    model, opt, sched, loss_fn, batches = setup()
    calls = [0]

    def cut(b):
        calls[0] += 1
        if calls[0] == 7:  # epoch 2, step 3: the checkpoint holds epoch 2, step 2
            raise KeyboardInterrupt
        return loss_fn(b), {"k": 1.0}

    with pytest.raises(KeyboardInterrupt):
        fit(model, opt, cut, batches, num_epochs=3, scheduler=sched, scheduler_interval="step", checkpoint=ckpt,
            checkpoint_every=2, keep_steps=("k",), progress=False)
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 0 and state["partial"]["steps"] == 2

    torch.manual_seed(1234)
    model, opt, sched, loss_fn, batches = setup(seed=99)
    history = fit(model, opt, lambda b: (loss_fn(b), {"k": 1.0}), batches, num_epochs=3, scheduler=sched,
                  scheduler_interval="step", checkpoint=ckpt, checkpoint_every=2, keep_steps=("k",), progress=False)
    for p, q in zip(model.parameters(), reference):
        assert torch.equal(p, q)
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in ref_hist])
    assert [len(h["k_steps"]) for h in history] == [4, 4, 4]


def test_non_finite_weights_stop_and_keep_the_last_good_checkpoint(tmp_path):
    """A finite loss whose step makes the weights inf: nothing non-finite is saved."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    loss_fn = lambda b: ((model(b[0]) - b[1]) ** 2).mean()  # noqa: E731
    ckpt = tmp_path / "c.pt"
    fit(model, opt, loss_fn, lambda e: [(x, y)], num_epochs=1, checkpoint=ckpt, progress=False)
    opt.param_groups[0]["lr"] = 3e38
    x = x * 1e4  # a large gradient: the step overflows the weights; the loss before it is finite
    torch.save({**torch.load(ckpt, weights_only=False), "optimizer": opt.state_dict()}, ckpt)
    with pytest.raises(FloatingPointError, match=f"not finite.*last good state is {ckpt}"):
        fit(model, opt, loss_fn, lambda e: [(x, y)], num_epochs=3, checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_first_epoch_failure_names_no_missing_file(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=3e38)
    x, y = 1e4 * torch.randn(16, 4), torch.randn(16, 1)  # the first step overflows the weights
    with pytest.raises(FloatingPointError, match="no checkpoint was written"):
        fit(model, opt, lambda b: ((model(b[0]) - b[1]) ** 2).mean(), lambda e: [(x, y)], num_epochs=2,
            checkpoint=tmp_path / "c.pt", progress=False)
    assert not (tmp_path / "c.pt").exists()


def test_nan_only_in_the_adjoint_backward_is_named():
    """Dynamics that are finite forward but NaN in their vector-Jacobian product: a named SolverError, not
    torchdiffeq's bare 'underflow in dt' assertion."""
    from odecore.solve import SolverError, odesolve

    class Func(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(-1.0))

        def forward(self, t, z):
            return self.a * z + 0 * torch.sqrt(0 * z)  # sqrt's gradient at 0 is inf: 0 * inf = NaN backward only

    func = Func()
    opt = torch.optim.SGD(func.parameters(), lr=0.1)
    z0, t = torch.ones(4, 2), torch.tensor([0.0, 1.0])
    loss_fn = lambda b: odesolve(func, z0, t, adjoint=True)[-1].sum()  # noqa: E731
    with pytest.raises(SolverError, match="(?s)backward pass failed at epoch 1, step 1.*NaN or inf"):
        fit(func, opt, loss_fn, lambda e: [None], num_epochs=1, progress=False)


def test_run_progress_reads_the_resume_state_then_the_finished_summary(tmp_path):
    stem = tmp_path / "run"
    assert run_progress(stem) == (None, None)                          # not started
    model, opt, sched, loss_fn, batches = make()
    fit(model, opt, loss_fn, batches, num_epochs=2, scheduler=sched, progress=False,
        checkpoint=stem.with_suffix(".pt"))
    summary, history = run_progress(stem)
    assert summary is None and [h["epoch"] for h in history] == [1, 2]
    stem.with_suffix(".json").write_text('{"history": [], "final": true}')
    assert run_progress(stem) == ({"history": [], "final": True}, None)  # the summary wins once finished


def test_an_epoch_split_across_thread_counts_says_where_each_part_trained(tmp_path):
    """Cut off mid-epoch on one thread and resumed on two: that epoch's segments name both, the others one device,
    and compute counts the CPU core-hours at the threads each part used."""
    from odecore import compute

    threads = torch.get_num_threads()
    ckpt, calls = tmp_path / "run.pt", [0]
    model, opt, sched, loss_fn, batches = make()

    def cut(b):
        calls[0] += 1
        if calls[0] == 7:  # epoch 2, step 3: the checkpoint holds epoch 2, step 2
            raise KeyboardInterrupt
        return loss_fn(b)

    try:
        torch.set_num_threads(1)
        with pytest.raises(KeyboardInterrupt):
            fit(model, opt, cut, batches, num_epochs=3, checkpoint=ckpt, checkpoint_every=2, progress=False)
        torch.set_num_threads(2)
        model, opt, sched, loss_fn, batches = make()
        history = fit(model, opt, loss_fn, batches, num_epochs=3, checkpoint=ckpt, checkpoint_every=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert history[0]["device_name"] == "cpu (1 threads)" and history[2]["device_name"] == "cpu (2 threads)"
    split = history[1]
    assert "device_name" not in split and [d for _, d in split["segments"]] == ["cpu (1 threads)", "cpu (2 threads)"]
    assert sum(s for s, _ in split["segments"]) == pytest.approx(split["time_s"])
    record = {"device_name": "cpu (8 threads)", "metrics": {"history": history}}
    parts, source = compute.pieces(record)
    assert source == "3 epochs" and len(parts) == 4 and {d for _, d in parts} == {"cpu (1 threads)", "cpu (2 threads)"}
    seconds = {d: sum(s for s, dd in parts if dd == d) for d in ("cpu (1 threads)", "cpu (2 threads)")}
    assert compute.of(record).cpu_core_hours == pytest.approx((seconds["cpu (1 threads)"] + 2 * seconds["cpu (2 threads)"]) / 3600)
    # an epoch from before devices were recorded counts at the record's device
    old = {"device_name": "cpu (8 threads)", "metrics": {"history": [{"epoch": 1, "time_s": 3600.0}]}}
    assert compute.of(old).cpu_core_hours == pytest.approx(8.0)
