"""The coverage–error trade-off of the tracklet rule over its confidence gate, from held-out tracklets.

What a user tunes is the aggregation rule's gate (``min_conf``, ``min_conf_short``): it trades *coverage* (ID
tracklets that get an ID) against *error* (IDs that are wrong). The held-out evaluation
(:mod:`antrax_pipe.evaluate`) keeps, per tracklet, the ungated decision and the value the gate tests, so the whole
curve over ``min_conf`` follows from a small table, without predicting again. Definitions (over held-out
tracklets):

* **given an ID** at thresholds (c, c_short): the ungated label is an ID, ``gate ≥ c``, and (``n_gate ≥
  short_length`` or ``gate ≥ c_short``) — exactly :mod:`antrax_pipe.aggregation`'s gate (tested against it).
* **coverage** = tracklets whose true label is an ID and that are given an ID ÷ tracklets whose true label is an ID.
* **error** = tracklets given an ID that differs from their true label (true label another ID, or not an ID at all)
  ÷ tracklets given an ID.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .aggregation import AggregationParams, given_id
from .io.heldout import ClassifierValidation
from .stats import Rate, tracklet_rate


CURVE_COLUMNS: tuple[str, ...] = ("min_conf", "n_id", "covered", "given", "wrong", "coverage", "error")


def coverage_error_curve(table: pd.DataFrame, ids: Iterable[str], min_conf_short: float, short_length: int,
                         thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Coverage and error of the tracklet rule for each ``min_conf`` in ``thresholds`` (``min_conf_short`` and
    ``short_length`` fixed), from a per-tracklet table (columns ``true_label``, ``pred_label``, ``gate``,
    ``n_gate``). Default thresholds: 0, 0.01, …, 1 plus every distinct gate value (where the curve steps).

    Columns: ``n_id`` (true-ID tracklets), ``covered`` (of those, given an ID), ``given`` (all tracklets given an
    ID), ``wrong`` (given an ID ≠ true label), ``coverage`` = covered/n_id, ``error`` = wrong/given (NaN for 0/0).
    """
    ids = list(ids)
    if thresholds is None:
        gates = table["gate"].to_numpy(dtype=float)
        thresholds = np.unique(np.concatenate([np.round(np.linspace(0, 1, 101), 10), gates[np.isfinite(gates)]]))
    true = table["true_label"].to_numpy(dtype=object)
    pred = table["pred_label"].to_numpy(dtype=object)
    t_id = np.isin(true, ids)
    rows = []
    for c in thresholds:
        g = given_id(pred, table["gate"], table["n_gate"], ids, float(c), min_conf_short, short_length)
        covered = int(np.sum(g & t_id))
        given = int(g.sum())
        wrong = int(np.sum(g & (pred != true)))
        n_id = int(t_id.sum())
        rows.append((float(c), n_id, covered, given, wrong, covered / n_id if n_id else math.nan,
                     wrong / given if given else math.nan))
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


@dataclass(frozen=True)
class OperatingPoint:
    """Coverage and error (tracklets, exact 95 % intervals) at one pair of thresholds."""

    min_conf: float
    min_conf_short: float
    short_length: int
    use_min_conf: bool
    coverage: Rate
    error: Rate


def operating_point(table: pd.DataFrame, ids: Iterable[str], params: AggregationParams) -> OperatingPoint:
    """Coverage and error at the configured thresholds, with Clopper–Pearson intervals and their n."""
    ids = list(ids)
    true = table["true_label"].to_numpy(dtype=object)
    pred = table["pred_label"].to_numpy(dtype=object)
    g = given_id(pred, table["gate"], table["n_gate"], ids, params.min_conf, params.min_conf_short,
                 params.short_length, params.use_min_conf)
    t_id = np.isin(true, ids)
    return OperatingPoint(params.min_conf, params.min_conf_short, params.short_length, params.use_min_conf,
                          coverage=tracklet_rate(int(np.sum(g & t_id)), int(t_id.sum())),
                          error=tracklet_rate(int(np.sum(g & (pred != true))), int(g.sum())))


def validation_params(v: ClassifierValidation) -> AggregationParams:
    """The aggregation settings a held-out table was computed with (method, multi_fraction) and the configured
    gate."""
    p = v.meta.get("aggregate") or {}
    keys = ("use_min_conf", "min_conf", "min_conf_short", "short_length", "multi_fraction", "method")
    return AggregationParams(**{k: p[k] for k in keys if k in p})


def validation_curve(v: ClassifierValidation, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """The coverage–error curve of a held-out evaluation at its own ``min_conf_short`` / ``short_length``."""
    p = validation_params(v)
    return coverage_error_curve(v.table, v.ids, p.min_conf_short, p.short_length, thresholds)


def validation_operating_point(v: ClassifierValidation) -> OperatingPoint:
    """Coverage and error of a held-out evaluation at its configured thresholds."""
    return operating_point(v.table, v.ids, validation_params(v))
