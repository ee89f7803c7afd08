"""The paper's published numbers: the one source of every "paper" column in the book.

Chen, Rubanova, Bettencourt, Duvenaud. Neural Ordinary Differential Equations. NeurIPS 2018.
Values are copied from the paper (see ../shared/PAPER.md); nothing here is reproduced.
"""
from __future__ import annotations

CITATION = "Chen, Rubanova, Bettencourt and Duvenaud, Neural Ordinary Differential Equations, NeurIPS 2018"

# Table 1: MNIST. test_error in percent, params in millions; memory/time are O(.) claims only.
TABLE1: dict[str, dict] = {
    "mlp": {"model": "1-layer MLP", "test_error": 1.60, "params_m": 0.24, "memory": "-", "time": "-",
            "note": "cited from LeCun et al. 1998, not run in the paper"},
    "resnet": {"model": "ResNet", "test_error": 0.41, "params_m": 0.60, "memory": "O(L)", "time": "O(L)"},
    "rknet": {"model": "RK-Net", "test_error": 0.47, "params_m": 0.22, "memory": "O(L~)", "time": "O(L~)"},
    "odenet": {"model": "ODE-Net", "test_error": 0.42, "params_m": 0.22, "memory": "O(1)", "time": "O(L~)"},
}
MNIST_TOL = 1e-3  # classification tolerance
MNIST_EPOCHS = 160  # training epochs of the authors' public MNIST example (the paper states none)

# Table 2: predictive RMSE on the spirals test set, by number of observed points out of 100.
TABLE2: dict[str, dict[int, float]] = {
    "rnn": {30: 0.3937, 50: 0.3202, 100: 0.1813},
    "latent_ode": {30: 0.1642, 50: 0.1502, 100: 0.1346},
}
SPIRALS = {"n_spirals": 1000, "n_times": 100, "latent_dim": 4, "rnn_hidden": 25,
           "dynamics_hidden": 20, "decoder_hidden": 20, "tol": 1.5e-8}

# Section 4: density matching (Figure 4) and maximum likelihood (Figure 5) settings.
FIGURE4 = {"nf_layers": (2, 8, 32), "cnf_units": (2, 8, 32), "cnf_iterations": 10_000,
           "cnf_optimizer": "Adam", "nf_iterations": 500_000, "nf_optimizer": "RMSprop", "tol": 1e-5}
FIGURE5 = {"cnf_units": 64, "nf_layers": 64, "datasets": ("two_circles", "two_moons"),
           "fractions": (0.05, 0.2, 0.4, 0.6, 0.8, 1.0)}

# Figure 3 (c): the paper's claim about the adjoint's backward cost.
BACKWARD_OVER_FORWARD_NFE = 0.5  # "roughly half"

# Every table and figure, for the reproduction page: id -> (what it shows, chapter, experiment
# whose results fill it in, or None where nothing is run for it yet).
ITEMS: list[dict] = [
    {"id": "Figure 1", "what": "ResNet steps vs ODE-Net vector field", "chapter": "mnist", "experiment": "mnist"},
    {"id": "Figure 2", "what": "reverse-mode adjoint sensitivity", "chapter": "adjoint", "experiment": "adjoint"},
    {"id": "Algorithm 1", "what": "adjoint gradients", "chapter": "adjoint", "experiment": "adjoint"},
    {"id": "Table 1", "what": "MNIST test error, params, memory, time", "chapter": "mnist", "experiment": "mnist"},
    {"id": "Figure 3", "what": "NFE statistics of a trained ODE-Net", "chapter": "mnist", "experiment": "mnist"},
    {"id": "Theorem 1", "what": "instantaneous change of variables", "chapter": "cnf", "experiment": "cnf_density"},
    {"id": "Figure 4", "what": "density matching, planar NF vs CNF", "chapter": "cnf", "experiment": "cnf_density"},
    {"id": "Figure 5", "what": "maximum likelihood, two circles and two moons", "chapter": "cnf", "experiment": "cnf_mle"},
    {"id": "Figure 6", "what": "latent ODE model diagram", "chapter": "latent_ode", "experiment": "latent_ode"},
    {"id": "Figure 7", "what": "Poisson process intensity", "chapter": "latent_ode", "experiment": "latent_ode_poisson"},
    {"id": "Table 2", "what": "spiral predictive RMSE", "chapter": "latent_ode", "experiment": "latent_ode"},
    {"id": "Figure 8", "what": "spiral reconstruction, RNN vs latent ODE", "chapter": "latent_ode", "experiment": "latent_ode"},
    {"id": "Figure 9", "what": "latent space interpolation", "chapter": "latent_ode", "experiment": "latent_ode"},
    {"id": "Figure 10", "what": "reconstructions from 30/50/100 points", "chapter": "latent_ode", "experiment": "latent_ode"},
]


def printed(x) -> str:
    """One of the paper's numbers as the paper prints it: Table 1 with two decimals (1.60 %, 0.60 M), Table 2 with
    four (0.3937); any other to up to four significant digits. The book's own numbers go through tables.number."""
    from odecore.tables import number

    if isinstance(x, str) or x is None:
        return "-" if x is None else x
    if any(x == row[k] for row in TABLE1.values() for k in ("test_error", "params_m")):
        return f"{x:.2f}"
    if any(x == v for row in TABLE2.values() for v in row.values()):
        return f"{x:.4f}"
    return number(x, 4, zeros=False)
