"""The report's plots, each returned as an ``<img>`` tag holding a base64 PNG (the page needs no other file).

Plots use matplotlib's object API (``Figure`` + Agg canvas), never ``pyplot``, so no global backend or figure state is
touched. :func:`coverage_error_figure` returns the figure itself (the ``coverage_plot`` stage saves it as a PNG file).
Made to be read on a laptop screen: 150 dpi, 11–13 pt text (every plot function runs under :data:`READABLE`).
"""

from __future__ import annotations

import base64
import functools
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import matplotlib
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..model import LabelSet
from ..stats import KIND_ID, KIND_MULTI, KIND_NONANT, KIND_OTHER, KIND_UNKNOWN, KIND_UNLISTED, KINDS, label_kind

#: Colour of each label kind, the same in every plot.
KIND_COLOR: dict[str, str] = {
    KIND_ID: "#4c72b0", KIND_NONANT: "#8c8c8c", KIND_MULTI: "#dd8452", KIND_UNKNOWN: "#c44e52",
    KIND_OTHER: "#937860", KIND_UNLISTED: "#da8bc3",
}

#: Resolution of every PNG (figure sizes are in inches): sharp on a laptop screen.
_DPI = 150
#: Text sizes of every plot (points): legible when the page scales a figure down to its column.
READABLE: dict[str, Any] = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 11,
                            "ytick.labelsize": 11, "legend.fontsize": 11, "figure.titlesize": 13}


def _readable(fn):
    """Run a plot function with the :data:`READABLE` text sizes (matplotlib reads them when artists are made)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(READABLE):
            return fn(*args, **kwargs)
    return wrapper


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


@_readable
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
    axes[1].set_xticks(x, order, rotation=60, ha="right")
    axes[0].set_title(title)
    kinds_present = [k for k in KINDS if any(label_kind(lab, labels) == k for lab in order)]
    handles = [Patch(color=KIND_COLOR[k], label=k) for k in kinds_present]
    if handles:
        fig.legend(handles=handles, ncols=len(handles), loc="outside upper right")
    return _img(fig, f"label distribution, {title}")


@_readable
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
    fig.suptitle(title)
    return _img(fig, f"score distribution, {title}")


@_readable
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
    ax.legend()
    ax.set_title(title)
    return _img(fig, f"tracklet length by outcome, {title}")


@_readable
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
            ax.legend()
        ax.grid(axis="y", alpha=0.3)
    ax1.set_yscale("log")
    ax1.set_ylabel("tracklet length\n(frames)")
    ax2.set_ylabel("ID tracklets:\nscore ÷ frames")
    ax2.set_ylim(-0.02, 1.02)
    step = max(1, len(movies) // 30)
    ax2.set_xticks(x[::step], [str(m) for m in movies][::step])
    ax2.set_xlabel("movie")
    ax1.set_title(f"per movie, {title}")
    return _img(fig, f"per-movie length and score distributions, {title}")


def plot_coverage_error(curve: pd.DataFrame, configured: float | None, marks: Sequence[float] = ()) -> str | None:
    """The coverage–error figure (:func:`coverage_error_figure`) as an embedded image; None without true IDs."""
    fig = coverage_error_figure(curve, configured, marks)
    return _img(fig, "coverage-error curve over min_conf") if fig is not None else None


@_readable
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
            ax1.annotate(f"{t:g}", (row.coverage, row.error * 100), xytext=(3, 3),
                         textcoords="offset points")
    if configured is not None:
        row = c.iloc[int(np.argmin(np.abs(c.min_conf.to_numpy() - configured)))]
        if np.isfinite(row.error):
            ax1.plot([row.coverage], [row.error * 100], "*", color="#c44e52", ms=14,
                     label=f"configured min_conf {configured:g}")
            ax1.legend()
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
    ax2.legend()
    fig.suptitle("held-out tracklets: coverage and error of the tracklet rule over min_conf")
    return fig


@_readable
def plot_trainset_counts(counts: Mapping[str, int], labels: LabelSet | None) -> str:
    names = list(counts)
    values = np.array([counts[n] for n in names], dtype=float)
    fig = _new_figure(min(16.0, max(6.0, 0.38 * len(names) + 1.5)), 3.6)
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.bar(x, values, color=[KIND_COLOR[label_kind(n, labels)] if labels else "#4c72b0" for n in names])
    ax.set_xticks(x, names, rotation=60, ha="right")
    ax.set_ylabel("training images")
    if len(values) and values.max() > 0:
        ax.axhline(np.median(values), color="k", ls=":", lw=1, label=f"median {np.median(values):g}")
        ax.legend()
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("trainset images per label")
    return _img(fig, "trainset counts per label")


@_readable
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
        ax.set_title(b)
        ax.grid(alpha=0.3)
        ax.legend()
    return _img(fig, "training curves")


@_readable
def plot_confusion(cm: np.ndarray, classes: Sequence[str], groups: Sequence[str]) -> str:
    """Row-normalised heatmap (rows = true), classes grouped by kind with separating lines; counts written in."""
    n = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    size = min(14.0, max(4.5, 0.42 * n + 2))
    fig = _new_figure(size + 1, size)
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(np.arange(n), classes, rotation=90)
    ax.set_yticks(np.arange(n), classes)
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
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=9,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.7, label="fraction of true class")
    ax.set_title("validation confusion matrix (row-normalised)")
    return _img(fig, "confusion matrix")
