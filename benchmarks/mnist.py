"""Speed and memory of the four MNIST models at batch 128, and the cost of data handling.

    python benchmarks/mnist.py [--threads 1] [--steps 3] [--batch 128] [--devices cpu cuda]

For each model and device: seconds per training step (median of --steps after one warm-up step;
forward, backward and SGD step on random images, at initialisation), images per second, forward
and backward NFE of the step, seconds per function evaluation (ODE-Net: step time / (forward +
backward NFE)), and peak memory of one step in a fresh process (CPU: the peak resident set,
VmHWM, reset through /proc/self/clear_refs before the step; CUDA: torch.cuda.max_memory_allocated).

Side by side with the authors (--reference PATH, the authors' examples/odenet_mnist.py from a
checkout of rtqichen/torchdiffeq): their ODE-Net (adjoint, dopri5, tol 1e-3) and ResNet are built
from that file's own classes, ours with the same "conv" stem; the ODE-Nets get identical weights
(so the solver takes the same steps) and the same batch, and the two are timed alternately in one
process, --rounds times each, so load on the machine hits both alike.

Data handling: one epoch's worth of batches (55,000 images; index, gather, random crop on the
device) is drawn without training and timed; its share of an epoch is that time over itself plus
the epoch's training time (steps x the measured step time of each model).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odecore.datasets import mnist as data  # noqa: E402
from odecore.experiments.mnist import measure_step_memory  # noqa: E402
from odecore.models import mnist as models  # noqa: E402



def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_steps(name: str, dev: torch.device, batch: int, steps: int, downsampling: str = "res") -> dict:
    torch.manual_seed(0)
    model = models.make(name, downsampling=downsampling).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(batch, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    ode = model.ode if isinstance(model, models.Classifier) else None
    times, fwd, bwd = [], 0, 0
    for i in range(steps + 1):
        sync(dev)
        tick = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        fwd = ode.func.nfe if ode is not None else 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync(dev)
        if i:  # the first step warms up
            times.append(time.perf_counter() - tick)
        bwd = ode.func.nfe - fwd if ode is not None else 0
    step = statistics.median(times)
    return {"step_s": step, "images_s": batch / step, "nfe_forward": fwd, "nfe_backward": bwd,
            "s_per_nfe": step / (fwd + bwd) if fwd + bwd else None}


def load_reference(path: Path):
    """The authors' example as a module: run with the adjoint at tol 1e-3; torchvision (only its data
    loaders use it, and it does not install beside this torch) is stubbed."""
    import importlib.util
    import types

    for name in ("torchvision", "torchvision.datasets", "torchvision.transforms"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torchvision"].datasets = sys.modules["torchvision.datasets"]
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    argv, sys.argv = sys.argv, [str(path), "--adjoint", "True", "--tol", "1e-3", "--downsampling-method", "conv"]
    try:
        spec = importlib.util.spec_from_file_location("reference_odenet_mnist", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module


def reference_model(ref, network: str) -> torch.nn.Module:
    """The example's network as its __main__ builds it (conv downsampling)."""
    nn = torch.nn
    stem = [nn.Conv2d(1, 64, 3, 1), ref.norm(64), nn.ReLU(inplace=True), nn.Conv2d(64, 64, 4, 2, 1), ref.norm(64),
            nn.ReLU(inplace=True), nn.Conv2d(64, 64, 4, 2, 1)]
    feature = [ref.ODEBlock(ref.ODEfunc(64))] if network == "odenet" else [ref.ResBlock(64, 64) for _ in range(6)]
    head = [ref.norm(64), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)), ref.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*stem, *feature, *head)


def copy_odenet_weights(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Give the example's ODE-Net our ODE-Net's weights: stem and head in order, the dynamics by name."""
    func = dict(ours.ode.func.func.named_parameters())
    rest = [p for n, p in ours.named_parameters() if ".func.func." not in n]
    their_func = {n.split("odefunc.")[1].replace("_layer.", ""): p for n, p in theirs.named_parameters() if "odefunc." in n}
    their_rest = [p for n, p in theirs.named_parameters() if "odefunc." not in n]
    with torch.no_grad():
        for a, b in zip(rest, their_rest, strict=True):
            b.copy_(a)
        for name, p in their_func.items():
            p.copy_(func[name])


def one_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x, y, dev: torch.device) -> float:
    sync(dev)
    tick = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sync(dev)
    return time.perf_counter() - tick


def side_by_side(ref_path: Path, dev: torch.device, batch: int, rounds: int) -> None:
    """Ours against the authors' example, ODE-Net and ResNet, alternating steps at identical settings."""
    ref = load_reference(ref_path)
    x = torch.rand(batch, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    print(f"\n== side by side with {ref_path} (alternating, {rounds} rounds after one warm-up, median)")
    print(f"{'network':<10}{'ours s/step':>12}{'theirs s/step':>14}{'theirs / ours':>14}{'NFE ours':>10}{'NFE theirs':>12}")
    for network in ("odenet", "resnet"):
        torch.manual_seed(0)
        ours = models.make(network, downsampling="conv").to(dev)
        theirs = reference_model(ref, network).to(dev)
        if network == "odenet":
            copy_odenet_weights(ours, theirs)
            with torch.no_grad():  # identical settings: the same function, so the same solver steps
                assert torch.allclose(ours(x), theirs(x), atol=1e-5), "the weight copy does not match"
        pair = {"ours": ours, "theirs": theirs}
        opts = {k: torch.optim.SGD(m.parameters(), lr=0.0, momentum=0.9) for k, m in pair.items()}  # lr 0: same weights every round
        times = {"ours": [], "theirs": []}
        nfe = {}
        for i in range(rounds + 1):
            for key in ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours"):
                took = one_step(pair[key], opts[key], x, y, dev)
                if i:
                    times[key].append(took)
        if network == "odenet":
            ours.ode.func.nfe = 0
            theirs[7].nfe = 0
            one_step(ours, opts["ours"], x, y, dev)
            one_step(theirs, opts["theirs"], x, y, dev)
            nfe = {"ours": ours.ode.func.nfe, "theirs": theirs[7].nfe}
        a, b = statistics.median(times["ours"]), statistics.median(times["theirs"])
        print(f"{network:<10}{a:>12.3f}{b:>14.3f}{b / a:>14.2f}{nfe.get('ours', '-'):>10}{nfe.get('theirs', '-'):>12}",
              flush=True)


def data_seconds(dev: torch.device, batch: int) -> float:
    """Seconds to draw one epoch of augmented batches (55k images) on `dev`, without training."""
    x = torch.rand(55_000, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (55_000,), device=dev)
    sync(dev)
    tick = time.perf_counter()
    for xb, yb in data.batches(x, y, batch, epoch=0, seed=0, augment=True):
        pass
    sync(dev)
    return time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory probes")
    parser.add_argument("--reference", type=Path, default=None,
                        help="the authors' examples/odenet_mnist.py, for the side-by-side run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the side-by-side run")
    parser.add_argument("--only-reference", action="store_true", help="run only the side-by-side comparison")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}")
    cases = [(m, "res") for m in models.MODELS] + [("odenet", "conv"), ("resnet", "conv")]
    for name in args.devices:
        if args.reference is not None:
            side_by_side(args.reference, torch.device(name), args.batch, args.rounds)
        if args.only_reference:
            continue
        dev = torch.device(name)
        print(f"\n== {name}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))
        print(f"{'model':<24}{'s/step':>8}{'img/s':>8}{'fwd NFE':>9}{'bwd NFE':>9}{'s/NFE':>8}{'peak MB':>9}")
        step_s = {}
        for model, stem in cases:
            out = time_steps(model, dev, args.batch, args.steps, stem)
            label = model + (" (example stem)" if stem == "conv" else "")
            step_s[label] = out["step_s"]
            mem = "-"
            if not args.no_memory and dev.type == "cpu" and stem == "res":
                mem = f"{measure_step_memory(model, args.batch)['peak_mb']:.0f}"
            per = f"{out['s_per_nfe']:.4f}" if out["s_per_nfe"] else "-"
            print(f"{label:<24}{out['step_s']:>8.3f}{out['images_s']:>8.0f}{out['nfe_forward']:>9}"
                  f"{out['nfe_backward']:>9}{per:>8}{mem:>9}", flush=True)
        seconds = data_seconds(dev, args.batch)
        steps = 55_000 // args.batch
        print(f"data handling: {seconds:.2f} s per epoch of 55k images ({steps} batches, random crop)")
        for label, s in step_s.items():
            share = seconds / (seconds + steps * s)
            print(f"  share of a {label} epoch: {100 * share:.2f}% (epoch about {steps * s / 60:.1f} min)")


if __name__ == "__main__":
    main()
