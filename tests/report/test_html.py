"""HTML primitives of the report: escaping, missing values ("—" in a cell, "n/a" for a rate, "not available" for a
parameter — never "nan"), number formatting, table structure."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from antrax_pipe.report.html import (
    RATE_HEADER,
    Html,
    cell,
    fmt_param,
    is_missing,
    kv_table,
    note,
    pct,
    rate_rows,
    table,
)
from antrax_pipe.stats import tracklet_rate

MISSING = [None, math.nan, float("nan"), np.nan, np.float32("nan"), pd.NA]


@pytest.mark.parametrize("v", MISSING)
def test_missing_values(v):
    assert is_missing(v)
    assert cell(v) == "—" and cell(v, missing="n/a") == "n/a"
    assert pct(v) == "n/a"
    assert fmt_param(v) == "not available"


@pytest.mark.parametrize("v", [0, 0.0, "", "nan", False, [], "—", pd.Timestamp("2020-01-01"), np.array([1.0])])
def test_present_values_are_not_missing(v):
    assert not is_missing(v)


def test_cell_escapes_text_but_not_html():
    assert cell('<b>&"x"</b>') == "&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;"
    assert cell("it's") == "it&#x27;s"
    assert cell(Html("<b>all</b>")) == "<b>all</b>"


def test_cell_formats_numbers_and_booleans():
    assert cell(True) == "yes" and cell(np.bool_(False)) == "no"
    assert cell(1234567) == "1\u2009234\u2009567" and cell(np.int64(-1200)) == "-1\u2009200" and cell(7) == "7"
    assert cell(0.123456) == "0.1235" and cell(np.float32(2.5)) == "2.5" and cell(1e-7) == "1e-07"
    assert cell(math.inf) == "inf"


def test_table_structure_escaping_and_row_classes():
    out = table(["a<b", "c"], [[1, None], ["x&y", math.nan], [Html("<i>z</i>"), 2.0]], cls="num",
                row_classes=["bad", ""])
    assert out.startswith('<table class="num"><thead><tr><th>a&lt;b</th><th>c</th></tr></thead><tbody>')
    assert '<tr class="bad"><td>1</td><td>—</td></tr>' in out
    assert "<tr><td>x&amp;y</td><td>—</td></tr>" in out  # empty class → plain <tr>
    assert "<tr><td><i>z</i></td><td>2</td></tr>" in out  # fewer classes than rows: the rest plain
    assert out.endswith("</tbody></table>")
    assert not re.search(r"\bnan\b", out, re.IGNORECASE)
    assert table(["h"], []) == "<table><thead><tr><th>h</th></tr></thead><tbody></tbody></table>"


def test_kv_table_bolds_and_escapes_keys():
    out = kv_table([("min<conf", 0.9), ("missing", fmt_param(math.nan)), ("list", fmt_param([1, "a"]))])
    assert out.startswith('<table class="kv">')
    assert "<tr><td><b>min&lt;conf</b></td><td>0.9</td></tr>" in out
    assert "<td>not available</td>" in out
    assert "<td>[1, &quot;a&quot;]</td>" in out


def test_fmt_param():
    assert fmt_param({"a": (1, 2)}) == '{"a": [1, 2]}'
    assert fmt_param(("x",)) == '["x"]'
    assert fmt_param(0.5) == 0.5 and fmt_param("antrax") == "antrax" and fmt_param(False) is False


def test_note_and_pct():
    assert note("text") == '<div class="note">text</div>'
    assert note("<b>x</b>", "warn") == '<div class="warn"><b>x</b></div>'
    assert pct(0.4412) == "44.1 %" and pct(np.float64(1)) == "100.0 %" and pct(0) == "0.0 %"


def test_rate_rows_never_nan():
    undefined = tracklet_rate(0, 0)
    rows = rate_rows([("wrong ID", "wrong / (correct + wrong)", (undefined, undefined)),
                      ("fp", "a / (a + c + w)", (tracklet_rate(1, 4), undefined))])
    assert len(RATE_HEADER) == len(rows[0]) == 4
    assert rows[0] == ["wrong ID", "wrong / (correct + wrong)", "n/a (n = 0)", "n/a (n = 0)"]
    assert rows[1][2].startswith("25.0 % (1/4 tracklets; 95 % CI")
    out = table(RATE_HEADER, rows)
    assert not re.search(r"\bnan\b", out, re.IGNORECASE)
