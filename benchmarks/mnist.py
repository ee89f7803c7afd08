"""Speed and memory of the four MNIST models at batch 128, and the cost of data handling.

    python benchmarks/mnist.py [--threads 1] [--steps 3] [--batch 128] [--devices cpu cuda]

For each model and device: seconds per training step (median of --steps after one warm-up step;
forward, backward and SGD step on random images, at initialisation), images per second, forward
and backward NFE of the step, seconds per function evaluation (ODE-Net: step time / (forward +
backward NFE)), and peak memory of one step in a fresh process (CPU: the peak resident set,
VmHWM, reset through /proc/self/clear_refs before the step; CUDA: torch.cuda.max_memory_allocated).

"odenet (example stem)" is the ODE-Net with the authors' public example's downsampling (conv 3x3,
then two 4x4 stride-2 convs), i.e. the example's architecture, so its time per evaluation is at
identical settings to the reference: the example takes about 0.87 s per adjoint step at batch 128
with about 20 forward and 26 backward evaluations on an untrained net on 2 threads (0.019 s per
evaluation), and its ResNet about 0.17 s per step. Run with --threads 2 to compare like with like.

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

REFERENCE = {"odenet_step_s": 0.87, "odenet_nfe": (20, 26), "resnet_step_s": 0.17, "threads": 2}


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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}")
    cases = [(m, "res") for m in models.MODELS] + [("odenet", "conv"), ("resnet", "conv")]
    for name in args.devices:
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
        ref = REFERENCE
        ref_per = ref["odenet_step_s"] / sum(ref["odenet_nfe"])
        print(f"reference (authors' example, {ref['threads']} threads): ODE-Net {ref['odenet_step_s']} s/step, "
              f"{ref_per:.4f} s/NFE; ResNet {ref['resnet_step_s']} s/step")
        seconds = data_seconds(dev, args.batch)
        steps = 55_000 // args.batch
        print(f"data handling: {seconds:.2f} s per epoch of 55k images ({steps} batches, random crop)")
        for label, s in step_s.items():
            share = seconds / (seconds + steps * s)
            print(f"  share of a {label} epoch: {100 * share:.2f}% (epoch about {steps * s / 60:.1f} min)")


if __name__ == "__main__":
    main()
