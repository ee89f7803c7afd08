"""The four MNIST classifiers of Table 1: 1-layer MLP, ResNet, RK-Net and ODE-Net.

ResNet, RK-Net and ODE-Net share everything but the middle: the input is downsampled twice
(to 64 channels of 7 x 7 with the residual stem, 6 x 6 with the convolutional one), then comes either 6 residual blocks (ResNet) or one ODE
block integrated over [0, 1] (ODE-Net, RK-Net), then GroupNorm-ReLU-average pool-linear. The
blocks follow the authors' public example (pre-activation residual blocks with GroupNorm; ODE
dynamics GN-ReLU-conv-GN-ReLU-conv-GN with the time appended as an input channel).

Two downsampling stems are offered (`DOWNSAMPLING`): "conv" (the public example: conv3x3, then two
4x4 stride-2 convs) and "res" (conv3x3, then two stride-2 residual blocks). `param_counts()` sets
their totals beside the paper's; "res" is closer (see the MNIST chapter) and is the default.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from odecore.solve import CountNFE, check_step_size, odesolve

WIDTH = 64
DOWNSAMPLING = ("res", "conv")
MODELS = ("mlp", "resnet", "rknet", "odenet")


def norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, dim), dim)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(relu(gn(conv(relu(gn(x)))))); stride 2 downsamples."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.norm1, self.norm2 = norm(cin), norm(cout)
        self.conv1, self.conv2 = conv3x3(cin, cout, stride), conv3x3(cout, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.norm1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(torch.relu(self.norm2(self.conv1(out))))
        return out + shortcut


class ConcatConv2d(nn.Conv2d):
    """3x3 convolution that sees the time t as one more constant input channel."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin + 1, cout, kernel_size=3, stride=1, padding=1)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        tt = torch.ones_like(x[:, :1]) * t
        return super().forward(torch.cat([tt, x], 1))


class ODEFunc(nn.Module):
    """Dynamics f(t, z) = GN(conv_t(relu(GN(conv_t(relu(GN(z))))))); z: (B, 64, H, W)."""

    def __init__(self, dim: int = WIDTH):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = norm(dim), norm(dim), norm(dim)
        self.conv1, self.conv2 = ConcatConv2d(dim, dim), ConcatConv2d(dim, dim)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        out = self.conv1(t, torch.relu(self.norm1(z)))
        out = self.conv2(t, torch.relu(self.norm2(out)))
        return self.norm3(out)


class ODEBlock(nn.Module):
    """z(1) from z(0) = x by dz/dt = f(t, z) on [0, 1].

    ODE-Net: dopri5 at rtol = atol = tol, gradients by the adjoint (`adjoint=True`).
    RK-Net: the same block solved by a Runge-Kutta method (rk4 with fixed steps in make()), gradients by
    backpropagating through the solver's operations.
    `.func.nfe` counts evaluations; `nfe_forward` holds the count of the last forward solve.
    Solver settings can be changed after training (Figure 3 varies tol and method at test time).
    """

    def __init__(self, dim: int = WIDTH, *, tol: float = 1e-3, method: str = "dopri5",
                 adjoint: bool = True, options: dict | None = None, adjoint_options: dict | None = None):
        super().__init__()
        self.func = CountNFE(ODEFunc(dim))
        self.tol, self.method, self.adjoint = tol, method, adjoint
        self.options, self.adjoint_options = options, adjoint_options
        self.register_buffer("t", torch.tensor([0.0, 1.0]), persistent=False)
        self.nfe_forward = 0

    def forward(self, x: Tensor) -> Tensor:
        self.func.reset()
        z = odesolve(self.func, x, self.t.to(x.dtype), rtol=self.tol, atol=self.tol, method=self.method,
                     options=self.options, adjoint=self.adjoint, adjoint_options=self.adjoint_options)
        self.nfe_forward = self.func.nfe
        return z[-1]


def stem(kind: str = "res") -> nn.Sequential:
    """Downsample (B, 1, 28, 28) twice: to (B, 64, 7, 7) ("res") or (B, 64, 6, 6) ("conv")."""
    if kind == "conv":  # the authors' public example
        return nn.Sequential(nn.Conv2d(1, WIDTH, 3, 1), norm(WIDTH), nn.ReLU(inplace=True),
                             nn.Conv2d(WIDTH, WIDTH, 4, 2, 1), norm(WIDTH), nn.ReLU(inplace=True),
                             nn.Conv2d(WIDTH, WIDTH, 4, 2, 1))
    if kind == "res":
        return nn.Sequential(nn.Conv2d(1, WIDTH, 3, 1), ResBlock(WIDTH, WIDTH, 2), ResBlock(WIDTH, WIDTH, 2))
    raise ValueError(f"unknown downsampling {kind!r}; expected one of {DOWNSAMPLING}")


def head() -> nn.Sequential:
    return nn.Sequential(norm(WIDTH), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(WIDTH, 10))


class Classifier(nn.Sequential):
    """stem -> feature (6 ResBlocks or one ODEBlock) -> head; x: (B, 1, 28, 28) -> logits (B, 10)."""

    @property
    def ode(self) -> ODEBlock | None:
        return self[1] if isinstance(self[1], ODEBlock) else None


def make(name: str, *, downsampling: str = "res", tol: float = 1e-3, method: str = "dopri5",
         rk_method: str = "rk4", rk_step: float | None = 0.25) -> nn.Module:
    """One of MODELS. rknet backpropagates through `rk_method` with fixed steps of `rk_step`
    (default: rk4, 4 steps of 0.25 over [0, 1], 16 evaluations); rk_step=None for adaptive methods."""
    if name == "mlp":  # 784-300-10, as LeCun et al. (1998) cite it
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(inplace=True), nn.Linear(300, 10))
    if name == "resnet":
        feature = nn.Sequential(*[ResBlock(WIDTH, WIDTH) for _ in range(6)])
    elif name == "odenet":
        feature = ODEBlock(tol=tol, method=method, adjoint=True)
    elif name == "rknet":
        if rk_step is not None:           # refused here, with the name the caller used, not at the first solve
            try:
                check_step_size(rk_method, {"step_size": rk_step})
            except ValueError:
                raise ValueError(f"rk_step must be a step size > 0 (or None for an adaptive rk_method), got "
                                 f"{rk_step!r}") from None
        feature = ODEBlock(tol=tol, method=rk_method, adjoint=False,
                           options={"step_size": rk_step} if rk_step is not None else None)
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return Classifier(stem(downsampling), feature, head())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_counts() -> dict[str, dict[str, int]]:
    """{downsampling: {model: parameters}} for both stems."""
    return {kind: {name: count_params(make(name, downsampling=kind)) for name in MODELS}
            for kind in DOWNSAMPLING}
