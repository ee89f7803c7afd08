"""Irregularly sampled two-dimensional spirals (Section 5 of the paper).

The paper gives the outline (1000 spirals, half clockwise and half counter-clockwise, each from a
different start, 100 equally spaced times, Gaussian noise, n in {30, 50, 100} observation times
drawn without replacement) and leaves the rest open. The choices made here, each with its reason
(the latent ODE chapter repeats them):

- Formula: an Archimedean spiral r = b * theta, theta(t) = theta0 + t (one radian per time unit),
  x(t) = r(t) * (cos(s * theta(t)), sin(s * theta(t))) with s = +1 (counter-clockwise) or -1
  (clockwise). Both directions share the radius law and the centre, so the direction can only be
  inferred from how the points move, not from where they are; b = 0.3 as in the authors' example.
- Start: a test spiral starts at theta0 ~ U[pi, 3 pi], so no two spirals start at the same point
  and every spiral is at least half a turn away from the ill-defined centre (radius >= 0.94).
  A training spiral starts at theta0 ~ U[pi, 3 pi + H + margin], H the extrapolation span: a
  latent ODE extrapolates the dynamics it was trained on, so every angle a test extrapolation
  reaches must lie inside the angles the training observations cover (`coverage` measures it).
  With one range for both (the first design here), no training window went past 3 pi + 4, and
  test spirals starting beyond 3 pi + 4 - H were asked about radii no training spiral reached.
- Times: the observation window is t in [0, 4] at 100 equally spaced times (0.64 of a turn); the
  same spacing continues beyond it for the extrapolation window (100 more times over (4, 8.04] in
  the chapter, the paper's "100 time points extending beyond"), where the noise-free spiral is kept
  for evaluation only.
- Noise: i.i.d. Gaussian, std 0.1 per coordinate (the default of the authors' example), small
  against the radius (0.94 to 5.2) but large enough that reconstruction has to denoise.
- Observations: for each n, each spiral gets its own n of the 100 window times, drawn without
  replacement with a seeded generator; n = 100 observes every window time.
- Split: 800 training and 200 test spirals, each half clockwise, fixed by the seed.

Shapes follow the package convention: (batch, time, dim).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class SpiralData:
    """One data set of spirals.

    Attributes:
        t: (n_times + n_extrap,) the grid: the observation window t[:n_times], then the extrapolation window.
        truth: (n_spirals, n_times + n_extrap, 2) noise-free positions on the grid.
        noisy: (n_spirals, n_times, 2) noisy positions at the window times (what can be observed).
        direction: (n_spirals,) +1 counter-clockwise, -1 clockwise.
        theta0: (n_spirals,) start angle.
        train: (n_train,) indices of training spirals; test: (n_test,) of test spirals.
        noise_std: the noise level used.
    """

    t: Tensor
    truth: Tensor
    noisy: Tensor
    direction: Tensor
    theta0: Tensor
    train: Tensor
    test: Tensor
    noise_std: float

    @property
    def n_times(self) -> int:
        return self.noisy.shape[1]

    @property
    def t_window(self) -> Tensor:
        return self.t[: self.n_times]


def spiral(theta0: np.ndarray, direction: np.ndarray, t: np.ndarray, b: float = 0.3) -> np.ndarray:
    """Noise-free positions (n, len(t), 2) of Archimedean spirals r = b * theta, theta = theta0 + t."""
    theta = theta0[:, None] + t[None, :]
    r = b * theta
    angle = direction[:, None] * theta
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=-1)


def make_spirals(n_spirals: int = 1000, n_times: int = 100, *, n_extrap: int = 50, t_max: float = 4.0,
                 noise_std: float = 0.1, b: float = 0.3, theta0_range: tuple[float, float] = (math.pi, 3 * math.pi),
                 train_theta0_range: tuple[float, float] | None = None, n_test: int = 200,
                 seed: int = 0) -> SpiralData:
    """Generate the spirals data set; equal seeds give identical data.

    Test spirals start at theta0 ~ U(theta0_range); training spirals at U(train_theta0_range), or the
    same range when it is None (one distribution). The random draws do not depend on the ranges, so
    two designs with one seed share directions, noise, split and each spiral's quantile of its range.

    Raises:
        ValueError: an odd number of spirals (half must turn each way), a test set that leaves no
            training data, or a non-positive size or noise.
    """
    if n_spirals < 4 or n_spirals % 2:
        raise ValueError(f"n_spirals must be even and >= 4 (half turn each way), got {n_spirals}")
    if not 0 < n_test < n_spirals or n_test % 2:
        raise ValueError(f"n_test must be even and in (0, n_spirals), got {n_test}")
    # written as "not (... ok ...)" so that NaN, which fails every comparison, is refused too
    if not (n_times >= 2 and n_extrap >= 0 and math.isfinite(t_max) and t_max > 0
            and math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"need n_times >= 2, n_extrap >= 0, a finite t_max > 0, a finite noise_std >= 0; "
                         f"got {n_times}, {n_extrap}, {t_max}, {noise_std}")
    for lo, hi in filter(None, (theta0_range, train_theta0_range)):
        if not (math.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f"a start-angle range must satisfy 0 < low <= high, got ({lo}, {hi})")
    rng = np.random.default_rng(seed)
    step = t_max / (n_times - 1)
    t = step * np.arange(n_times + n_extrap)
    direction = np.repeat([1.0, -1.0], n_spirals // 2)
    u = rng.random(n_spirals)                                   # each spiral's quantile of its start range
    noise = noise_std * rng.standard_normal((n_spirals, n_times, 2))
    # a split with half of each direction on both sides
    ccw, cw = rng.permutation(n_spirals // 2), n_spirals // 2 + rng.permutation(n_spirals // 2)
    half = n_test // 2
    test = np.sort(np.concatenate([ccw[:half], cw[:half]]))
    train = np.sort(np.concatenate([ccw[half:], cw[half:]]))
    lo, hi = np.full(n_spirals, theta0_range[0]), np.full(n_spirals, theta0_range[1])
    if train_theta0_range is not None:
        lo[train], hi[train] = train_theta0_range
    theta0 = lo + (hi - lo) * u
    truth = spiral(theta0, direction, t, b)
    noisy = truth[:, :n_times] + noise
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return SpiralData(t=f32(t), truth=f32(truth), noisy=f32(noisy), direction=f32(direction),
                      theta0=f32(theta0), train=torch.as_tensor(train), test=torch.as_tensor(test),
                      noise_std=float(noise_std))


def coverage(data: SpiralData, idx: Tensor) -> dict[str, float]:
    """How much of what the test asks the training observations cover, in spiral angle theta.

    A point's angle is theta0 + t (its radius is b times it). The training observations (indices
    `idx`, (N, n), of the window times) cover angles up to `train_max`; a test spiral's extrapolation
    reaches theta0 + t[-1]. Returns the covered range, the farthest test angle, the fraction of test
    extrapolation points at or below `train_max`, and `edge`, the largest test start angle whose
    whole extrapolation is covered.
    """
    theta_obs = data.theta0[data.train, None] + data.t[idx[data.train]]
    beyond = data.theta0[data.test, None] + data.t[None, data.n_times:]
    train_max = float(theta_obs.max())
    return {"train_min": float(theta_obs.min()), "train_max": train_max,
            "test_max": float(beyond.max()) if beyond.numel() else float("nan"),
            "covered": float((beyond <= train_max).float().mean()) if beyond.numel() else 1.0,
            "edge": train_max - float(data.t[-1])}


SAMPLINGS: tuple[str, ...] = ("irregular", "regular")


def observation_indices(n_spirals: int, n_times: int, n: int, seed: int = 0, sampling: str = "irregular") -> Tensor:
    """(n_spirals, n) sorted window-time indices: "irregular", n drawn without replacement for each
    spiral (the paper); "regular", the same n evenly spaced times for all (the authors' later example)."""
    if not 1 <= n <= n_times:
        raise ValueError(f"n must be in [1, {n_times}], got {n}")
    if sampling == "regular":
        idx = np.round(np.linspace(0, n_times - 1, n)).astype(np.int64)
        return torch.as_tensor(idx).expand(n_spirals, n).clone()
    if sampling != "irregular":
        raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
    rng = np.random.default_rng([seed, n])
    idx = np.argsort(rng.random((n_spirals, n_times)), axis=1)[:, :n]
    return torch.as_tensor(np.sort(idx, axis=1))


def observe(data: SpiralData, n: int, seed: int = 0, sampling: str = "irregular") -> tuple[Tensor, Tensor, Tensor]:
    """The n observations of every spiral: x (N, n, 2), their times t_obs (N, n), indices (N, n)."""
    idx = observation_indices(data.noisy.shape[0], data.n_times, n, seed, sampling)
    x = torch.gather(data.noisy, 1, idx[..., None].expand(-1, -1, 2))
    return x, data.t[idx], idx
