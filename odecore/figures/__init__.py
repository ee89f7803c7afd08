"""Figures and tables, one module per chapter: pure functions of stored results.

Each function takes a record (`odecore.results.load`, the JSON of one result) and, where a figure
needs more than numbers, the arrays stored beside it (`odecore.results.load_arrays`, an `.npz`), and
returns a matplotlib Figure or a pandas DataFrame. Nothing here solves an ODE, loads a model or
regenerates data: whatever a figure needs, the experiment's `run()` computed and stored. So a chapter
executes from committed results in seconds, and a figure can be redrawn on a machine without torch's
trained weights.
"""
