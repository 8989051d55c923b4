"""Coverage–error analysis of the tracklet rule (antrax_pipe.coverage): the ungated rule + gate equals aggregation,
the coverage–error curve and the operating point on a hand-made table, and the held-out file round trip."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from antrax_pipe.aggregation import AggregationParams, aggregate_tracklet
from antrax_pipe.model import AntraxFormatError, LabelSet
from antrax_pipe.aggregation import given_id, tracklet_decision
from antrax_pipe.coverage import validation_operating_point, validation_params, coverage_error_curve, operating_point
from antrax_pipe.io.heldout import STATUS_NO_SPLIT, STATUS_OK, ClassifierValidation, empty_table, read_validation, write_validation

LABELS = LabelSet({"ant_labels": ("A", "B"), "noant_labels": ("NoAnt",), "other_labels": ("Multi", "Unknown")})
CLASSES = ["A", "B", "Multi", "NoAnt", "Unknown"]


# ---------------------------------------------------------------------------------------------- gate = aggregation


@pytest.mark.parametrize("method", ["antrax", "mean", "vote"])
def test_ungated_decision_plus_gate_reproduces_aggregation(method):
    rng = np.random.default_rng(7)
    checked_id = checked_unknown = 0
    for i in range(300):
        n = int(rng.integers(1, 12))
        logits = rng.normal(0, 1, (n, len(CLASSES))) + rng.choice([0, 4], size=(1, len(CLASSES)))
        y = np.exp(logits * rng.uniform(0.5, 4))
        y = (y / y.sum(1, keepdims=True)).astype(np.float32)
        label, gate, n_gate = tracklet_decision(y, CLASSES, LABELS, AggregationParams(method=method))
        for c, cs, short in ((0.9, 0.99, 5), (0.6, 0.8, 3), (0.97, 0.97, 0)):
            p = AggregationParams(method=method, min_conf=c, min_conf_short=cs, short_length=short)
            want = aggregate_tracklet(y, CLASSES, LABELS, p).label
            keep = given_id([label], [gate], [n_gate], LABELS.ant_labels, c, cs, short)[0]
            got = label if (keep or label not in LABELS.ant_labels) else "Unknown"
            assert got == want, (i, method, c, y)
            checked_id += keep
            checked_unknown += (label in LABELS.ant_labels) and not keep
    assert checked_id > 20 and checked_unknown > 20  # both sides of the gate were exercised


def test_gate_is_nan_for_non_id_and_max_over_all_id_columns_for_antrax():
    noant = np.array([[0.05, 0.05, 0, 0.9, 0]] * 3, np.float32)
    assert math.isnan(tracklet_decision(noant, CLASSES, LABELS)[1])
    # ant frames: rows 0 and 1 (argmax A, B); B's sum wins? A: 0.6+0.3=0.9, B: 0.2+0.65=0.85 → A; gate = max over
    # both ID columns of ant frames = 0.65 (B's column: anTraX tests any ID, docs/tracklet-rule.md#known-bugs, item 11); n_gate = 2 ant frames
    y = np.array([[0.6, 0.2, 0, 0.2, 0], [0.3, 0.65, 0, 0.05, 0], [0.1, 0.1, 0, 0.8, 0]], np.float32)
    assert tracklet_decision(y, CLASSES, LABELS) == ("A", pytest.approx(0.65), 2)


# ---------------------------------------------------------------------------------------------- curve


def hand_table() -> pd.DataFrame:
    """Six held-out tracklets. True IDs: t1..t4 (A, A, B, B); t5 NoAnt; t6 B.

    t1 A→A gate 0.95 (10 ant frames); t2 A→B gate 0.70 (10); t3 B→B gate 0.85 (3 = short); t4 B→Unknown-by-rule
    (ungated 'Unknown', gate NaN); t5 NoAnt→A gate 0.92 (8); t6 B→B gate 0.995 (2, short).
    """
    return pd.DataFrame({
        "key": ["t1", "t2", "t3", "t4", "t5", "t6"],
        "true_label": ["A", "A", "B", "B", "NoAnt", "B"],
        "pred_label": ["A", "B", "B", "Unknown", "A", "B"],
        "gate": [0.95, 0.70, 0.85, math.nan, 0.92, 0.995],
        "n_gate": [10, 10, 3, 0, 8, 2],
        "n_frames": [10, 12, 3, 7, 8, 2],
    })


def test_coverage_error_curve_known_values():
    curve = coverage_error_curve(hand_table(), ["A", "B"], min_conf_short=0.99, short_length=5,
                                 thresholds=[0.0, 0.7, 0.8, 0.9, 0.93, 0.96, 1.0])
    got = {r.min_conf: (r.n_id, r.covered, r.given, r.wrong) for r in curve.itertuples()}
    # c = 0: given t1, t2, t5, t6 (t3 short: gate 0.85 < 0.99) → covered t1, t2, t6 = 3 of 5 true IDs; wrong t2, t5
    assert got[0.0] == (5, 3, 4, 2)
    assert got[0.7] == (5, 3, 4, 2)  # gate ≥ c keeps t2 at exactly 0.70
    assert got[0.8] == (5, 2, 3, 1)  # t2 drops
    assert got[0.9] == (5, 2, 3, 1)
    assert got[0.93] == (5, 2, 2, 0)  # t5 (0.92) drops
    assert got[0.96] == (5, 1, 1, 0)  # t1 (0.95) drops, t6 (0.995) stays
    assert got[1.0] == (5, 0, 0, 0)
    last = curve[curve.min_conf == 1.0].iloc[0]
    assert last.coverage == 0 and math.isnan(last.error)  # 0/0 error: NaN in the table, "n/a" on the page
    assert curve.loc[curve.min_conf == 0.0, "coverage"].item() == pytest.approx(0.6)
    assert curve.loc[curve.min_conf == 0.0, "error"].item() == pytest.approx(0.5)


def test_default_thresholds_include_every_gate_value_and_coverage_never_increases():
    curve = coverage_error_curve(hand_table(), ["A", "B"], 0.99, 5)
    for g in (0.70, 0.85, 0.92, 0.95, 0.995):
        assert np.isclose(curve.min_conf, g).any()
    assert (np.diff(curve.coverage.to_numpy()) <= 1e-12).all()
    assert (np.diff(curve.given.to_numpy()) <= 0).all()


def test_operating_point_with_exact_intervals_and_zero_denominator():
    op = operating_point(hand_table(), ["A", "B"], AggregationParams(min_conf=0.9, min_conf_short=0.99))
    assert (op.coverage.k, op.coverage.n) == (2, 5) and (op.error.k, op.error.n) == (1, 3)
    assert op.coverage.ci[0] == pytest.approx(0.0527, abs=5e-4) and op.coverage.ci[1] == pytest.approx(0.8534, abs=5e-4)
    op0 = operating_point(hand_table(), ["A", "B"], AggregationParams(min_conf=1.0, min_conf_short=1.0))
    assert op0.error.n == 0 and op0.error.ci is None and op0.error.format() == "n/a (n = 0)"
    off = operating_point(hand_table(), ["A", "B"], AggregationParams(use_min_conf=False))
    assert (off.coverage.k, off.error.k, off.error.n) == (4, 2, 5)  # t3 kept too: no gate at all


# ---------------------------------------------------------------------------------------------- file


def test_file_round_trip_and_errors(tmp_path):
    v = ClassifierValidation(STATUS_OK, CLASSES, ["A", "B"], hand_table(),
                             meta={"aggregate": {"min_conf": 0.8, "min_conf_short": 0.99, "short_length": 5},
                                   "warnings": ["w"]},
                             probs=np.eye(5, dtype=np.float32), offsets=np.array([0, 5]))
    p = write_validation(tmp_path / "validation.h5", v)
    r = read_validation(p)
    assert r.status == STATUS_OK and r.classes == CLASSES and r.ids == ["A", "B"] and r.meta["warnings"] == ["w"]
    pd.testing.assert_frame_equal(r.table, hand_table(), check_dtype=False)
    assert validation_params(r).min_conf == 0.8
    op = validation_operating_point(r)  # min_conf 0.8: given t1, t5 (0.92, 8 frames), t6 (short but 0.995); wrong: t5
    assert (op.error.k, op.error.n, op.coverage.k, op.coverage.n) == (1, 3, 2, 5)
    empty = ClassifierValidation(STATUS_NO_SPLIT, CLASSES, [], empty_table(), reason="no split")
    r2 = read_validation(write_validation(tmp_path / "e.h5", empty))
    assert r2.status == STATUS_NO_SPLIT and r2.reason == "no split" and r2.table.empty
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(AntraxFormatError, match="junk.h5"):
        read_validation(tmp_path / "junk.h5")
    with pytest.raises(AntraxFormatError, match="not found"):
        read_validation(tmp_path / "nope.h5")
