"""Validation report: one self-contained HTML page (tables + plots as base64 PNG) over classified sessions.

The page opens offline and can be mailed around: no external CSS/JS, every plot is embedded. Plots use matplotlib's
object API (``Figure`` + Agg canvas), never ``pyplot``, so no global backend or figure state is touched.

Definitions used throughout (also printed on the page):

* **kind** of a label — ID (``ant_labels``), non-ant (``noant_labels``), multi (by name, as anTraX), Unknown, other
  (other ``other_labels``), unlisted (in no labels.csv category: classifier and labels.csv out of sync).
* **frames** of a tracklet — its number of images (``SessionResult.n_images``), falling back to the frame span in its
  name (exact unless the video was downsampled).
* **assignment rate** — frames of tracklets labelled with an ID ÷ frames of all classified tracklets that are *not*
  non-ant (ID + multi + Unknown + other + unlisted): the share of ant-tracklet time the classifier alone identifies,
  before graph propagation. Also given per tracklet. 0/0 (a movie with only non-ant tracklets) is "n/a".
* rates against validation marks and against a ground truth: see :mod:`antrax_pipe.stats`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ._version import __version__
from .coverage import operating_point, validation_curve, validation_params
from .io.atomic import atomic_write_text
from .io.heldout import STATUS_OK, read_validation
from .results import KIND_SLUG, SessionResult, marks_table, summarize_session, summary_totals, tracklet_table
from .model import ClassifierCard, LabelSet
from .stats import (
    KIND_ID,
    KIND_MULTI,
    KIND_NONANT,
    KIND_OTHER,
    KIND_UNKNOWN,
    KIND_UNLISTED,
    KINDS,
    Rate,
    fmt_pct,
    label_kind,
    most_confused,
    rate_pair,
    truth_stats,
    validation_stats,
)

KIND_COLOR: dict[str, str] = {
    KIND_ID: "#4c72b0", KIND_NONANT: "#8c8c8c", KIND_MULTI: "#dd8452", KIND_UNKNOWN: "#c44e52",
    KIND_OTHER: "#937860", KIND_UNLISTED: "#da8bc3",
}
#: Parameter names under which the aggregation's short-tracklet length (anTraX: < 5 ant frames → ``min_conf_short``)
#: is looked up, to mark it on the tracklet-length plot.
SHORT_LEN_KEYS: tuple[str, ...] = ("short_len", "min_conf_short_len", "short_frames", "short_length")

_DPI = 80


# --------------------------------------------------------------------------------------------------------------------
# Plots (Figure + Agg canvas; returned as <img> tags with base64 PNG)
# --------------------------------------------------------------------------------------------------------------------


def _new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _img(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _label_order(labels: LabelSet, present: Iterable[str]) -> list[str]:
    order = [lab for lab in labels.all_labels]
    extra = sorted(set(present) - set(order))
    return order + extra


def plot_label_distribution(tt: pd.DataFrame, labels: LabelSet, title: str) -> str:
    """Bars per label (every labels.csv label, so an ID never assigned shows as an empty slot), tracklets and frames."""
    order = _label_order(labels, tt.label.unique())
    ntr = tt.groupby("label").size().reindex(order, fill_value=0)
    nfr = tt.groupby("label").frames.sum().reindex(order, fill_value=0)
    colors = [KIND_COLOR[label_kind(lab, labels)] for lab in order]
    fig = _new_figure(min(16.0, max(6.0, 0.38 * len(order) + 1.5)), 4.6)
    axes = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(order))
    for ax, values, what in ((axes[0], ntr, "tracklets"), (axes[1], nfr, "frames")):
        ax.bar(x, values.to_numpy(), color=colors)
        ax.set_ylabel(what)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(x, order, rotation=60, ha="right", fontsize=8)
    axes[0].set_title(title, fontsize=10)
    kinds_present = [k for k in KINDS if any(label_kind(lab, labels) == k for lab in order)]
    handles = [Patch(color=KIND_COLOR[k], label=k) for k in kinds_present]
    if handles:
        fig.legend(handles=handles, fontsize=7, ncols=len(handles), loc="outside upper right")
    return _img(fig, f"label distribution, {title}")


def plot_scores(tt: pd.DataFrame, title: str) -> str | None:
    """Scores of ID tracklets: the raw score (Σ P(label) over ID frames — grows with length, it is solve's priority)
    and score ÷ frames (≈ mean confidence). ``None`` when no tracklet has an ID."""
    ids = tt[tt.kind == KIND_ID]
    if ids.empty:
        return None
    fig = _new_figure(9, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    s = ids.score.to_numpy()
    pos = s[s > 0]
    if len(pos) and pos.max() / max(pos.min(), 1e-9) > 50:
        bins = np.logspace(np.log10(pos.min()), np.log10(pos.max()), 30)
        ax1.set_xscale("log")
    else:
        bins = 30
    ax1.hist(pos if len(pos) else s, bins=bins, color=KIND_COLOR[KIND_ID])
    ax1.set_xlabel("score (sum of P(label) over ID frames)")
    ax1.set_ylabel("ID tracklets")
    ratio = np.clip(s / np.maximum(ids.frames.to_numpy(), 1), 0, 1)
    ax2.hist(ratio, bins=np.linspace(0, 1, 21), color=KIND_COLOR[KIND_ID])
    ax2.set_xlabel("score ÷ tracklet frames")
    for ax in (ax1, ax2):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _img(fig, f"score distribution, {title}")


def plot_lengths(tt: pd.DataFrame, title: str, short_len: float | None = None) -> str | None:
    """Tracklet length (frames) histogram per outcome kind, log bins; the short-tracklet threshold marked if known."""
    if tt.empty:
        return None
    fig = _new_figure(7, 3.4)
    ax = fig.subplots()
    hi = max(int(tt.frames.max()), 2)
    bins = np.unique(np.round(np.logspace(0, np.log10(hi + 1), 30)))
    for k in KINDS:
        v = tt.frames[tt.kind == k].to_numpy()
        if len(v):
            ax.hist(v, bins=bins, histtype="step", lw=1.8, color=KIND_COLOR[k], label=f"{k} ({len(v)})")
    if short_len is not None:
        ax.axvline(short_len, color="k", ls="--", lw=1, label=f"short-tracklet threshold ({short_len:g})")
    ax.set_xscale("log")
    ax.set_xlabel("tracklet length (frames)")
    ax.set_ylabel("tracklets")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _img(fig, f"tracklet length by outcome, {title}")


def per_movie_distributions(tt: pd.DataFrame) -> pd.DataFrame:
    """Per movie: tracklet length quartiles (all tracklets and ID tracklets) and the quartiles of score ÷ frames of ID
    tracklets (NaN where a movie has none)."""
    rows = []
    for m, sub in tt.groupby("movie", sort=True):
        ids = sub[sub.kind == KIND_ID]
        conf = (ids.score / ids.frames.clip(lower=1)).clip(0, 1)
        q = (lambda v, p: float(np.percentile(v, p)) if len(v) else math.nan)
        rows.append({"movie": int(m), "tracklets": len(sub), "length_p25": q(sub.frames, 25),
                     "length_median": q(sub.frames, 50), "length_p75": q(sub.frames, 75),
                     "length_max": int(sub.frames.max()), "id_tracklets": len(ids),
                     "id_length_median": q(ids.frames, 50), "id_conf_p25": q(conf, 25),
                     "id_conf_median": q(conf, 50), "id_conf_p75": q(conf, 75)})
    return pd.DataFrame(rows, columns=["movie", "tracklets", "length_p25", "length_median", "length_p75",
                                       "length_max", "id_tracklets", "id_length_median", "id_conf_p25",
                                       "id_conf_median", "id_conf_p75"])


def plot_per_movie(tt: pd.DataFrame, title: str) -> str | None:
    """Length (all tracklets, log scale) and score ÷ frames (ID tracklets) per movie: boxes up to 40 movies, a
    median line with its interquartile band beyond (a movie that differs stands out either way)."""
    movies = sorted(tt.movie.unique())
    if len(movies) < 2:
        return None
    fig = _new_figure(min(16.0, max(7.0, 0.3 * len(movies) + 3)), 4.8)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    lengths = [tt.frames[tt.movie == m].to_numpy(float) for m in movies]
    ids = tt[tt.kind == KIND_ID]
    conf = [np.clip(ids.score[ids.movie == m] / ids.frames[ids.movie == m].clip(lower=1), 0, 1).to_numpy(float)
            for m in movies]
    x = np.arange(len(movies))
    for ax, data, color in ((ax1, lengths, "#8c8c8c"), (ax2, conf, KIND_COLOR[KIND_ID])):
        if len(movies) <= 40:
            keep = [i for i, d in enumerate(data) if len(d)]
            if keep:
                ax.boxplot([data[i] for i in keep], positions=x[keep], widths=0.6, showfliers=False,
                           patch_artist=True, boxprops={"facecolor": color, "alpha": 0.5},
                           medianprops={"color": "k"})
        else:
            med = np.array([np.median(d) if len(d) else np.nan for d in data])
            lo = np.array([np.percentile(d, 25) if len(d) else np.nan for d in data])
            hi = np.array([np.percentile(d, 75) if len(d) else np.nan for d in data])
            ax.fill_between(x, lo, hi, color=color, alpha=0.3, label="25–75 %")
            ax.plot(x, med, color="k", lw=1, label="median")
            ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    ax1.set_yscale("log")
    ax1.set_ylabel("tracklet length\n(frames)")
    ax2.set_ylabel("ID tracklets:\nscore ÷ frames")
    ax2.set_ylim(-0.02, 1.02)
    step = max(1, len(movies) // 30)
    ax2.set_xticks(x[::step], [str(m) for m in movies][::step], fontsize=8)
    ax2.set_xlabel("movie")
    ax1.set_title(f"per movie, {title}", fontsize=10)
    return _img(fig, f"per-movie length and score distributions, {title}")


def plot_coverage_error(curve: pd.DataFrame, configured: float | None, marks: Sequence[float] = ()) -> str | None:
    """The coverage–error figure (:func:`coverage_error_figure`) as an embedded image; None without true IDs."""
    fig = coverage_error_figure(curve, configured, marks)
    return _img(fig, "coverage-error curve over min_conf") if fig is not None else None


def coverage_error_figure(curve: pd.DataFrame, configured: float | None, marks: Sequence[float] = ()) -> Figure | None:
    """Left: error vs coverage as ``min_conf`` moves (thresholds marked); right: both against ``min_conf`` with the
    configured value as a vertical line. None when the curve has no defined coverage (no true-ID tracklet)."""
    c = curve[np.isfinite(curve.coverage.to_numpy(float))]
    if c.empty:
        return None
    fig = _new_figure(10, 3.8)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(c.coverage, c.error * 100, "-o", color="#4c72b0", ms=3, lw=1.2)
    for t in marks:
        row = c.iloc[int(np.argmin(np.abs(c.min_conf.to_numpy() - t)))]
        if np.isfinite(row.error):
            ax1.annotate(f"{t:g}", (row.coverage, row.error * 100), fontsize=7, xytext=(3, 3),
                         textcoords="offset points")
    if configured is not None:
        row = c.iloc[int(np.argmin(np.abs(c.min_conf.to_numpy() - configured)))]
        if np.isfinite(row.error):
            ax1.plot([row.coverage], [row.error * 100], "*", color="#c44e52", ms=14,
                     label=f"configured min_conf {configured:g}")
            ax1.legend(fontsize=7)
    ax1.set_xlabel("coverage (ID tracklets given an ID)")
    ax1.set_ylabel("error (% of IDs given that are wrong)")
    ax1.set_xlim(-0.02, 1.02)
    ax1.grid(alpha=0.3)
    ax2.plot(c.min_conf, c.coverage * 100, label="coverage", color="#4c72b0")
    ax2.plot(c.min_conf, c.error * 100, label="error", color="#c44e52")
    if configured is not None:
        ax2.axvline(configured, color="k", ls="--", lw=1, label=f"configured {configured:g}")
    ax2.set_xlabel("min_conf")
    ax2.set_ylabel("%")
    ax2.set_ylim(-2, 102)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.suptitle("held-out tracklets: coverage and error of the tracklet rule over min_conf", fontsize=10)
    return fig


def plot_trainset_counts(counts: Mapping[str, int], labels: LabelSet | None) -> str:
    names = list(counts)
    values = np.array([counts[n] for n in names], dtype=float)
    fig = _new_figure(min(16.0, max(6.0, 0.38 * len(names) + 1.5)), 3.6)
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.bar(x, values, color=[KIND_COLOR[label_kind(n, labels)] if labels else "#4c72b0" for n in names])
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("training images")
    if len(values) and values.max() > 0:
        ax.axhline(np.median(values), color="k", ls=":", lw=1, label=f"median {np.median(values):g}")
        ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("trainset images per label", fontsize=10)
    return _img(fig, "trainset counts per label")


def plot_history(history: Mapping[str, Sequence[float]]) -> str | None:
    """One panel per metric (loss, accuracy, …): training and, if recorded, validation (``val_<metric>``) per epoch."""
    def clean(v: Any) -> np.ndarray:
        return np.array([np.nan if x is None else float(x) for x in v], dtype=float)

    bases = [k for k in history if not k.startswith("val_") and k not in ("lr", "learning_rate")]
    bases += [k[4:] for k in history if k.startswith("val_") and k[4:] not in history]
    bases = [b for b in bases if len(history.get(b, history.get(f"val_{b}", []))) > 0][:4]
    if not bases:
        return None
    fig = _new_figure(4.2 * len(bases), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(bases)))
    for ax, b in zip(axes, bases):
        for key, style, lab in ((b, "-o", "train"), (f"val_{b}", "--s", "validation")):
            if key in history and len(history[key]):
                y = clean(history[key])
                ax.plot(np.arange(1, len(y) + 1), y, style, ms=3, label=lab)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(b, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _img(fig, "training curves")


def plot_confusion(cm: np.ndarray, classes: Sequence[str], groups: Sequence[str]) -> str:
    """Row-normalised heatmap (rows = true), classes grouped by kind with separating lines; counts written in."""
    n = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    size = min(14.0, max(4.5, 0.42 * n + 2))
    fig = _new_figure(size + 1, size)
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(np.arange(n), classes, rotation=90, fontsize=7)
    ax.set_yticks(np.arange(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(1, n):
        if groups[i] != groups[i - 1]:
            ax.axhline(i - 0.5, color="k", lw=1)
            ax.axvline(i - 0.5, color="k", lw=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.7, label="fraction of true class")
    ax.set_title("validation confusion matrix (row-normalised)", fontsize=10)
    return _img(fig, "confusion matrix")


# --------------------------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------------------------


class _Html(str):
    """A string that is already HTML (not escaped again by :func:`_cell`)."""


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return bool(isinstance(v, (float, np.floating)) and math.isnan(v))
    except TypeError:
        return False


def _cell(v: Any, missing: str = "—") -> str:
    if isinstance(v, _Html):
        return v
    if _is_missing(v):
        return missing
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}".replace(",", "\u2009")
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "", row_classes: Sequence[str] = ()) -> str:
    out = [f'<table class="{cls}">' if cls else "<table>", "<thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        rc = row_classes[i] if i < len(row_classes) and row_classes[i] else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        out += [f"<td>{_cell(v)}</td>" for v in row]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv_table(items: Iterable[tuple[str, Any]]) -> str:
    return _table(("", ""), ((_Html(f"<b>{html.escape(k)}</b>"), v) for k, v in items), cls="kv")


def _note(text: str, kind: str = "note") -> str:
    return f'<div class="{kind}">{text}</div>'


def _pct(x: Any) -> str:
    return fmt_pct(None if _is_missing(x) else float(x))


def _rate_rows(items: Iterable[tuple[str, str, tuple[Rate, Rate]]]) -> list[list[Any]]:
    return [[name, definition, r[0].format(), r[1].format()] for name, definition, r in items]


_RATE_HEADER = ("rate", "definition", "per tracklet (n, exact 95 % CI)", "frame-weighted (n, 95 % CI)")


def _fmt_param(v: Any) -> Any:
    if _is_missing(v):
        return "not available"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return v


def _short_len(params: Mapping[str, Any] | None) -> float | None:
    for key in SHORT_LEN_KEYS:
        v = (params or {}).get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not _is_missing(v):
            return float(v)
    return None


def _summary_section(session: SessionResult, summary: pd.DataFrame, tt: pd.DataFrame,
                     params: Mapping[str, Any] | None) -> str:
    kinds_shown = [k for k in KINDS if k in (KIND_ID, KIND_NONANT, KIND_MULTI, KIND_UNKNOWN)
                   or summary[f"tracklets_{KIND_SLUG[k]}"].fillna(0).sum() > 0]
    header = ["movie", "status", "tracklets", "frames"]
    for k in kinds_shown:
        header += [f"{k} tracklets", f"{k} frames"]
    header += ["assignment rate (frames)", "assignment rate (tracklets)"]

    def row(r: Mapping[str, Any], movie: Any, status: Any) -> list[Any]:
        cells = [movie, status, r["tracklets"], r["frames"]]
        for k in kinds_shown:
            cells += [r[f"tracklets_{KIND_SLUG[k]}"], r[f"frames_{KIND_SLUG[k]}"]]
        return cells + [_pct(r["assignment_rate"]), _pct(r["assignment_rate_tracklets"])]

    rows = [row(r, r["movie"], r["status"]) for r in summary.to_dict("records")]
    classes = [("bad" if s in ("failed", "missing") else "warn" if s == "empty" else "") for s in summary.status]
    if len(summary):
        rows.append(row(summary_totals(summary), _Html("<b>all</b>"), ""))
        classes.append("total")
    parts = [_table(header, rows, cls="num", row_classes=classes)]
    failed = summary[summary.status.isin(["failed", "missing"])]
    if len(failed):
        items = "".join(f"<li>movie {int(r.movie)} ({html.escape(r.status)}): <code>{html.escape(str(r.error))}"
                        f"</code></li>" for r in failed.itertuples())
        parts.append(_note(f"<b>{len(failed)} movie(s) without classification:</b><ul>{items}</ul>", "bad"))
    empty = summary[summary.status == "empty"]
    if len(empty):
        parts.append(_note("autoids file without rows for movie(s) " + ", ".join(str(m) for m in empty.movie)
                           + " — anTraX's MATLAB reader stops at such a file (spec §11).", "warn"))
    unlisted = sorted(tt.label[tt.kind == KIND_UNLISTED].unique())
    if unlisted:
        parts.append(_note("labels in no labels.csv category (classifier and labels.csv out of sync?): "
                           + ", ".join(f"<code>{html.escape(u)}</code>" for u in unlisted), "warn"))
    if tt.empty:
        parts.append(_note("no classified tracklet in this session: no plots."))
        return "".join(parts)
    parts.append(plot_label_distribution(tt, session.labels, session.name))
    score = plot_scores(tt, session.name)
    parts.append(score if score else _note("no tracklet was given an ID: no score plot."))
    lengths = plot_lengths(tt, session.name, _short_len(params))
    if lengths:
        parts.append(lengths)
    dist = per_movie_distributions(tt)
    if len(dist):
        parts.append("<p>Per movie: tracklet length (frames) and, for ID tracklets, score ÷ frames (quartiles):</p>")
        parts.append(_table(
            ["movie", "tracklets", "length 25 %", "length median", "length 75 %", "longest", "ID tracklets",
             "ID length median", "ID score÷frames 25 %", "median", "75 %"],
            [[r.movie, r.tracklets, r.length_p25, r.length_median, r.length_p75, r.length_max, r.id_tracklets,
              r.id_length_median, r.id_conf_p25, r.id_conf_median, r.id_conf_p75] for r in dist.itertuples()],
            cls="num"))
        per_movie = plot_per_movie(tt, session.name)
        if per_movie:
            parts.append(per_movie)
    return "".join(parts)


def _truth_section(session: SessionResult, tt: pd.DataFrame) -> str:
    predicted = dict(zip(tt.tracklet, tt.label))
    frames = dict(zip(tt.tracklet, tt.frames.astype(int)))
    ts = truth_stats(predicted, frames, session.truth or {}, session.labels)
    parts = [_kv_table([("tracklets compared (classified and in the truth)", ts.n_compared),
                        ("in the truth but not classified", ts.n_truth_only),
                        ("classified but not in the truth", ts.n_predicted_only)])]
    parts.append(_table(_RATE_HEADER, _rate_rows([
        ("ID error", "given ID ≠ true ID, among true-ID tracklets given an ID", ts.id_error),
        ("assignment", "given any ID, among true-ID tracklets", ts.assignment),
        ("correct ID", "given the true ID, among true-ID tracklets", ts.correct_id),
        ("non-ID given ID", "given an ID, among tracklets whose true label is not an ID", ts.non_id_given_id),
    ])))
    kinds = [k for k in KINDS if sum(ts.crosstab[k].values()) or sum(ts.crosstab[a][k] for a in KINDS)]
    if kinds:
        parts.append("<p>Tracklets by true kind (rows) and predicted kind (columns):</p>")
        parts.append(_table(["true \\ predicted", *kinds], [[a, *(ts.crosstab[a][b] for b in kinds)] for a in kinds],
                            cls="num"))
    return "".join(parts)


def _validation_section(session: SessionResult, marks: pd.DataFrame, tt: pd.DataFrame) -> str:
    vs = validation_stats(zip(marks["mark"], marks["n_frames"]))
    parts = [_table(["mark", "meaning", "tracklets", "frames"], [
        ["correct", "ID label correct", vs.counts["correct"], vs.frames["correct"]],
        ["wrong", "ID label wrong", vs.counts["wrong"], vs.frames["wrong"]],
        ["ambig", "has an ID but should not", vs.counts["ambig"], vs.frames["ambig"]],
        ["falseneg", "called non-ant, is an ant", vs.counts["falseneg"], vs.frames["falseneg"]],
        ["trueneg", "called non-ant, is not an ant", vs.counts["trueneg"], vs.frames["trueneg"]],
        [_Html("<b>all</b>"), "", sum(vs.counts.values()), sum(vs.frames.values())],
    ], cls="num")]
    parts.append(_table(_RATE_HEADER, _rate_rows([
        ("wrong ID", "wrong / (correct + wrong)", vs.wrong_id),
        ("false positive", "ambig / (ambig + correct + wrong)", vs.false_positive),
        ("false negative", "falseneg / (falseneg + trueneg)", vs.false_negative),
    ])))
    if not tt.empty:
        kinds = tt.kind.to_numpy()
        assigned = np.isin(kinds, [KIND_ID, KIND_NONANT])
        r = rate_pair(assigned, np.ones(len(tt), bool), tt.frames.to_numpy())
        parts.append(_table(_RATE_HEADER, _rate_rows([
            ("classified (validate-app 'assigned')", "ID or non-ant label, among all classified tracklets", r)])))
    if session.review_plan is not None:
        parts.append(_review_plan_part(session.review_plan, marks))
    kind_of = dict(zip(tt.tracklet, tt.kind))
    unknown = [t for t in marks.tracklet if t not in kind_of]
    inconsistent = [t for t, m in zip(marks.tracklet, marks.mark) if t in kind_of and (
        (m in ("correct", "wrong", "ambig") and kind_of[t] != KIND_ID)
        or (m in ("falseneg", "trueneg") and kind_of[t] != KIND_NONANT))]
    if unknown:
        parts.append(_note(f"{len(unknown)} marked tracklet(s) are not in this session's autoids (e.g. "
                           f"<code>{html.escape(unknown[0])}</code>): marks from an older classification?", "warn"))
    if inconsistent:
        parts.append(_note(f"{len(inconsistent)} mark(s) do not fit the tracklet's current label kind (e.g. "
                           f"<code>{html.escape(inconsistent[0])}</code>): the classification changed since "
                           f"validation?", "warn"))
    return "".join(parts)


def _review_plan_part(plan: pd.DataFrame, marks: pd.DataFrame | None) -> str:
    """How far the random review plan is judged, and the rates over the planned tracklets only (a random sample:
    unlike marks given while browsing, these estimate the session's rates)."""
    n = len(plan)
    judged = marks[marks.tracklet.isin(set(plan.tracklet))] if marks is not None else pd.DataFrame()
    k = len(judged)
    parts = [f"<p><b>Review plan</b> (<code>classifier/review_plan.csv</code>, random, stratified by label and "
             f"length): {k} of {n} planned tracklets judged ({fmt_pct(k / n if n else None)}); "
             f"{plan['stratum'].nunique()} strata.</p>"]
    if k:
        vs = validation_stats(zip(judged["mark"], judged["n_frames"]))
        parts.append("<p>Rates over the planned tracklets only:</p>")
        parts.append(_table(_RATE_HEADER, _rate_rows([
            ("wrong ID", "wrong / (correct + wrong)", vs.wrong_id),
            ("false positive", "ambig / (ambig + correct + wrong)", vs.false_positive),
            ("false negative", "falseneg / (falseneg + trueneg)", vs.false_negative),
        ])))
        w = pd.to_numeric(plan.get("weight"), errors="coerce") if "weight" in plan.columns else None
        if w is not None and w.notna().all() and w.nunique() > 1:
            parts.append(_note("the plan is not self-weighting (strata drawn at different rates): the unweighted "
                               "rates above over-represent small strata.", "warn"))
    return "".join(parts)


def _label_next_section(session: SessionResult, top: int = 25) -> str:
    nxt = session.label_next
    if nxt is None:
        return ("<p>What to label next (<code>classifier/label_next.csv</code>, written by the <code>review</code> "
                "rule): not available.</p>")
    if nxt.empty:
        return "<p>What to label next: no candidate (no long Unknown, near-threshold or confused-pair tracklet).</p>"
    reasons = nxt["reason"].astype(str).str.split("; ").explode().value_counts()
    parts = [f"<p>{len(nxt)} tracklets whose labelled examples would help the classifier most (reasons: "
             + ", ".join(f"{html.escape(str(r))}: {int(c)}" for r, c in reasons.items())
             + "). Label them in the app (its export adds them to <code>classifier/examples/</code>); nothing is "
               "labelled automatically.</p>"]
    cols = [c for c in ("rank", "movie", "tracklet", "autoID", "n_frames", "reason", "detail") if c in nxt.columns]
    parts.append(_table(cols, nxt[cols].head(top).itertuples(index=False), cls="num"))
    if len(nxt) > top:
        parts.append(f'<p class="small">… and {len(nxt) - top} more in the file.</p>')
    return "".join(parts)


def _trainset_counts(card: ClassifierCard) -> Mapping[str, int] | None:
    """Images per label: ``training.counts`` ({label: {images, tracklets}}, what training writes) or a flat
    {label: n} under ``trainset_counts``."""
    for src in (getattr(card, "trainset_counts", None), card.training.get("trainset_counts"),
                card.metrics.get("trainset_counts"), card.training.get("counts")):
        if isinstance(src, Mapping) and src:
            out = {}
            for k, v in src.items():
                if isinstance(v, Mapping):
                    v = v.get("images", 0)
                out[str(k)] = int(v)
            return out
    return None


def _trainset_tracklets(card: ClassifierCard) -> dict[str, int]:
    src = card.training.get("counts") if isinstance(card.training, Mapping) else None
    if not isinstance(src, Mapping):
        return {}
    return {str(k): int(v["tracklets"]) for k, v in src.items() if isinstance(v, Mapping) and "tracklets" in v}


def _history(card: ClassifierCard) -> dict[str, list[float]]:
    """Training curves: ``training.history`` ({metric: [per epoch]}) or the card's ``history`` list of per-epoch
    dicts (what training writes)."""
    h = card.training.get("history") if isinstance(card.training, Mapping) else None
    if isinstance(h, Mapping) and h:
        return {str(k): list(v) for k, v in h.items()}
    rows = card.history if isinstance(card.history, list) else []
    keys = [k for r in rows if isinstance(r, Mapping) for k in r if k not in ("epoch", "seconds")]
    keys = list(dict.fromkeys(keys))
    return {k: [r.get(k) for r in rows if isinstance(r, Mapping)] for k in keys} if rows else {}


def _card_validation(card: ClassifierCard) -> tuple[Any, str, Mapping[str, Any]]:
    """(confusion matrix, what it counts, the validation metrics) in either card layout: ``metrics.confusion`` or
    ``metrics.validation.confusion_images`` / ``confusion_tracklets`` (what training writes)."""
    metrics = card.metrics if isinstance(card.metrics, Mapping) else {}
    val = metrics.get("validation") if isinstance(metrics.get("validation"), Mapping) else {}
    if val.get("confusion_images") is not None:
        return val["confusion_images"], "images", val
    if val.get("confusion_tracklets") is not None:
        return val["confusion_tracklets"], "tracklets", val
    return metrics.get("confusion"), "images", val


def _per_class_columns(metrics: Mapping[str, Any], classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-class numbers in the card's metrics, in either shape: {metric: {class: x}} or {key: {class: {metric: x}}}."""
    cols: dict[str, dict[str, Any]] = {}
    cs = set(classes)
    for key, v in metrics.items():
        if key in ("confusion", "trainset_counts") or not isinstance(v, Mapping) or not v or not set(v) <= cs:
            continue
        for cls_name, x in v.items():
            if isinstance(x, Mapping):
                for m, y in x.items():
                    if isinstance(y, (int, float)) and not isinstance(y, bool):
                        cols.setdefault(str(m), {})[cls_name] = y
            elif isinstance(x, (int, float)) and not isinstance(x, bool):
                cols.setdefault(str(key), {})[cls_name] = x
    return cols


def _card_section(card: ClassifierCard | None, labels: LabelSet | None, validation: Any = None,
                  params: Mapping[str, Any] | None = None) -> str:
    na = "not available"
    if card is None:
        return _note("No classifier card was given: model details, trainset counts, training curves and the "
                     "validation confusion matrix are not available.")
    classes = list(card.classes)
    training = card.training if isinstance(card.training, Mapping) else {}
    metrics = card.metrics if isinstance(card.metrics, Mapping) else {}
    items: list[tuple[str, Any]] = [
        ("classes", f"{len(classes)}: " + ", ".join(classes) if classes else na),
        ("architecture", card.arch), ("input size", f"{card.target_size} px"), ("background", card.background),
        ("horizontal symmetry", card.hsymmetry),
        ("trainset hash", card.trainset_hash or na),
        ("preprocessing", json.dumps(card.preprocessing, sort_keys=True, default=str) if card.preprocessing else na),
    ]
    items += [(f"training: {k}", _fmt_param(v)) for k, v in training.items()
              if k not in ("history", "trainset_counts", "previous_runs") and not isinstance(v, Mapping)]
    if training.get("previous_runs"):
        items.append(("training: earlier runs continued", len(training["previous_runs"])))
    items += [(f"metric: {k}", _fmt_param(v)) for k, v in metrics.items()
              if k not in ("confusion", "trainset_counts") and not isinstance(v, (Mapping, list, tuple))]
    conf, conf_unit, val = _card_validation(card)
    items += [(f"validation: {k}", fmt_pct(v) if "accuracy" in k and isinstance(v, (int, float)) else _fmt_param(v))
              for k, v in val.items()
              if not k.startswith("confusion") and not isinstance(v, (Mapping, list, tuple))]
    parts = [_kv_table(items)]

    parts.append("<h3>Trainset</h3>")
    counts = _trainset_counts(card)
    if counts:
        vals = np.array(list(counts.values()))
        pos = vals[vals > 0]
        lo_lab = min(counts, key=counts.get)
        hi_lab = max(counts, key=counts.get)
        ratio = f"{vals.max() / pos.min():.1f}" if len(pos) else na
        parts.append(f"<p>{int(vals.sum())} images in {len(counts)} labels; largest/smallest = {ratio} "
                     f"({html.escape(hi_lab)}: {counts[hi_lab]}, {html.escape(lo_lab)}: {counts[lo_lab]}).</p>")
        trk = _trainset_tracklets(card)
        if trk:
            parts.append(_table(["label", "images", "tracklets"], [[k, counts.get(k, 0), trk.get(k)] for k in counts],
                                cls="num"))
        missing = [c for c in classes if c not in counts or counts[c] == 0]
        if missing:
            parts.append(_note("classes without training images: " + html.escape(", ".join(missing)), "warn"))
        parts.append(plot_trainset_counts(counts, labels))
    else:
        parts.append(f"<p>Trainset counts per label: {na}.</p>")

    parts.append("<h3>Training curves</h3>")
    history = _history(card)
    plot = plot_history(history) if history else None
    parts.append(plot or f"<p>Training history: {na}.</p>")

    parts.append("<h3>Validation confusion matrix</h3>")
    if val.get("split") == "tracklet" or val.get("val_tracklets") is not None:
        parts.append(f"<p>Held-out split grouped by tracklet (seed {html.escape(str(val.get('seed', na)))}, "
                     f"val_fraction {html.escape(str(val.get('val_fraction', na)))}): frames of one tracklet never "
                     f"appear in both training and validation.</p>")
    cm = None
    if conf is not None:
        try:
            cm = np.asarray(conf, dtype=float)
        except (TypeError, ValueError):
            cm = None
        if cm is None or cm.ndim != 2 or cm.shape != (len(classes), len(classes)):
            shape = "x".join(map(str, cm.shape)) if cm is not None else "unreadable"
            parts.append(_note(f"confusion matrix is {shape} but the card has {len(classes)} classes: not shown.",
                               "warn"))
            cm = None
    if cm is None:
        if conf is None:
            parts.append(f"<p>Confusion matrix: {na}.</p>")
    else:
        kinds = [label_kind(c, labels) for c in classes]
        order = sorted(range(len(classes)), key=lambda i: (KINDS.index(kinds[i]), i))
        cls_o = [classes[i] for i in order]
        cm_o = cm[np.ix_(order, order)]
        total = cm.sum()
        acc = float(np.trace(cm) / total) if total else None
        parts.append(f"<p>{int(total)} validation {conf_unit}; accuracy from the matrix: {fmt_pct(acc)}.</p>")
        parts.append(plot_confusion(cm_o, cls_o, [kinds[i] for i in order]))
        # grouped by kind
        ks = [k for k in KINDS if k in kinds]
        g = {a: {b: 0.0 for b in ks} for a in ks}
        for i, a in enumerate(kinds):
            for j, b in enumerate(kinds):
                g[a][b] += cm[i, j]
        parts.append(f"<p>Grouped by label kind (rows = true, columns = predicted, {conf_unit}):</p>")
        parts.append(_table(["true \\ predicted", *ks], [[a, *(int(g[a][b]) for b in ks)] for a in ks], cls="num"))
        # per class
        rows_sum, cols_sum = cm.sum(axis=1), cm.sum(axis=0)
        extra = {**_per_class_columns(metrics, classes), **_per_class_columns(val, classes)}
        if conf_unit == "images":  # the matrix already gives these
            extra = {k: v for k, v in extra.items() if k not in ("images", "image_recall")}
        extra = {k: ({c: fmt_pct(x) for c, x in v.items()} if "recall" in k or "accuracy" in k else v)
                 for k, v in extra.items()}
        header = ["class", "kind", "support", "recall", "precision", *extra]
        prow = []
        for i, c in enumerate(classes):
            rec = cm[i, i] / rows_sum[i] if rows_sum[i] else None
            prec = cm[i, i] / cols_sum[i] if cols_sum[i] else None
            prow.append([c, kinds[i], int(rows_sum[i]), fmt_pct(rec), fmt_pct(prec),
                         *(extra[m].get(c) for m in extra)])
        parts.append(_table(header, prow, cls="num"))
        ids = [c for c, k in zip(classes, kinds) if k == KIND_ID] if labels else classes
        pairs = most_confused(cm, classes, among=ids)
        parts.append("<p>Most-confused ID pairs (true → predicted):</p>")
        if pairs:
            parts.append(_table(["true", "predicted", conf_unit, "of the true class"],
                                [[a, b, n, fmt_pct(f)] for a, b, n, f in pairs], cls="num"))
        else:
            parts.append("<p>none — no ID was confused with another ID.</p>")
    if cm is None and (extra := {**_per_class_columns(metrics, classes), **_per_class_columns(val, classes)}):
        parts.append(_table(["class", *extra], [[c, *(extra[m].get(c) for m in extra)] for c in classes], cls="num"))
    parts.append(_coverage_section(validation, params))
    return "".join(parts)


#: min_conf values listed in the coverage–error table (besides the configured one).
CURVE_TABLE_THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def _coverage_section(validation: Any, params: Mapping[str, Any] | None) -> str:
    """Coverage–error curve of the tracklet rule over min_conf on held-out tracklets (``validate`` rule output)."""

    parts = ['<h3 id="coverage">Coverage–error curve of the tracklet rule</h3>']
    if validation is None:
        parts.append("<p>Classifier validation (<code>validation.h5</code> of the <code>validate</code> rule): not "
                     "available.</p>")
        return "".join(parts)
    if validation.status != STATUS_OK:
        parts.append(_note("No coverage–error curve: " + html.escape(validation.reason or validation.status)
                           + ". Judge a review plan instead (below each session) to measure the error.", "warn"))
        return "".join(parts)
    vp = validation_params(validation)
    cfg = dict(params or {})
    keys = ("use_min_conf", "min_conf", "min_conf_short", "short_length")
    conf_params = vp.with_(**{k: cfg[k] for k in keys if k in cfg and not _is_missing(cfg[k])})
    table = validation.table
    n_id = int(table.true_label.isin(validation.ids).sum())
    parts.append(f"<p>{len(table)} held-out tracklets ({n_id} with an ID as true label, "
                 f"{int(table.n_frames.sum())} example images) of the classifier's grouped validation split, "
                 f"aggregated with the <code>{html.escape(vp.method)}</code> rule; the gate is varied over "
                 f"<code>min_conf</code> with <code>min_conf_short</code> = {conf_params.min_conf_short:g} for "
                 f"tracklets with fewer than {conf_params.short_length} gate frames. Coverage = true-ID tracklets "
                 f"given an ID; error = tracklets given an ID that is not their true label. A tracklet's examples are "
                 f"the frames someone exported, often fewer than the tracklet has.</p>")
    for w in validation.meta.get("warnings", []):
        parts.append(_note(html.escape(str(w)), "warn"))
    if cfg.get("method") and cfg["method"] != vp.method:
        parts.append(_note(f"the validation was computed with method {html.escape(vp.method)} but the run uses "
                           f"{html.escape(str(cfg['method']))}: rerun the validate rule.", "warn"))
    curve = validation_curve(validation)
    configured = conf_params.min_conf if conf_params.use_min_conf else None
    plot = plot_coverage_error(curve, configured, marks=(0.5, 0.8, 0.9, 0.99))
    if plot:
        parts.append(plot)
    rows, classes = [], []
    for t in sorted(set(CURVE_TABLE_THRESHOLDS) | ({configured} if configured is not None else set())):
        op = operating_point(table, validation.ids, conf_params.with_(min_conf=float(t), use_min_conf=True))
        rows.append([f"{t:g}" + (" (configured)" if t == configured else ""), op.coverage.format(),
                     op.error.format()])
        classes.append("total" if t == configured else "")
    if not conf_params.use_min_conf:
        op = operating_point(table, validation.ids, conf_params)
        rows.append(["no gate (use_min_conf off, configured)", op.coverage.format(), op.error.format()])
        classes.append("total")
    parts.append(_table(["min_conf", "coverage (n, exact 95 % CI)", "error (n, exact 95 % CI)"], rows,
                        row_classes=classes))
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #4c72b0;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#eef1f7}table.num td{text-align:right}table.num td:first-child{text-align:left}
tr.bad td{background:#fbe3e3}tr.warn td{background:#fff5d6}tr.total td{font-weight:bold;background:#f4f4f4}
table.kv thead{display:none}
.note,.warn,.bad{padding:.5em .8em;margin:.6em 0;border-left:4px solid #4c72b0;background:#f3f6fb}
.warn{border-color:#e0a800;background:#fff8e1}.bad{border-color:#c0392b;background:#fdecea}
img{max-width:100%;display:block;margin:.6em 0}code{font-size:.92em}
.small{color:#666;font-size:.85em}
"""

_DEFINITIONS = """
<ul>
<li><b>Label kinds</b>: ID = in <code>ant_labels</code>; non-ant = in <code>noant_labels</code>; multi = named MultiAnt,
Multi or multi (recognised by name, as anTraX does); Unknown = the hard-coded "no decision" label; other = other
<code>other_labels</code>; unlisted = in no labels.csv category.</li>
<li><b>Frames</b> of a tracklet = its number of blob images (falls back to the frame span in its name).</li>
<li><b>Assignment rate</b> = frames of tracklets labelled with an ID ÷ frames of all classified tracklets that are not
non-ant (ID + multi + Unknown + other + unlisted): the share of ant-tracklet time the classifier identifies before
graph propagation. The per-tracklet version counts tracklets instead of frames. n/a when the denominator is 0.</li>
<li><b>Validation rates</b> (anTraX's validate app, spec §12): wrong ID = W/(C+W); false positive = A/(A+C+W);
false negative = FN/(FN+TN), with C, W, A, FN, TN the tracklets marked correct, wrong, ambig (should not have an ID),
falseneg (called non-ant, is an ant), trueneg. Frame-weighted: each tracklet weighted by its frames. A tracklet marked
twice counts once (last mark).</li>
<li><b>Intervals</b>: per-tracklet rates carry the exact Clopper–Pearson 95 % interval. Frames of one tracklet share
its label, so they are not independent trials; frame-weighted rates carry a Clopper–Pearson interval computed with the
Korn–Graubard effective sample size (tracklets as clusters, capped at the number of tracklets) — approximate, but not
falsely narrow. 0/0 is shown as "n/a (n = 0)".</li>
<li><b>Coverage–error curve</b> (model card): on the classifier's held-out tracklets, the tracklet rule without its
gate, then the gate at each <code>min_conf</code>: coverage = tracklets whose true label is an ID and that are given an
ID ÷ tracklets whose true label is an ID; error = tracklets given an ID other than their true label ÷ tracklets given an
ID. Intervals: exact Clopper–Pearson (tracklets).</li>
<li><b>Review plan</b>: tracklets drawn at random for judging, stratified by label × length bin with proportional
allocation, so rates over the planned tracklets estimate the session's rates; marks given while browsing need not.</li>
<li><b>Score</b> = Σ P(label) over the frames whose top class is an ID (anTraX); it grows with tracklet length and is
solve's propagation priority, so "score ÷ frames" is shown as a length-free confidence.</li>
</ul>
"""


def build_report(sessions: Sequence[SessionResult], card: ClassifierCard | None, out_html: str | Path,
                 params: Mapping[str, Any] | None = None,
                 title: str = "antrax-pipe classification report", validation: Any = None) -> Path:
    """Write the self-contained HTML validation report atomically and return its path.

    ``validation``: the classifier's held-out evaluation (:class:`antrax_pipe.io.heldout.ClassifierValidation` or
    the path of its ``validation.h5``) for the coverage–error curve; None → "not available".
    """
    if isinstance(validation, (str, Path)):

        validation = read_validation(validation)
    sessions = list(sessions)
    prepared = []
    for s in sessions:
        tt = tracklet_table(s)
        prepared.append((s, summarize_session(s), tt, marks_table(s)))

    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body: list[str] = [f"<h1>{html.escape(title)}</h1>",
                       f'<p class="small">antrax-pipe {__version__}, generated {html.escape(now)}.</p>']
    toc = ['<li><a href="#overview">Overview</a></li>', '<li><a href="#params">Thresholds in use</a></li>']
    toc += [f'<li><a href="#s{i}">{html.escape(s.name)}</a></li>' for i, (s, *_) in enumerate(prepared)]
    toc += ['<li><a href="#card">Classifier model card</a></li>', '<li><a href="#defs">Definitions</a></li>']
    body.append(f"<ul>{''.join(toc)}</ul>")

    body.append('<h2 id="overview">Overview</h2>')
    if not prepared:
        body.append(_note("No session was given."))
    else:
        rows, rcls = [], []
        for s, summary, tt, marks in prepared:
            tot = summary_totals(summary)
            nfail = int(summary.status.isin(["failed", "missing"]).sum())
            rows.append([s.experiment, s.session, len(summary), nfail, tot["tracklets"], tot["frames"],
                         _pct(tot["assignment_rate"]), _pct(tot["assignment_rate_tracklets"]),
                         "yes" if s.truth else "no", "yes" if marks is not None else "no"])
            rcls.append("bad" if nfail else "")
        body.append(_table(["experiment", "session", "movies", "failed/missing", "tracklets", "frames",
                            "assignment rate (frames)", "assignment rate (tracklets)", "ground truth",
                            "validation marks"], rows, cls="num", row_classes=rcls))

    body.append('<h2 id="params">Thresholds in use</h2>')
    if params:
        body.append(_kv_table((str(k), _fmt_param(v)) for k, v in params.items()))
    else:
        body.append("<p>Aggregation parameters: not available.</p>")

    for i, (s, summary, tt, marks) in enumerate(prepared):
        body.append(f'<h2 id="s{i}">{html.escape(s.name)}</h2>')
        body.append("<h3>Classification per movie</h3>")
        body.append(_summary_section(s, summary, tt, params))
        body.append("<h3>Against the ground truth</h3>")
        body.append(_truth_section(s, tt) if s.truth else "<p>Ground truth: not available.</p>")
        body.append("<h3>Validation marks</h3>")
        body.append(_validation_section(s, marks, tt) if marks is not None
                    else "<p>Validation marks (<code>classifier/validation.csv</code>): not available.</p>")
        if marks is None and s.review_plan is not None:
            body.append(_review_plan_part(s.review_plan, None))
        body.append("<h3>What to label next</h3>")
        body.append(_label_next_section(s))

    body.append('<h2 id="card">Classifier model card</h2>')
    body.append(_card_section(card, prepared[0][0].labels if prepared else None, validation, params))
    body.append(f'<h2 id="defs">Definitions</h2>{_DEFINITIONS}')

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    return atomic_write_text(out_html, page)
