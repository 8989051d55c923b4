"""Statistics for the validation report: exact binomial intervals, rates with their n, and anTraX's rate definitions.

Pure functions over plain data, no scipy (not a dependency): the beta quantile that Clopper–Pearson needs is found by
bisection on the regularized incomplete beta function, evaluated with ``math.lgamma`` and Lentz's continued fraction.

Two kinds of rate are reported, because anTraX reports both:

* **per tracklet** — k of n tracklets; tracklets are the independent units, so the exact Clopper–Pearson interval
  applies directly.
* **frame-weighted** — frames of the tracklets with the event ÷ frames of all tracklets in the denominator. Every
  frame of a tracklet carries the tracklet's label (and its validation mark), so frames are *not* independent trials:
  a Clopper–Pearson interval with n = frames would be far too narrow (one 5,000-frame tracklet is one observation,
  not 5,000). The interval is therefore Clopper–Pearson with the Korn–Graubard (1998) effective sample size
  ``n_eff = p(1-p) / var(p)``, ``var`` being the cluster-robust (tracklet = cluster) variance of the ratio estimate;
  ``n_eff`` is capped at the number of tracklets, and set to it when the variance is 0 (p = 0 or 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .model import MULTI_CLASSES, UNKNOWN, LabelSet

# --------------------------------------------------------------------------------------------------------------------
# Regularized incomplete beta and its inverse
# --------------------------------------------------------------------------------------------------------------------

_EPS = 1e-15
_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) (modified Lentz); converges fast for x < (a+1)/(a+b+2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1 (= the Beta(a, b) CDF at x)."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got x={x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile of Beta(a, b): the x with I_x(a, b) = q, by bisection (the CDF is monotone, so this cannot fail)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"beta_ppf needs 0 <= q <= 1, got q={q}")
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return 0.5 * (lo + hi)


def clopper_pearson(k: float, n: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """Exact (Clopper–Pearson) two-sided interval for a binomial proportion k/n; ``None`` when n = 0.

    ``k`` and ``n`` may be non-integers (effective sample sizes); the beta quantiles are defined for real parameters.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None
    alpha = 1.0 - confidence
    lower = 0.0 if k == 0 else beta_ppf(alpha / 2, k, n - k + 1)
    upper = 1.0 if k == n else beta_ppf(1 - alpha / 2, k + 1, n - k)
    return lower, upper


# --------------------------------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------------------------------


def fmt_pct(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage; ``None``/NaN → ``n/a`` (a report must never print 'NaN %')."""
    if x is None or not math.isfinite(float(x)):  # float(): numpy scalars (float32 NaN) too
        return "n/a"
    return f"{100.0 * x:.{digits}f} %"


@dataclass(frozen=True)
class Rate:
    """A proportion k/n with its 95 % interval; ``n_units`` = tracklets behind a frame-weighted rate."""

    k: float
    n: float
    ci: tuple[float, float] | None
    unit: str = "tracklets"
    n_units: int | None = None
    method: str = "Clopper–Pearson"

    @property
    def value(self) -> float | None:
        return None if self.n == 0 else self.k / self.n

    def format(self) -> str:
        """E.g. ``12.5 % (1/8 tracklets; 95 % CI 0.3–52.7 %)`` or ``n/a (n = 0)``."""
        if self.n == 0:
            return "n/a (n = 0)"
        where = ""
        if self.n_units is not None:
            where = f" in {self.n_units} tracklet" + ("" if self.n_units == 1 else "s")
        ci = f"; 95 % CI {fmt_pct(self.ci[0])[:-2]}–{fmt_pct(self.ci[1])}" if self.ci else ""
        return f"{fmt_pct(self.value)} ({int(self.k)}/{int(self.n)} {self.unit}{where}{ci})"


def tracklet_rate(k: int, n: int, confidence: float = 0.95) -> Rate:
    """k of n tracklets, with the exact Clopper–Pearson interval (tracklets are independent units)."""
    return Rate(k=k, n=n, ci=clopper_pearson(k, n, confidence))


def effective_n(events: Sequence[float], weights: Sequence[float]) -> float:
    """Korn–Graubard effective sample size of the ratio Σevents/Σweights with one cluster per entry.

    Capped at the number of clusters (all frames of a tracklet share one outcome, so there cannot be more independent
    information than tracklets) and equal to it when the variance estimate is 0 (p = 0 or 1).
    """
    y = np.asarray(events, dtype=float)
    w = np.asarray(weights, dtype=float)
    m = len(w)
    total = w.sum()
    if m == 0 or total == 0:
        return 0.0
    p = y.sum() / total
    if m < 2:
        return float(m)
    var = m / (m - 1) * float(np.sum((y - p * w) ** 2)) / total**2
    if var <= 0 or p <= 0 or p >= 1:
        return float(m)
    return float(min(p * (1 - p) / var, m))


def frame_rate(events: Sequence[float], weights: Sequence[float], confidence: float = 0.95) -> Rate:
    """Frame-weighted rate over tracklets: ``events[i]`` = frames of tracklet i counted as the event (its length or
    0), ``weights[i]`` = its frames in the denominator. Interval: Clopper–Pearson with the effective sample size."""
    y = np.asarray(events, dtype=float)
    w = np.asarray(weights, dtype=float)
    if len(y) != len(w):
        raise ValueError(f"frame_rate: {len(y)} event counts but {len(w)} weights")
    if np.any(y < 0) or np.any(y > w):
        raise ValueError("frame_rate: every event count must be between 0 and its weight")
    k, n = float(y.sum()), float(w.sum())
    ci = None
    if n > 0:
        n_eff = effective_n(y, w)
        ci = clopper_pearson(k / n * n_eff, n_eff, confidence) if n_eff > 0 else None
    return Rate(k=k, n=n, ci=ci, unit="frames", n_units=len(w), method="Clopper–Pearson, Korn–Graubard effective n")


def rate_pair(flags: Sequence[bool], in_denominator: Sequence[bool], frames: Sequence[int]) -> tuple[Rate, Rate]:
    """(per-tracklet, frame-weighted) rate of ``flags`` among the tracklets ``in_denominator``."""
    f = np.asarray(flags, dtype=bool)
    d = np.asarray(in_denominator, dtype=bool)
    n = np.asarray(frames, dtype=float)
    if np.any(f & ~d):
        raise ValueError("rate_pair: a flagged tracklet is not in the denominator")
    return tracklet_rate(int(f.sum()), int(d.sum())), frame_rate(np.where(f, n, 0.0)[d], n[d])


# --------------------------------------------------------------------------------------------------------------------
# Label kinds
# --------------------------------------------------------------------------------------------------------------------

KIND_ID = "ID"
KIND_NONANT = "non-ant"
KIND_MULTI = "multi"
KIND_UNKNOWN = "Unknown"
KIND_OTHER = "other"
KIND_UNLISTED = "unlisted"
#: Display order. ``other`` = other_labels that are neither multi nor Unknown; ``unlisted`` = in no labels.csv category
#: (classifier and labels.csv out of sync, docs/tracklet-rule.md#known-bugs, item 8).
KINDS: tuple[str, ...] = (KIND_ID, KIND_NONANT, KIND_MULTI, KIND_UNKNOWN, KIND_OTHER, KIND_UNLISTED)


def label_kind(label: str, labels: LabelSet | None) -> str:
    """What a tracklet label means for the experiment, as anTraX's aggregation and solve read it (docs/tracklet-rule.md#label-roles).

    Multi classes are recognised by name first (anTraX does so), then ``Unknown`` by name, then labels.csv categories.
    Without a LabelSet only the name-based kinds can be told apart; the rest is ``unlisted``.
    """
    if label in MULTI_CLASSES:
        return KIND_MULTI
    if label == UNKNOWN:
        return KIND_UNKNOWN
    if labels is None:
        return KIND_UNLISTED
    if label in labels.ant_labels:
        return KIND_ID
    if label in labels.noant_labels:
        return KIND_NONANT
    if label in labels.other_labels:
        return KIND_OTHER
    return KIND_UNLISTED


# --------------------------------------------------------------------------------------------------------------------
# anTraX's validation statistics (docs/workflow.md#validation-statistics) and accuracy against a ground truth
# --------------------------------------------------------------------------------------------------------------------

MARKS: tuple[str, ...] = ("correct", "wrong", "ambig", "falseneg", "trueneg")


@dataclass(frozen=True)
class ValidationStats:
    """anTraX validate-app statistics: counts per mark and the three rates, per tracklet and frame-weighted."""

    counts: dict[str, int]
    frames: dict[str, int]
    wrong_id: tuple[Rate, Rate]
    false_positive: tuple[Rate, Rate]
    false_negative: tuple[Rate, Rate]


def validation_stats(marks: Iterable[tuple[str, int]]) -> ValidationStats:
    """From (mark, n_frames) per validated tracklet, anTraX's definitions (docs/workflow.md#validation-statistics), C/W/A/FN/TN = mark counts:

    wrong id = W/(C+W); false positive = A/(A+C+W) (an ID given to a tracklet that should have none);
    false negative = FN/(FN+TN) (a tracklet called non-ant that is an ant). Frame-weighted: the same with each tracklet
    weighted by its frames.
    """
    ms: list[str] = []
    fr: list[int] = []
    for mark, n in marks:
        if mark not in MARKS:
            raise ValueError(f"unknown validation mark {mark!r} (expected one of {', '.join(MARKS)})")
        ms.append(mark)
        fr.append(int(n))
    m = np.asarray(ms, dtype=object)
    n = np.asarray(fr, dtype=float)
    counts = {k: int(np.sum(m == k)) for k in MARKS}
    frames = {k: int(n[m == k].sum()) for k in MARKS}
    return ValidationStats(
        counts=counts,
        frames=frames,
        wrong_id=rate_pair(m == "wrong", np.isin(m, ["correct", "wrong"]), n),
        false_positive=rate_pair(m == "ambig", np.isin(m, ["correct", "wrong", "ambig"]), n),
        false_negative=rate_pair(m == "falseneg", np.isin(m, ["falseneg", "trueneg"]), n),
    )


@dataclass(frozen=True)
class TruthStats:
    """Classification against a ground truth, over the tracklets present in both (rates per tracklet, frame-weighted).

    ``crosstab`` = true kind → predicted kind → tracklets.
    """

    n_compared: int
    n_truth_only: int
    n_predicted_only: int
    id_error: tuple[Rate, Rate]
    assignment: tuple[Rate, Rate]
    correct_id: tuple[Rate, Rate]
    non_id_given_id: tuple[Rate, Rate]
    crosstab: dict[str, dict[str, int]]


def truth_stats(predicted: Mapping[str, str], frames: Mapping[str, int], truth: Mapping[str, str],
                labels: LabelSet | None) -> TruthStats:
    """Compare predicted labels (tracklet → label) with true labels over the tracklets in both.

    Definitions, T = tracklets whose true label is an ID: ID error = predicted ID ≠ true ID, among T given an ID;
    assignment = given any ID, among T; correct ID = given the true ID, among T; non-ID given ID = given an ID, among
    tracklets whose true label is not an ID.
    ``frames[t]`` weights the frame-weighted rates; every compared tracklet must have it.
    """
    common = sorted(set(predicted) & set(truth))
    missing = [t for t in common if t not in frames]
    if missing:
        raise ValueError(f"truth_stats: no frame count for tracklet(s) {', '.join(missing[:5])}")
    pk = np.array([label_kind(predicted[t], labels) for t in common], dtype=object)
    tk = np.array([label_kind(truth[t], labels) for t in common], dtype=object)
    same = np.array([predicted[t] == truth[t] for t in common], dtype=bool)
    n = np.array([frames[t] for t in common], dtype=float)
    t_id, p_id = tk == KIND_ID, pk == KIND_ID
    crosstab = {a: {b: int(np.sum((tk == a) & (pk == b))) for b in KINDS} for a in KINDS}
    return TruthStats(
        n_compared=len(common),
        n_truth_only=len(set(truth) - set(predicted)),
        n_predicted_only=len(set(predicted) - set(truth)),
        id_error=rate_pair(t_id & p_id & ~same, t_id & p_id, n),
        assignment=rate_pair(t_id & p_id, t_id, n),
        correct_id=rate_pair(t_id & p_id & same, t_id, n),
        non_id_given_id=rate_pair(~t_id & p_id, ~t_id, n),
        crosstab=crosstab,
    )


def most_confused(confusion: Sequence[Sequence[float]], classes: Sequence[str], among: Iterable[str] | None = None,
                  top: int = 10) -> list[tuple[str, str, int, float]]:
    """Largest off-diagonal cells (true, predicted, count, fraction of the true class's row), optionally only among
    the classes ``among`` (e.g. the individual IDs); zero cells are left out. Ties: row-major order."""
    cm = np.asarray(confusion, dtype=float)
    keep = set(classes) if among is None else set(among)
    rows = cm.sum(axis=1)
    cells = []
    for i, a in enumerate(classes):
        for j, b in enumerate(classes):
            if i != j and a in keep and b in keep and cm[i, j] > 0:
                cells.append((a, b, int(cm[i, j]), float(cm[i, j] / rows[i])))
    cells.sort(key=lambda c: -c[2])
    return cells[:top]


# --------------------------------------------------------------------------------------------------------------------
# Weighted estimates (a review plan's strata) and agreement between annotators
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightedRate:
    """A proportion over judged tracklets drawn with (possibly) unequal probabilities: ``value`` = Σ w·event / Σ w
    over the ``n`` tracklets in the denominator (``k`` of them with the event), with a Clopper–Pearson interval at
    the Kish effective sample size ``n_eff`` = (Σ w)² / Σ w². Equal weights give exactly k/n and the exact interval
    of k of n."""

    value: float | None
    ci: tuple[float, float] | None
    k: int
    n: int
    n_eff: float
    method: str = "Clopper–Pearson, Kish effective n"

    def format(self) -> str:
        """E.g. ``12.5 % (5/40 tracklets; 95 % CI 4.2–26.8 %)``, with the effective n when weights differ."""
        if self.n == 0 or self.value is None:
            return "n/a (n = 0)"
        eff = "" if math.isclose(self.n_eff, self.n) else f", weighted: effective n {self.n_eff:.1f}"
        ci = f"; 95 % CI {fmt_pct(self.ci[0])[:-2]}–{fmt_pct(self.ci[1])}" if self.ci else ""
        return f"{fmt_pct(self.value)} ({self.k}/{self.n} tracklets{eff}{ci})"


def weighted_rate(flags: Sequence[bool], in_denominator: Sequence[bool], weights: Sequence[float],
                  confidence: float = 0.95) -> WeightedRate:
    """Weighted rate of ``flags`` among the tracklets ``in_denominator`` (see :class:`WeightedRate`); ``weights``
    are the inverse inclusion probabilities (a review plan's ``weight`` = stratum size ÷ tracklets drawn)."""
    f = np.asarray(flags, dtype=bool)
    d = np.asarray(in_denominator, dtype=bool)
    w = np.asarray(weights, dtype=float)
    if not len(f) == len(d) == len(w):
        raise ValueError(f"weighted_rate: {len(f)} flags, {len(d)} denominator flags, {len(w)} weights")
    if np.any(f & ~d):
        raise ValueError("weighted_rate: a flagged tracklet is not in the denominator")
    if np.any(~np.isfinite(w[d])) or np.any(w[d] <= 0):
        raise ValueError("weighted_rate: weights must be finite and > 0")
    n, k = int(d.sum()), int((f & d).sum())
    if n == 0:
        return WeightedRate(None, None, 0, 0, 0.0)
    wd, yd = w[d], f[d]
    if np.all(wd == wd[0]):  # self-weighting: exactly the unweighted estimate
        return WeightedRate(k / n, clopper_pearson(k, n, confidence), k, n, float(n))
    p = float(np.sum(wd * yd) / np.sum(wd))
    n_eff = float(np.sum(wd) ** 2 / np.sum(wd**2))
    return WeightedRate(p, clopper_pearson(min(p * n_eff, n_eff), n_eff, confidence), k, n, n_eff)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> tuple[float | None, float | None]:
    """(observed agreement, Cohen's kappa) of two annotators' marks on the same tracklets (``a[i]``, ``b[i]``);
    kappa is None when undefined (chance agreement 1: both gave one and the same mark throughout), both None
    without tracklets."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} and {len(b)} marks")
    n = len(a)
    if n == 0:
        return None, None
    po = sum(x == y for x, y in zip(a, b)) / n
    cats = set(a) | set(b)
    pe = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in cats)
    return po, (None if math.isclose(pe, 1.0) else (po - pe) / (1 - pe))


@dataclass(frozen=True)
class Agreement:
    """Two annotators on the tracklets both marked: ``n`` tracklets, ``agree`` with the same mark, the percent
    agreement (with its exact interval) and Cohen's kappa (None when undefined)."""

    first: str
    second: str
    n: int
    agree: int
    percent: Rate
    kappa: float | None


def annotator_agreement(marks: Iterable[tuple[str, str, str]]) -> list[Agreement]:
    """From (tracklet, annotator, mark) rows: one :class:`Agreement` per pair of annotators who marked at least one
    tracklet in common (pairs in name order). Marks without an annotator are left out."""
    by: dict[str, dict[str, str]] = {}
    for t, who, mark in marks:
        if who:
            by.setdefault(who, {})[t] = mark
    out = []
    names = sorted(by)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            common = sorted(set(by[x]) & set(by[y]))
            if not common:
                continue
            a, b = [by[x][t] for t in common], [by[y][t] for t in common]
            agree = sum(p == q for p, q in zip(a, b))
            out.append(Agreement(x, y, len(common), agree, tracklet_rate(agree, len(common)), cohen_kappa(a, b)[1]))
    return out
