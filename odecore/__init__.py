"""odecore: the package every chapter of the Neural ODE reproduction imports.

Modules are named after what the paper names: solve, adjoint, models, datasets, train, results,
paper, plots, profiles, and experiments.<chapter>.
"""
from odecore.solve import METHODS, CountNFE, odesolve

__all__ = ["METHODS", "CountNFE", "odesolve"]
__version__ = "0.1.0"
