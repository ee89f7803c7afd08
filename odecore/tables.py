"""How a number and a table look on every page: one formatter, one way to put a table in the book.

A page shows a table as a numbered, captioned MyST table: the notebook glues the table's Markdown
(`glue_table`) and a Markdown cell places it inside a `{table}` directive, so Sphinx numbers it
("Table 3.2"), a `{numref}` can cite it and it prints like any other table. Every cell goes
through `number`, so the same quantity has the same digits on every page.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

DIGITS = 3   # significant digits of a reproduced number; the paper's own keep the digits it printed (up to 4)


def number(x, digits: int = DIGITS, unit: str = "") -> str:
    """A value as the book prints it: '-' for a missing one, integers whole, floats to `digits` significant digits.

    Never a repr: None and NaN read '-', booleans 'yes' / 'no', and large or small floats use
    ordinary notation where it stays short (1250, 0.0012) and a power of ten otherwise (3.8 × 10⁻⁶).
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e5):
        text = f"{int(x):,}" if abs(x) >= 1e4 else str(int(x))
    elif isinstance(x, float):
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            text = f"{mantissa} × 10{_superscript(int(exponent))}"
        elif abs(x) >= 10 ** digits:   # 1254.25 -> 1250: the digits kept, no exponent
            rounded = float(f"{x:.{digits}g}")
            text = f"{rounded:,.0f}" if abs(rounded) >= 1e4 else f"{rounded:.0f}"
        else:
            text = f"{x:.{digits}g}"
    else:
        return str(x)
    return f"{text} {unit}".strip()


def _superscript(n: int) -> str:
    return str(n).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def words(value) -> str:
    """A setting's value in words: lists joined ('30, 50, 100'), numbers through `number`, a mapping as 'key value'."""
    if isinstance(value, (list, tuple)):
        return ", ".join(words(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {words(v)}" for k, v in value.items()) or "-"
    return number(value) if not isinstance(value, str) else value


def mean_sd(values: Sequence[float], digits: int = DIGITS) -> str:
    """'0.36 ± 0.03' over seeds (sample sd), or the one value when there is one; the seed count goes in the caption."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return "-"
    if len(values) == 1:
        return number(values[0], digits)
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(mean)))) if mean else digits
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def markdown(df: pd.DataFrame, digits: int = DIGITS) -> str:
    """`df` as a Markdown table (its index dropped), every cell through `number`; '|' in a cell escaped."""
    def cell(x) -> str:
        return (x if isinstance(x, str) else number(x, digits)).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join(" ---: " if pd.api.types.is_numeric_dtype(df[c]) else " --- " for c in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def glue_table(name: str, df: pd.DataFrame, digits: int = DIGITS) -> None:
    """Glue `df` under `name` for a page's `{table}` directive holding ```{glue:md} name``` with `:format: myst`."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(markdown(df, digits)), display=False)
