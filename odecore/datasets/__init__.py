"""Data sets, one module per kind: mnist (IDX files), toy2d (densities), spirals."""
