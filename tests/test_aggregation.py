"""Tracklet aggregation (docs/tracklet-rule.md#the-rule-step-by-step): every branch of anTraX's rule against hand-computed expectations, ties, the
usepassed selection, the alternatives, check_classes, and aggregate_movie on a real probabilities file.

No TensorFlow here: probabilities are written by hand (a probabilities file is plain HDF5).
"""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest

from antrax_pipe.aggregation import AggregationParams, aggregate_movie, aggregate_tracklet, check_classes
from antrax_pipe.model import ClassLabelMismatchError
from antrax_pipe.inference import PROBS_FORMAT
from antrax_pipe.io.probabilities import ProbabilitiesFile, read_probabilities
from antrax_pipe.model import AutoID, LabelSet

LABELS = LabelSet(
    {
        "ant_labels": ("A", "B", "C"),
        "noant_labels": ("Food", "NoAnt"),
        "other_labels": ("Multi", "Unknown"),
        "tagcolors": ("G", "O"),
    }
)
# sorted like a trainset's class list:   0    1    2     3       4        5        6         7
CLASSES = ["A", "B", "C", "Food", "Multi", "MultiAnt", "NoAnt", "Unknown"]
IX = {c: i for i, c in enumerate(CLASSES)}
ANTRAX = AggregationParams()


def fr(**probs: float) -> np.ndarray:
    """One frame's softmax row: the given class probabilities, the remainder spread evenly over the other classes."""
    row = np.zeros(len(CLASSES), dtype=np.float64)
    for c, p in probs.items():
        row[IX[c]] = p
    rest = [i for i in range(len(CLASSES)) if CLASSES[i] not in probs]
    row[rest] = (1.0 - sum(probs.values())) / len(rest)
    return row.astype(np.float32)


def one(label: str, p: float = 0.98) -> np.ndarray:
    return fr(**{label: p})


def Y(*rows: np.ndarray) -> np.ndarray:
    return np.stack(rows).astype(np.float32)


def agg(y, params=ANTRAX, passed=None, classes=CLASSES, labels=LABELS) -> AutoID:
    return aggregate_tracklet(y, classes, labels, params, passed=passed, tracklet="t")


def no_id(label: str) -> AutoID:
    return AutoID("t", label, 0.0, 0)


# ------------------------------------------------------------------------------------------------ step 1: all non-ant


def test_all_noant_gives_most_common_noant_label():
    assert agg(Y(one("Food"), one("NoAnt"), one("NoAnt"))) == no_id("NoAnt")


def test_all_noant_mode_tie_goes_to_earliest_frame():
    assert agg(Y(one("NoAnt"), one("Food"), one("Food"), one("NoAnt"))) == no_id("NoAnt")
    assert agg(Y(one("Food"), one("NoAnt"), one("NoAnt"), one("Food"))) == no_id("Food")


# ------------------------------------------------------------------------------------------------ step 2: multi


def test_multi_when_some_multi_and_no_ant_frame():
    # 1 multi frame of 4 (25 %, not above the fraction) but no ant frame -> multi branch, not "mode of all" (Unknown)
    assert agg(Y(one("Multi"), one("Unknown"), one("Unknown"), one("NoAnt"))) == no_id("Multi")


def test_multi_label_is_most_common_among_multi_frames_only():
    y = Y(one("MultiAnt"), one("Unknown"), one("Multi"), one("Unknown"), one("Multi"), one("Unknown"))
    assert agg(y) == no_id("Multi")  # Unknown is most common overall, Multi among multi frames (2 vs 1)
    y = Y(one("MultiAnt"), one("Multi"), one("Unknown"))
    assert agg(y) == no_id("MultiAnt")  # 1:1 tie -> earliest


def test_multi_when_more_than_a_quarter_of_frames_even_with_confident_ants():
    y = Y(*[one("A", 0.999)] * 5, one("Multi"), one("Multi"))  # 2/7 = 28.6 % > 25 %
    assert agg(y) == no_id("Multi")


def test_exactly_a_quarter_multi_is_not_multi():
    y = Y(*[one("A", 0.999)] * 6, one("Multi"), one("Multi"))  # 2/8 = 25 %, not > 25 %
    r = agg(y)
    assert r.label == "A" and r.best_frame == 1


def test_multi_fraction_parameter():
    y = Y(*[one("A", 0.999)] * 6, one("Multi"), one("Multi"))
    assert agg(y, ANTRAX.with_(multi_fraction=0.2)) == no_id("Multi")


def test_multi_recognised_by_name_even_if_not_in_labels_csv():
    # MultiAnt is in no category of LABELS; anTraX still treats it as multi (hard-coded names)
    assert agg(Y(one("MultiAnt"), one("NoAnt"))) == no_id("MultiAnt")


# ------------------------------------------------------------------------------------------------ step 3: no ant frame


def test_no_ant_frame_gives_most_common_ambiguous_label():
    assert agg(Y(one("Unknown"), one("NoAnt"), one("Unknown"), one("NoAnt"), one("Unknown"))) == no_id("Unknown")


def test_no_ant_frame_may_give_a_noant_label_as_in_antrax():
    # not all frames non-ant (step 1 fails) but no ant frame: mode of all frames, here a non-ant label
    assert agg(Y(one("NoAnt"), one("Unknown"), one("NoAnt"), one("NoAnt"))) == no_id("NoAnt")


def test_all_ambiguous_gives_mode():
    assert agg(Y(one("Unknown"), one("Unknown"))) == no_id("Unknown")


# ------------------------------------------------------------------------------------------------ step 4-6: an ID


def test_id_with_largest_summed_probability_over_ant_frames_only():
    y = Y(
        fr(A=0.60, B=0.35),  # ant frame (argmax A)
        fr(A=0.95, B=0.03),  # ant frame, highest P(A) -> best frame 2
        fr(B=0.995, A=0.004),  # ant frame (argmax B)
        fr(NoAnt=0.50, B=0.45),  # non-ant frame: ignored entirely (would make B win: 1.375 + 0.45 > 1.554)
        one("Unknown"),
    )
    r = agg(y)
    # sum A over ant frames = 0.60 + 0.95 + 0.004 = 1.554 ; sum B = 0.35 + 0.03 + 0.995 = 1.375 -> A
    assert r.label == "A"
    assert r.best_frame == 2  # 1-based
    assert r.score == pytest.approx(1.554, abs=1e-6)
    assert r.score == float(y[[0, 1, 2], IX["A"]].sum())  # the float32 sum, exactly
    assert isinstance(r.score, float)


def test_score_is_float32_sum_and_grows_with_length():
    y = Y(*[one("C", 0.97)] * 10)
    r = agg(y)
    assert r.label == "C" and r.best_frame == 1
    assert r.score == float(np.float32(y[:, IX["C"]].sum()))
    assert r.score == pytest.approx(9.7, abs=1e-5)


def test_argmax_tie_between_ids_goes_to_lowest_class_index():
    a = np.zeros(len(CLASSES), np.float32)
    b = a.copy()
    a[[IX["A"], IX["B"]]] = [0.95, 0.05]
    b[[IX["A"], IX["B"]]] = [0.05, 0.95]
    y = Y(b, a) * 1  # sums: A = B = 1.0 exactly
    r = agg(y, ANTRAX.with_(short_length=0))
    assert r.label == "A" and r.best_frame == 2
    y = Y(a[[1, 0, 2, 3, 4, 5, 6, 7]], b[[1, 0, 2, 3, 4, 5, 6, 7]])  # same with the columns swapped
    assert agg(y, ANTRAX.with_(short_length=0)).label == "A"


def test_per_frame_argmax_tie_goes_to_lowest_class_index():
    # frame with P(A) == P(NoAnt): argmax -> A (index 0), so it is an ant frame, not a non-ant frame
    y = Y(fr(A=0.5, NoAnt=0.5), one("NoAnt"))
    r = agg(y, ANTRAX.with_(use_min_conf=False))
    assert r.label == "A" and r.best_frame == 1


def test_best_frame_tie_goes_to_first_frame():
    y = Y(one("Unknown"), one("B", 0.99), one("B", 0.99), one("B", 0.97), one("B", 0.99), one("B", 0.99))
    r = agg(y)
    assert r.label == "B" and r.best_frame == 2


# ------------------------------------------------------------------------------------------------ step 5: confidence


def test_min_conf_gate():
    y = Y(*[one("A", 0.85)] * 6)
    assert agg(y) == no_id("Unknown")
    assert agg(y, ANTRAX.with_(min_conf=0.8)).label == "A"
    r = agg(y, ANTRAX.with_(use_min_conf=False))
    assert r.label == "A" and r.score == pytest.approx(5.1, abs=1e-5) and r.best_frame == 1


def test_min_conf_is_tested_over_any_id_column_not_the_chosen_one():
    # A wins on summed probability but never exceeds 0.6; one frame has P(B) = 0.95 >= min_conf -> passes (anTraX)
    y = Y(*[fr(A=0.6, B=0.35)] * 6, fr(B=0.95, A=0.04))
    r = agg(y)
    assert r.label == "A"
    assert r.best_frame == 1


def test_short_gate_counts_ant_frames_only():
    y4 = Y(*[one("A", 0.95)] * 4, one("Unknown"), one("Unknown"), one("NoAnt"))  # 7 frames, 4 ant frames
    assert agg(y4) == no_id("Unknown")  # 4 < 5 and 0.95 < 0.99
    y5 = Y(*[one("A", 0.95)] * 5, one("Unknown"))
    assert agg(y5).label == "A"  # 5 ant frames: only min_conf applies
    y4_sure = Y(*[one("A", 0.95)] * 3, one("A", 0.995), one("Unknown"))
    r = agg(y4_sure)
    assert r.label == "A" and r.best_frame == 4


def test_short_gate_parameters():
    y = Y(*[one("A", 0.95)] * 4)
    assert agg(y, ANTRAX.with_(short_length=4)).label == "A"
    assert agg(y, ANTRAX.with_(min_conf_short=0.949)).label == "A"
    # float32(0.95) is 0.94999999 < 0.95: Unknown, as anTraX on numpy 1.x decided (numpy 2 alone would compare in
    # float32 and give an ID); the gate compares Python floats, so the numpy version does not matter
    assert agg(y, ANTRAX.with_(min_conf_short=0.95)).label == "Unknown"


def test_gate_at_exactly_min_conf_does_not_depend_on_numpy():
    y = Y(*[one("A", 0.9)] * 8)  # float32(0.9) = 0.89999998
    assert agg(y, ANTRAX.with_(min_conf=0.9)).label == "Unknown"
    assert agg(y, ANTRAX.with_(min_conf=float(np.float32(0.9)))).label == "A"


def test_use_min_conf_off_accepts_weak_short_ids():
    y = Y(fr(A=0.4, B=0.3))
    r = agg(y, ANTRAX.with_(use_min_conf=False))
    assert r == AutoID("t", "A", float(np.float32(0.4)), 1)
    assert agg(y) == no_id("Unknown")


def test_one_frame_tracklet():
    assert agg(Y(one("B", 0.999))) == AutoID("t", "B", float(np.float32(0.999)), 1)
    assert agg(Y(one("NoAnt"))) == no_id("NoAnt")


def test_empty_tracklet_is_unknown():
    assert agg(np.zeros((0, len(CLASSES)), np.float32)) == no_id("Unknown")


# ------------------------------------------------------------------------------------------------ usepassed


def test_usepassed_selects_frames_and_maps_best_frame_back():
    y = Y(one("B", 0.999), one("A", 0.96), one("B", 0.999), one("A", 0.99), one("A", 0.97), one("A", 0.95),
          one("A", 0.98), one("B", 0.999))
    passed = np.array([0, 1, 0, 1, 1, 1, 1, 0], dtype=np.uint8)
    r = agg(y, ANTRAX.with_(usepassed=True), passed=passed)
    assert r.label == "A"
    assert r.best_frame == 4  # frame index 3 (0-based) of the full stack
    assert r.score == float(y[[1, 3, 4, 5, 6], IX["A"]].sum())
    # without usepassed the mask is ignored: the B frames are ant frames too and add their (small) P(A)
    r_all = agg(y, ANTRAX, passed=passed)
    assert r_all.label == "A" and r_all.best_frame == 4 and r_all.score == float(y[:, IX["A"]].sum())
    assert r_all.score > r.score


def test_usepassed_changes_the_decision():
    y = Y(one("NoAnt"), one("NoAnt"), one("NoAnt"), *[one("C", 0.999)] * 5)
    passed = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    assert agg(y, ANTRAX.with_(usepassed=True), passed=passed) == no_id("NoAnt")
    assert agg(y).label == "C"


def test_usepassed_empty_selection_and_missing_key_are_unknown():
    y = Y(*[one("A", 0.999)] * 6)
    p = ANTRAX.with_(usepassed=True)
    assert agg(y, p, passed=np.zeros(6, bool)) == no_id("Unknown")
    assert agg(y, p, passed=None) == no_id("Unknown")


def test_usepassed_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="frame_passed has 3 frames but the tracklet has 6"):
        agg(Y(*[one("A", 0.999)] * 6), ANTRAX.with_(usepassed=True), passed=np.ones(3, bool))


# ------------------------------------------------------------------------------------------------ alternatives


def test_mean_method():
    p = ANTRAX.with_(method="mean")
    y = Y(*[one("A", 0.99)] * 6)
    assert agg(y, p) == AutoID("t", "A", float(y[:, 0].sum()), 1)
    y = Y(*[one("A", 0.99)] * 5, one("NoAnt", 0.99))  # mean P(A) = 0.83 < 0.9 -> Unknown (antrax: A)
    assert agg(y, p) == no_id("Unknown")
    assert agg(y).label == "A"
    assert agg(Y(one("NoAnt"), one("NoAnt"), one("A", 0.99)), p) == no_id("NoAnt")


def test_vote_method():
    p = ANTRAX.with_(method="vote")
    y = Y(one("B", 0.97), *[one("A", 0.96)] * 5, one("B", 0.999), one("Unknown"))
    r = agg(y, p)
    assert r.label == "A" and r.best_frame == 2 and r.score == float(y[1:6, 0].sum())
    assert agg(Y(one("Unknown"), one("Unknown"), one("A", 0.999)), p) == no_id("Unknown")


# ------------------------------------------------------------------------------------------------ params


def test_params_validation_and_consv_factor():
    assert AggregationParams.from_consv_factor(0.5) == AggregationParams()
    q = AggregationParams.from_consv_factor(1.0, usepassed=True)
    assert q.min_conf == pytest.approx(0.8) and q.min_conf_short == pytest.approx(0.98) and q.usepassed
    for bad in ({"min_conf": 1.5}, {"min_conf_short": -0.1}, {"multi_fraction": "x"}, {"short_length": -1},
                {"short_length": 2.5}, {"method": "median"}, {"use_min_conf": "no"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AggregationParams(**bad)


def test_shape_error_names_tracklet():
    with pytest.raises(ValueError, match="tracklet 't'.*expected \\(n_images, 8\\)"):
        agg(np.zeros((3, 5), np.float32))


# ------------------------------------------------------------------------------------------------ agreement with anTraX


def antrax_process_predictions(y, classes, labels: dict, prm: dict):
    """A literal transcription of anTraX's ``axClassifier.process_predictions`` (Python lists, ``max(key=count)``)."""
    multi_classes = ["MultiAnt", "Multi", "multi"]
    if len(y) == 0:
        return "Unknown", 0, -1
    frame_nums = np.arange(y.shape[0])
    y_txt = [classes[ix] for ix in y.argmax(axis=1)]
    y_noant = [lab in labels["noant_labels"] for lab in y_txt]
    y_multi = [lab in multi_classes for lab in y_txt]
    y_ambig = [lab in labels["other_labels"] for lab in y_txt]
    y_ants = [lab in labels["ant_labels"] for lab in y_txt]
    if all(y_noant):
        return max(y_txt, key=y_txt.count), 0, -1
    if (any(y_multi) and not any(y_ants)) or np.mean(y_multi) > 0.25:
        t = [lab for lab in y_txt if lab in multi_classes]
        return max(t, key=t.count), 0, -1
    if all(y_ambig) or not any(y_ants):
        return max(y_txt, key=y_txt.count), 0, -1
    ant_cols = [i for i, c in enumerate(classes) if c in labels["ant_labels"]]
    y1 = y[y_ants]
    s = y1[:, ant_cols].sum(axis=0)
    if s.sum() > 0:
        s = s / s.sum()
    lix = s.argmax()
    frame_score = y1[:, ant_cols[lix]]
    score = frame_score.sum().tolist()
    label = classes[ant_cols[lix]]
    if prm["use_min_conf"]:
        if y1[:, ant_cols].max() < prm["min_conf"]:
            return "Unknown", 0, -1
        if y1.shape[0] < 5 and y1[:, ant_cols].max() < prm["min_conf_short"]:
            return "Unknown", 0, -1
    return label, score, frame_nums[y_ants][frame_score.argmax()].item()


@pytest.mark.parametrize("use_min_conf", [True, False])
def test_agrees_with_antrax_on_random_tracklets(use_min_conf):
    rng = np.random.default_rng(7)
    labels = {k: list(v) for k, v in LABELS.categories.items()}
    prm = {"use_min_conf": use_min_conf, "min_conf": 0.9, "min_conf_short": 0.99}
    params = ANTRAX.with_(use_min_conf=use_min_conf)
    branches = set()
    for _ in range(3000):
        n = int(rng.choice([1, 2, 3, 4, 5, 6, 8, 12, 30]))
        # peaky softmax rows, frames of a tracklet biased towards one class
        logits = rng.normal(0, 1, (n, len(CLASSES))) * rng.uniform(1, 8)
        logits[:, rng.integers(len(CLASSES))] += rng.uniform(0, 6)
        y = np.exp(logits - logits.max(1, keepdims=True))
        y = (y / y.sum(1, keepdims=True)).astype(np.float32)
        label, score, best = antrax_process_predictions(y, CLASSES, labels, prm)
        r = agg(y, params)
        assert (r.label, r.score, r.best_frame) == (label, float(score), best + 1), y
        branches.add(("id" if r.best_frame else r.label))
    assert {"id", "Unknown", "Multi", "MultiAnt", "NoAnt", "Food"} <= branches


# ------------------------------------------------------------------------------------------------ check_classes


def test_check_classes_accepts_matching_sets():
    check_classes(CLASSES, LABELS)  # MultiAnt: multi by name, accepted although not in labels.csv
    check_classes(["A", "B", "C", "NoAnt", "Unknown"], LABELS)


def test_check_classes_lists_every_difference():
    with pytest.raises(ClassLabelMismatchError) as ei:
        check_classes(["A", "B", "G", "NoAnt", "Zz", "Zz"], LABELS, "clf.h5 vs exp/labels.csv")
    msg = str(ei.value)
    assert "(clf.h5 vs exp/labels.csv)" in msg
    assert "duplicate classes in the classifier: ['Zz']" in msg
    assert "classifier classes in no category of labels.csv: ['G', 'Zz', 'Zz']" in msg
    assert "['G'] only as tagcolors" in msg
    assert "ID labels (ant_labels) the classifier cannot predict: ['C']" in msg


def test_check_classes_missing_ids_can_be_allowed():
    with pytest.raises(ClassLabelMismatchError, match="cannot predict: \\['B', 'C'\\]"):
        check_classes(["A", "NoAnt", "Unknown"], LABELS)
    check_classes(["A", "NoAnt", "Unknown"], LABELS, allow_missing_ids=True)


# ------------------------------------------------------------------------------------------------ aggregate_movie


def write_probs(path, tracklets: dict[str, np.ndarray], classes=CLASSES, parts=None):
    """A probabilities file in the documented layout (what inference.classify_movie writes)."""
    names = list(tracklets)
    ys = [np.asarray(tracklets[n], np.float32).reshape(-1, len(classes)) for n in names]
    offsets = np.cumsum([0] + [len(y) for y in ys]).astype(np.int64)
    with h5py.File(path, "w") as f:
        f.create_dataset("probs", data=np.concatenate(ys) if ys else np.zeros((0, len(classes)), np.float32),
                         maxshape=(None, len(classes)), chunks=(4, len(classes)))
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("tracklets", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("part", data=np.array(parts or [0] * len(names), np.int32))
        f.create_dataset("classes", data=np.array(classes, dtype=object), dtype=h5py.string_dtype())
        f.attrs["format"] = PROBS_FORMAT
        f.attrs["format_version"] = 1
        f.attrs["classifier_path"] = "/x/classifier.h5"
        f.attrs["image_files"] = json.dumps(["images_1.mat"])
    return path


MOVIE = {
    "trj_id2_ti1_10_tf1_15": Y(*[one("B", 0.985)] * 6),
    "trj_id1_ti1_1_tf1_3": Y(one("NoAnt"), one("NoAnt"), one("Food")),
    "trj_id3_ti1_20_tf1_20": np.zeros((0, len(CLASSES)), np.float32),  # empty tracklet
    "trj_id4_ti1_30_tf1_31": Y(one("Multi"), one("Unknown")),
    "trj_id5_ti1_40_tf1_48": Y(one("Unknown"), *[one("C", 0.97)] * 8),
}


def test_aggregate_movie_rows_in_file_order(tmp_path):
    pf = write_probs(tmp_path / "probs_1.h5", MOVIE)
    rows = aggregate_movie(pf, LABELS)
    assert [r.tracklet for r in rows] == list(MOVIE)
    assert rows[0] == AutoID("trj_id2_ti1_10_tf1_15", "B", float(MOVIE["trj_id2_ti1_10_tf1_15"][:, 1].sum()), 1)
    assert rows[1] == AutoID("trj_id1_ti1_1_tf1_3", "NoAnt", 0.0, 0)
    assert rows[2] == AutoID("trj_id3_ti1_20_tf1_20", "Unknown", 0.0, 0)
    assert rows[3] == AutoID("trj_id4_ti1_30_tf1_31", "Multi", 0.0, 0)
    assert rows[4].label == "C" and rows[4].best_frame == 2


def test_aggregate_movie_small_read_blocks_give_same_rows(tmp_path):
    pf = write_probs(tmp_path / "p.h5", MOVIE)
    with ProbabilitiesFile(pf, block_rows=3) as f:
        small = [(n, y.copy()) for n, y in f]
    full = list(read_probabilities(pf))
    assert [n for n, _ in small] == [n for n, _ in full] == list(MOVIE)
    for (_, a), (_, b), y in zip(small, full, MOVIE.values()):
        np.testing.assert_array_equal(a, y)
        np.testing.assert_array_equal(b, y)


def test_aggregate_movie_usepassed(tmp_path, caplog):
    pf = write_probs(tmp_path / "p.h5", MOVIE)
    passed = {
        "trj_id2_ti1_10_tf1_15": np.array([0, 0, 1, 1, 1, 1], bool),  # 4 passed frames of 0.985 -> short gate: Unknown
        "trj_id1_ti1_1_tf1_3": np.array([1, 1, 1], bool),
        "trj_id4_ti1_30_tf1_31": np.array([0, 0], bool),  # no passed frame -> Unknown
        "trj_id5_ti1_40_tf1_48": np.array([1, 0, 1, 1, 1, 1, 1, 1, 1], bool),  # trj_id3 missing (empty anyway)
    }
    p = ANTRAX.with_(usepassed=True)
    with caplog.at_level(logging.WARNING):
        rows = aggregate_movie(pf, LABELS, p, frame_passed=passed)
    assert [r.label for r in rows] == ["Unknown", "NoAnt", "Unknown", "Unknown", "C"]
    assert rows[4].best_frame == 3
    assert "1 tracklet(s) missing from frame_passed and 1 with no passed frame" in caplog.text
    with pytest.raises(ValueError, match="usepassed is on but no frame_passed"):
        aggregate_movie(pf, LABELS, p)


def test_aggregate_movie_checks_classes(tmp_path):
    pf = write_probs(tmp_path / "p.h5", MOVIE, classes=CLASSES[:-1] + ["Unkown"])
    with pytest.raises(ClassLabelMismatchError, match="\\['Unkown'\\].*\n.*" ):
        aggregate_movie(pf, LABELS)
    with pytest.raises(ClassLabelMismatchError, match="/x/classifier.h5"):
        aggregate_movie(pf, LABELS)
    rows = aggregate_movie(pf, LABELS, check=False)  # unchecked: anTraX would write the unlisted class
    assert rows[4].label == "C"


def test_aggregate_movie_empty_file(tmp_path):
    pf = write_probs(tmp_path / "p.h5", {})
    assert aggregate_movie(pf, LABELS) == []


def test_probabilities_file_errors_name_the_file(tmp_path):
    from antrax_pipe.model import AntraxFormatError

    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("probs", data=np.zeros((2, 3), np.float32))
    with pytest.raises(AntraxFormatError, match="bad.h5: not an antrax-pipe probabilities file"):
        ProbabilitiesFile(bad)
    pf = write_probs(tmp_path / "p.h5", MOVIE)
    with h5py.File(pf, "a") as f:
        f["offsets"][-1] = 99
    with pytest.raises(AntraxFormatError, match="p.h5: inconsistent probabilities file"):
        aggregate_movie(pf, LABELS)
    with pytest.raises(AntraxFormatError, match="not found"):
        ProbabilitiesFile(tmp_path / "nope.h5")
