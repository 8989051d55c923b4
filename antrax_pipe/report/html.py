"""HTML primitives of the report: escaped table cells, tables, key–value tables, notes, percentages.

Every value goes through :func:`cell`: text is escaped, a missing value (None, NaN, ``pd.NA``) becomes "—", never
"nan"; an :class:`Html` string is trusted as already-escaped markup.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..stats import Rate, fmt_pct

#: Header of a rate table: each rate per tracklet and frame-weighted, both with their interval.
RATE_HEADER = ("rate", "definition", "per tracklet (n, exact 95 % CI)", "frame-weighted (n, 95 % CI)")


class Html(str):
    """A string that is already HTML (not escaped again by :func:`cell`)."""


def is_missing(v: Any) -> bool:
    """None, ``pd.NA`` or a float NaN."""
    if v is None or v is pd.NA:
        return True
    try:
        return bool(isinstance(v, (float, np.floating)) and math.isnan(v))
    except TypeError:
        return False


def cell(v: Any, missing: str = "—") -> str:
    """One table cell's HTML: booleans as yes/no, integers with thin-space thousands, floats to 4 significant digits,
    anything else escaped; ``missing`` for a missing value."""
    if isinstance(v, Html):
        return v
    if is_missing(v):
        return missing
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}".replace(",", "\u2009")
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return html.escape(str(v))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "", row_classes: Sequence[str] = ()) -> str:
    """A table: escaped header, one :func:`cell` per value; ``row_classes[i]`` (bad, warn, total) marks row i."""
    out = [f'<table class="{cls}">' if cls else "<table>", "<thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        rc = row_classes[i] if i < len(row_classes) and row_classes[i] else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        out += [f"<td>{cell(v)}</td>" for v in row]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def kv_table(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of (name in bold, value) rows, its header hidden by the page's CSS."""
    return table(("", ""), ((Html(f"<b>{html.escape(k)}</b>"), v) for k, v in items), cls="kv")


def note(text: str, kind: str = "note") -> str:
    """A boxed remark (kind note, warn or bad); ``text`` is HTML, escape what it quotes."""
    return f'<div class="{kind}">{text}</div>'


def pct(x: Any) -> str:
    """A fraction as a percentage; "n/a" when missing."""
    return fmt_pct(None if is_missing(x) else float(x))


def rate_rows(items: Iterable[tuple[str, str, tuple[Rate, Rate]]]) -> list[list[Any]]:
    """Rows for a :data:`RATE_HEADER` table from (name, definition, (per-tracklet rate, frame-weighted rate))."""
    return [[name, definition, r[0].format(), r[1].format()] for name, definition, r in items]


def fmt_param(v: Any) -> Any:
    """A parameter value for a table: "not available" when missing, containers as JSON, anything else as is."""
    if is_missing(v):
        return "not available"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return v
