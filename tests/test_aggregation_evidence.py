"""aggregate.method 'evidence': anTraX's rule and gates, plus the chosen ID's mean probability over ALL frames must
reach min_evidence. Hand-made probability arrays with known answers; the ungated decision + gate
(tracklet_decision / given_id, used by the coverage–error curve and the held-out evaluation) reproduces it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from antrax_pipe.aggregation import (
    DEFAULT_MIN_EVIDENCE,
    METHODS,
    AggregationParams,
    aggregate_tracklet,
    evidence_of,
    given_id,
    tracklet_decision,
)
from antrax_pipe.model import LabelSet

LABELS = LabelSet({"ant_labels": ("A", "B"), "noant_labels": ("NoAnt",), "other_labels": ("Unknown",)})
CLASSES = ["A", "B", "NoAnt", "Unknown"]
EV = AggregationParams(method="evidence")

A_SURE = [0.97, 0.01, 0.01, 0.01]
A_SOSO = [0.6, 0.2, 0.1, 0.1]
UNK = [0.02, 0.02, 0.01, 0.95]


def y_of(*rows_counts) -> np.ndarray:
    rows = []
    for row, n in rows_counts:
        rows += [row] * n
    return np.array(rows, dtype=np.float32)


def label(y, params=EV) -> str:
    return aggregate_tracklet(y, CLASSES, LABELS, params).label


def test_method_is_registered_and_default_threshold_is_validated():
    assert "evidence" in METHODS and EV.min_evidence == DEFAULT_MIN_EVIDENCE
    with pytest.raises(ValueError, match="min_evidence"):
        AggregationParams(method="evidence", min_evidence=1.5)


def test_mostly_unreadable_tracklet_is_unknown_where_antrax_assigns():
    # 40 frames Unknown, 5 confident A frames: anTraX assigns A (any confident ant frame), evidence does not
    y = y_of((UNK, 40), (A_SURE, 5))
    assert label(y, AggregationParams()) == "A"
    # mean of A over all 45 frames = (40·0.02 + 5·0.97) / 45 = 0.1256
    assert evidence_of(y, 0) == pytest.approx((40 * 0.02 + 5 * 0.97) / 45, abs=1e-6)
    assert label(y) == "Unknown"
    assert label(y, EV.with_(min_evidence=0.12)) == "A"  # a threshold below the evidence lets it through


def test_readable_tracklet_keeps_its_id_score_and_best_frame_as_antrax():
    y = y_of((A_SURE, 10), (UNK, 2))  # mean of A = (10·0.97 + 2·0.02)/12 = 0.8117 ≥ 0.7
    got, want = aggregate_tracklet(y, CLASSES, LABELS, EV), aggregate_tracklet(y, CLASSES, LABELS)
    assert got == want and got.label == "A"
    assert got.score == pytest.approx(9.7, abs=1e-5) and got.best_frame == 1


def test_threshold_is_inclusive():
    y = y_of((A_SURE, 1), (A_SOSO, 9))  # mean of A = (0.97 + 9·0.6)/10 = 0.637
    m = evidence_of(y, 0)
    assert label(y, EV.with_(min_evidence=m)) == "A"
    assert label(y, EV.with_(min_evidence=m + 1e-6)) == "Unknown"


def test_antrax_gates_still_apply():
    # every frame A at 0.6: evidence 0.6 passes min_evidence 0.5, but no frame reaches min_conf 0.9
    y = y_of((A_SOSO, 20))
    assert label(y, EV.with_(min_evidence=0.5)) == "Unknown"
    assert label(y, EV.with_(min_evidence=0.5, min_conf=0.55)) == "A"
    # short tracklet (< 5 ant frames) needs 0.99 as in anTraX
    assert label(y_of((A_SURE, 3)), EV) == "Unknown"


def test_non_id_decisions_are_antrax_s():
    for y in (y_of((UNK, 10)), y_of(([0.05, 0.05, 0.85, 0.05], 6)), y_of((UNK, 6), ([0.05, 0.05, 0.85, 0.05], 4))):
        assert aggregate_tracklet(y, CLASSES, LABELS, EV) == aggregate_tracklet(y, CLASSES, LABELS)


def test_no_gates_means_no_evidence_gate_either():
    y = y_of((UNK, 40), (A_SURE, 5))
    assert label(y, EV.with_(use_min_conf=False)) == "A"


def test_usepassed_evidence_over_passed_frames_only():
    y = y_of((UNK, 40), (A_SURE, 5))
    passed = np.r_[np.zeros(40, bool), np.ones(5, bool)]
    got = aggregate_tracklet(y, CLASSES, LABELS, EV.with_(usepassed=True), passed=passed)
    assert got.label == "A" and got.best_frame == 41


def test_tracklet_decision_gate_is_nan_when_evidence_fails():
    y = y_of((UNK, 40), (A_SURE, 5))
    lab, gate, n = tracklet_decision(y, CLASSES, LABELS, EV)
    assert lab == "A" and math.isnan(gate) and n == 5
    y = y_of((A_SURE, 10), (UNK, 2))
    assert tracklet_decision(y, CLASSES, LABELS, EV) == ("A", pytest.approx(0.97), 10)


def test_ungated_decision_plus_gate_reproduces_aggregation():
    rng = np.random.default_rng(11)
    seen = {"id": 0, "gated": 0, "evidence": 0}
    for i in range(400):
        n = int(rng.integers(1, 15))
        logits = rng.normal(0, 1, (n, len(CLASSES))) + rng.choice([0, 4], size=(n, len(CLASSES)), p=[0.7, 0.3])
        y = np.exp(logits * rng.uniform(0.5, 4))
        y = (y / y.sum(1, keepdims=True)).astype(np.float32)
        for ev in (0.3, 0.7):
            lab, gate, n_gate = tracklet_decision(y, CLASSES, LABELS, EV.with_(min_evidence=ev))
            for c, cs, short in ((0.9, 0.99, 5), (0.6, 0.8, 3), (0.0, 0.0, 0)):
                p = EV.with_(min_evidence=ev, min_conf=c, min_conf_short=cs, short_length=short)
                want = aggregate_tracklet(y, CLASSES, LABELS, p).label
                keep = given_id([lab], [gate], [n_gate], LABELS.ant_labels, c, cs, short)[0]
                got = lab if (keep or lab not in LABELS.ant_labels) else "Unknown"
                assert got == want, (i, ev, c, y)
                seen["id"] += bool(keep)
                seen["gated"] += (lab in LABELS.ant_labels) and not keep
                seen["evidence"] += (lab in LABELS.ant_labels) and math.isnan(gate)
    assert min(seen.values()) > 20, seen
