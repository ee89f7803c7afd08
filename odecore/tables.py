"""How a number and a table look on every page: one formatter, one way to put a table in the book.

A page shows a table as a numbered, captioned MyST table: the notebook glues the table's Markdown
(`glue_table`) and a Markdown cell places it inside a `{table}` directive, so Sphinx numbers it
("Table 3.2"), a `{numref}` can cite it and it prints like any other table. Every cell goes
through `number`, so the same quantity has the same digits on every page.

The rule, once for the whole book:

- A number we measured has three significant digits, trailing zeros kept (0.190, 1.60, 22.4); an integer is
  whole (20, 12,345); a float of 1000 or more keeps three digits without an exponent (1254.3 -> 1250); below
  0.001 or from 100,000 up it is written with a power of ten (3.81 × 10⁻⁶), never in e-notation (3.8e-06).
- mean ± sd: the mean to three significant digits and the sd to the same last decimal (0.390 ± 0.014,
  1.37 ± 0.07); the number of seeds is said once, in the caption.
- A negative number takes the minus sign (−0.217), a difference its sign (+0.48, −0.23).
- The paper's own numbers are printed as the paper prints them (`paper.printed`: 1.60, 0.60, 0.3937), and only
  as the paper's, never rounded to ours.
- Units are words or SI symbols after the number: %, percentage points for differences of percentages, MiB
  (memory is measured in binary megabytes), s, min, h, CPU core-h.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pandas as pd

DIGITS = 3   # significant digits of a reproduced number; the paper's own keep the digits it printed (up to 4)
MINUS = "\u2212"   # the minus sign, not a hyphen


def number(x, digits: int = DIGITS, unit: str = "", zeros: bool = True) -> str:
    """A value as the book prints it: '-' for a missing one, integers whole, floats to `digits` significant digits
    with trailing zeros kept, a minus sign for negatives (the module's rule).

    Never a repr: None and NaN read '-', booleans 'yes' / 'no', and large or small floats use
    ordinary notation where it stays short (1250, 0.00120) and a power of ten otherwise (3.81 × 10⁻⁶).
    zeros=False drops trailing zeros: for exact values that were typed, not measured (a setting: 5 × 10⁻⁴, 0.05).
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):   # a numpy scalar
        x = x.item()
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e5):
        text = f"{int(x):,}" if abs(x) >= 1e4 else str(int(x))
    elif isinstance(x, float):
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
            mantissa = mantissa if zeros else mantissa.rstrip("0").rstrip(".")
            text = f"{mantissa} × 10{_superscript(int(exponent))}"
        elif abs(x) >= 10 ** (digits - 1):   # 1254.25 -> 1250, 22.43 -> 22.4 at 2 digits: no exponent, no point
            rounded = float(f"{x:.{digits}g}")
            text = f"{rounded:,.0f}" if abs(rounded) >= 1e4 else f"{rounded:.0f}"
        else:
            text = f"{x:#.{digits}g}".rstrip(".") if zeros else f"{x:.{digits}g}"
    else:
        return str(x)
    text = text.replace("-", MINUS) if text.startswith("-") else text
    return f"{text} {unit}".strip()


def percent(share: float) -> str:
    """A share as a whole percent, '107%': a share of a gap can pass 100%, where two significant digits would read 110.
    '-' for a missing one, as `number`."""
    if share is None or math.isnan(share):
        return "-"
    return f"{number(round(100 * share))}%"


def signed(x, digits: int = DIGITS, unit: str = "") -> str:
    """A difference with its sign: '+0.480', '−0.230' (`number`'s digits)."""
    text = number(x, digits, unit)
    return text if text.startswith((MINUS, "-")) or x is None else f"+{text}"


def _superscript(n: int) -> str:
    return str(n).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def words(value) -> str:
    """A setting's value in words: lists joined ('30, 50, 100'), numbers through `number`, a mapping as 'key value'."""
    if isinstance(value, (list, tuple)):
        return ", ".join(words(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {words(v)}" for k, v in value.items()) or "-"
    return number(value, zeros=False) if not isinstance(value, str) else value


def mean_sd(values: Sequence[float], digits: int = DIGITS) -> str:
    """'0.390 ± 0.014' over seeds (sample sd): the mean to `digits` significant digits, the sd to the same decimal;
    the one value when there is one; the seed count goes in the caption."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return "-"
    if len(values) == 1:
        return number(values[0], digits)
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(mean)))) if mean else digits
    text = f"{mean:.{decimals}f} ± {sd:.{decimals}f}"
    return text.replace("-", MINUS, 1) if text.startswith("-") else text


# A cell that is a number (with its sign, ±, power of ten or short unit): kept on one line in a table.
NUMERIC = re.compile(r"[−+-]?[\d.,]+( ± [\d.,]+)?( × 10[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)?( (%|M|MiB|s|min|h|nats))?")


def markdown(df: pd.DataFrame, digits: int = DIGITS) -> str:
    """`df` as a Markdown table (its index dropped), every cell through `number`; '|' in a cell escaped; a number
    wrapped in span.num, which the book's CSS keeps on one line ('0.305 ± 0.039' never breaks at the ±)."""
    def cell(x) -> str:
        text = (x if isinstance(x, str) else number(x, digits)).replace("|", "\\|").replace("\n", " ")
        return f'<span class="num">{text}</span>' if " " in text and NUMERIC.fullmatch(text) else text

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join(" ---: " if pd.api.types.is_numeric_dtype(df[c]) else " --- " for c in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def glue_table(name: str, df: pd.DataFrame, digits: int = DIGITS) -> None:
    """Glue `df` under `name` for a page's `{table}` directive holding ```{glue:md} name``` with `:format: myst`."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(markdown(df, digits)), display=False)
