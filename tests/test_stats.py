"""antrax_pipe.stats on its own: exact Clopper–Pearson intervals against published values and against the binomial
tails that define them, percentages and rates that never print NaN, the kind of every label, and the order of the
most-confused pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from antrax_pipe.model import LabelSet
from antrax_pipe.stats import (
    KIND_ID,
    KIND_MULTI,
    KIND_NONANT,
    KIND_OTHER,
    KIND_UNKNOWN,
    KIND_UNLISTED,
    KINDS,
    Rate,
    clopper_pearson,
    fmt_pct,
    frame_rate,
    label_kind,
    most_confused,
    tracklet_rate,
)

# ---------------------------------------------------------------------------------------------- Clopper–Pearson


@pytest.mark.parametrize("k,n,lo,hi", [
    (0, 10, 0.0, 0.3085),  # upper = 1 - 0.025^(1/10)
    (10, 10, 0.6915, 1.0),  # lower = 0.025^(1/10)
    (5, 10, 0.1871, 0.8129),
    (1, 10, 0.0025, 0.4450),
    (2, 10, 0.0252, 0.5561),
    (3, 20, 0.0321, 0.3789),
    (0, 1, 0.0, 0.975),
    (1, 1, 0.025, 1.0),
])
def test_clopper_pearson_published_values(k, n, lo, hi):
    got = clopper_pearson(k, n)
    assert got[0] == pytest.approx(lo, abs=1e-4) and got[1] == pytest.approx(hi, abs=1e-4)
    if k == 0:
        assert got[0] == 0.0  # exactly 0, not a bisection residue
    if k == n:
        assert got[1] == 1.0


def _binom_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("k,n", [(1, 7), (4, 9), (12, 40), (37, 50), (99, 100)])
@pytest.mark.parametrize("confidence", [0.95, 0.90])
def test_clopper_pearson_bounds_are_where_the_binomial_tails_equal_alpha_half(k, n, confidence):
    """The definition: at the upper bound P(X ≤ k) = α/2, at the lower bound P(X ≥ k) = α/2 (independent check,
    exact sums with math.comb, no beta function)."""
    half = (1 - confidence) / 2
    lo, hi = clopper_pearson(k, n, confidence)
    assert 0 < lo < k / n < hi < 1
    assert _binom_cdf(k, n, hi) == pytest.approx(half, abs=1e-9)
    assert 1 - _binom_cdf(k - 1, n, lo) == pytest.approx(half, abs=1e-9)


def test_clopper_pearson_confidence_level_and_effective_sizes():
    assert clopper_pearson(0, 10, confidence=0.90)[1] == pytest.approx(1 - 0.05 ** 0.1, abs=1e-10)
    narrow, wide = clopper_pearson(5, 10, 0.80), clopper_pearson(5, 10, 0.99)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]
    lo, hi = clopper_pearson(2.5, 5.0)  # non-integer (effective) sizes: symmetric around 1/2 as k = n/2
    assert lo + hi == pytest.approx(1.0, abs=1e-10)
    assert clopper_pearson(0, 0) is None
    for k, n in ((3, 2), (-1, 5), (1, -1)):
        with pytest.raises(ValueError):
            clopper_pearson(k, n)


# ---------------------------------------------------------------------------------------------- formatting


def test_fmt_pct_values_and_missing():
    assert fmt_pct(0.125) == "12.5 %"
    assert fmt_pct(0.0) == "0.0 %" and fmt_pct(1.0) == "100.0 %"
    assert fmt_pct(1 / 3, digits=2) == "33.33 %" and fmt_pct(0.5, digits=0) == "50 %"
    assert fmt_pct(None) == "n/a"
    assert fmt_pct(float("nan")) == "n/a"
    assert fmt_pct(np.float64("nan")) == "n/a"  # e.g. a 0/0 error read back from a pandas table
    assert fmt_pct(np.nan) == "n/a"


def test_rate_with_no_denominator_is_na_never_nan():
    for r in (tracklet_rate(0, 0), frame_rate([], []), frame_rate([0, 0], [0, 0])):
        assert r.n == 0 and r.value is None and r.ci is None
        assert r.format() == "n/a (n = 0)"
    for r in (tracklet_rate(0, 0), tracklet_rate(0, 7), tracklet_rate(7, 7), frame_rate([0], [0]),
              frame_rate([0, 0], [4, 6]), frame_rate([4, 6], [4, 6]), Rate(0, 0, None)):
        assert "nan" not in r.format().lower()


def test_rate_format_per_tracklet_and_frame_weighted():
    assert tracklet_rate(1, 8).format() == "12.5 % (1/8 tracklets; 95 % CI 0.3–52.7 %)"
    assert tracklet_rate(0, 10).format() == "0.0 % (0/10 tracklets; 95 % CI 0.0–30.8 %)"
    assert tracklet_rate(10, 10).format() == "100.0 % (10/10 tracklets; 95 % CI 69.2–100.0 %)"
    r = frame_rate([10, 0], [10, 30])  # 10 of 40 frames, in two tracklets
    assert r.value == 0.25 and r.unit == "frames" and r.n_units == 2
    assert r.format().startswith("25.0 % (10/40 frames in 2 tracklets; 95 % CI ")
    assert frame_rate([3], [5]).format().startswith("60.0 % (3/5 frames in 1 tracklet; ")  # singular
    # frames of a tracklet are not independent: by hand, var = 2·(7.5² + 7.5²)/40² = 0.140625, so the effective n is
    # 0.25·0.75/0.140625 = 4/3, far from 40 frames, and the interval is much wider than 10/40 independent trials
    assert r.ci == pytest.approx(clopper_pearson(0.25 * 4 / 3, 4 / 3), abs=1e-12)
    assert r.ci[1] - r.ci[0] > 2 * (tracklet_rate(10, 40).ci[1] - tracklet_rate(10, 40).ci[0])


# ---------------------------------------------------------------------------------------------- label kinds

LABELS = LabelSet({
    "ant_labels": ("BB", "PG"),
    "noant_labels": ("NoAnt",),
    "other_labels": ("Exclude", "Multi", "Unknown"),
    "tagcolors": ("B", "G", "P"),
})


@pytest.mark.parametrize("label,kind", [
    ("BB", KIND_ID),
    ("PG", KIND_ID),
    ("NoAnt", KIND_NONANT),
    ("Multi", KIND_MULTI),  # listed under other_labels, recognised as multi by name first
    ("MultiAnt", KIND_MULTI),  # multi by name even though labels.csv does not list it
    ("multi", KIND_MULTI),
    ("Unknown", KIND_UNKNOWN),
    ("Exclude", KIND_OTHER),
    ("GG", KIND_UNLISTED),  # an ID the classifier knows but labels.csv does not (docs/tracklet-rule.md#known-bugs, item 8)
    ("B", KIND_UNLISTED),  # a tag colour is not a class category
])
def test_label_kind_with_labels(label, kind):
    assert label_kind(label, LABELS) == kind
    assert kind in KINDS


def test_label_kind_without_labels_only_tells_name_based_kinds():
    assert label_kind("Multi", None) == KIND_MULTI
    assert label_kind("Unknown", None) == KIND_UNKNOWN
    assert [label_kind(x, None) for x in ("BB", "NoAnt", "Exclude")] == [KIND_UNLISTED] * 3


# ---------------------------------------------------------------------------------------------- most confused

CLASSES = ["A", "B", "C", "NoAnt"]
CM = [[10, 3, 1, 5],  # row sum 19
      [3, 8, 0, 0],  # 11
      [2, 6, 4, 0],  # 12
      [0, 1, 0, 9]]  # 10


def test_most_confused_orders_by_count_ties_row_major_and_skips_zeros():
    got = most_confused(CM, CLASSES)
    assert [(a, b, n) for a, b, n, _ in got] == [
        ("C", "B", 6), ("A", "NoAnt", 5), ("A", "B", 3), ("B", "A", 3), ("C", "A", 2), ("A", "C", 1), ("NoAnt", "B", 1)]
    fractions = {(a, b): f for a, b, _, f in got}
    assert fractions[("C", "B")] == pytest.approx(6 / 12)
    assert fractions[("A", "NoAnt")] == pytest.approx(5 / 19)  # of the whole true-class row, diagonal included
    assert fractions[("B", "A")] == pytest.approx(3 / 11)
    assert all(a != b for a, b, _, _ in got)


def test_most_confused_among_ids_and_top():
    ids = most_confused(CM, CLASSES, among=["A", "B", "C"])
    assert [(a, b) for a, b, _, _ in ids] == [("C", "B"), ("A", "B"), ("B", "A"), ("C", "A"), ("A", "C")]
    assert [(a, b) for a, b, _, _ in most_confused(CM, CLASSES, among=["A", "B", "C"], top=2)] == [("C", "B"),
                                                                                                    ("A", "B")]
    assert most_confused(np.diag([3, 4, 5, 6]), CLASSES) == []  # a perfect classifier confuses nothing
    assert isinstance(ids[0][2], int) and isinstance(ids[0][3], float)


# ------------------------------------------------------------------------------- issue 15: weights and agreement


def test_weighted_rate_with_equal_weights_is_the_exact_unweighted_rate():
    from antrax_pipe.stats import weighted_rate

    flags = [True, False, False, True, False, False, False]
    den = [True, True, True, True, True, False, True]
    for w in (1.0, 2.5, 40.0):
        r = weighted_rate(flags, den, [w] * len(flags))
        assert (r.k, r.n, r.n_eff) == (2, 6, 6.0)
        assert r.value == pytest.approx(2 / 6)
        assert r.ci == clopper_pearson(2, 6)  # exactly the interval of 2 of 6
        assert r.format() == tracklet_rate(2, 6).format()


def test_weighted_rate_hand_computed():
    from antrax_pipe.stats import weighted_rate

    # events 1, 0, 1, 0 with weights 1, 3, 2, 2 (the last one out of the denominator):
    # p = (1 + 2) / (1 + 3 + 2) = 0.5; Kish n_eff = (1 + 3 + 2)² / (1 + 9 + 4) = 36 / 14
    r = weighted_rate([True, False, True, False], [True, True, True, False], [1, 3, 2, 2])
    n_eff = 36 / 14
    assert (r.k, r.n) == (2, 3) and r.value == pytest.approx(0.5) and r.n_eff == pytest.approx(n_eff)
    lo, hi = clopper_pearson(0.5 * n_eff, n_eff)
    assert r.ci == (pytest.approx(lo), pytest.approx(hi))
    assert r.format() == f"50.0 % (2/3 tracklets, weighted: effective n 2.6; 95 % CI {100 * lo:.1f}–{100 * hi:.1f} %)"
    empty = weighted_rate([False], [False], [1.0])
    assert empty.value is None and empty.ci is None and empty.format() == "n/a (n = 0)"
    with pytest.raises(ValueError, match="weights must be finite"):
        weighted_rate([True], [True], [0.0])
    with pytest.raises(ValueError, match="not in the denominator"):
        weighted_rate([True], [False], [1.0])


def test_cohen_kappa_and_annotator_agreement_hand_computed():
    from antrax_pipe.stats import annotator_agreement, cohen_kappa

    a = ["correct", "wrong", "correct", "ambig"]
    b = ["correct", "correct", "correct", "ambig"]
    # observed 3/4; chance: correct .5 × .75 + wrong .25 × 0 + ambig .25 × .25 = .4375 → κ = .3125 / .5625
    po, kappa = cohen_kappa(a, b)
    assert po == 0.75 and kappa == pytest.approx(0.3125 / 0.5625)
    assert cohen_kappa(["correct"] * 3, ["correct"] * 3) == (1.0, None)  # chance agreement 1: kappa undefined
    assert cohen_kappa([], []) == (None, None)
    rows = [(f"t{i}", "alice", x) for i, x in enumerate(a)] + [(f"t{i}", "bob", x) for i, x in enumerate(b)]
    rows += [("t9", "carol", "wrong"), ("t0", "", "wrong")]  # carol shares no tracklet; no annotator: left out
    (ag,) = annotator_agreement(rows)
    assert (ag.first, ag.second, ag.n, ag.agree) == ("alice", "bob", 4, 3)
    assert ag.kappa == pytest.approx(kappa) and ag.percent.format().startswith("75.0 % (3/4 tracklets; 95 % CI")
