"""Validation report: statistics against hand-computed values, and the HTML page on small fixtures.

The fixture session (numbers worked out by hand below) has two classified movies and one failed movie:

movie 1 (frames in brackets): A t1 [10], A t2 [5], B t3 [20 images; its name spans 40 frames], NoAnt t4 [30],
Unknown t5 [15], Multi t6 [20, no image count given → from its name]. → 6 tracklets / 100 frames; ID 3 / 35;
assignment rate 35 / (100 - 30) = 50 % (frames), 3 / 5 = 60 % (tracklets).
movie 2: C u1 [40], Unknown u2 [60] → assignment 40 / 100 = 40 %, 1 / 2 = 50 %.
all: 8 / 200, ID 4 / 75, non-ant 1 / 30 → 75 / 170 = 44.1 %, 4 / 7 = 57.1 %.
"""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from antrax_pipe.io.autoids import write_autoids
from antrax_pipe.io.labels import write_labels
from antrax_pipe.model import AntraxFormatError, AutoID, ClassifierCard, Experiment, LabelSet
from antrax_pipe.io.marks import load_validation_marks
from antrax_pipe.report import build_report
from antrax_pipe.results import SessionResult, load_session_result, marks_table, summarize_session, summary_totals, write_summary_tsv
from antrax_pipe.stats import (
    beta_ppf,
    betainc,
    clopper_pearson,
    effective_n,
    frame_rate,
    label_kind,
    most_confused,
    tracklet_rate,
    truth_stats,
    validation_stats,
)

LABELS = LabelSet({
    "ant_labels": ("A", "B", "C"),
    "noant_labels": ("NoAnt",),
    "other_labels": ("Multi", "Unknown"),
    "tagcolors": ("B", "G"),
})
T1, T2, T3 = "trj_id1_ti1_1_tf1_10", "trj_id2_ti1_1_tf1_5", "trj_id3_ti1_1_tf1_40"
T4, T5, T6 = "trj_id4_ti1_1_tf1_30", "trj_id5_ti1_1_tf1_15", "trj_id6_ti1_101_tf1_120"
U1, U2 = "trj_id1_ti2_1_tf2_40", "trj_id2_ti2_1_tf2_60"
ERROR_TEXT = "images_3.mat: truncated HDF5 file"


def make_session(**kw) -> SessionResult:
    base = dict(
        experiment="exp1", session="sess", labels=LABELS,
        autoids={
            1: [AutoID(T1, "A", 9.5, 3), AutoID(T2, "A", 4.0, 1), AutoID(T3, "B", 19.0, 2), AutoID(T4, "NoAnt"),
                AutoID(T5, "Unknown"), AutoID(T6, "Multi")],
            2: [AutoID(U1, "C", 39.0, 5), AutoID(U2, "Unknown")],
        },
        n_images={1: {T1: 10, T2: 5, T3: 20, T4: 30, T5: 15}, 2: {U1: 40, U2: 60}},
        failed_movies={3: ERROR_TEXT},
        truth={T1: "A", T2: "B", T3: "B", T4: "NoAnt", T5: "A", T6: "Multi", U1: "C", U2: "NoAnt",
               "trj_id9_ti4_1_tf4_3": "A"},
        validation_marks=pd.DataFrame({
            "tracklet": [T1, T2, T3, U1, T4, T2],
            "autoID": ["A", "A", "B", "C", "NoAnt", "A"],
            "mark": ["correct", "correct", "correct", "ambig", "trueneg", "wrong"],  # T2 re-marked: last wins
            "n_frames": [10, 5, 20, 40, 30, 5],
        }),
    )
    base.update(kw)
    return SessionResult(**base)


def make_card(**kw) -> ClassifierCard:
    base = dict(
        classes=["A", "B", "C", "Multi", "NoAnt", "Unknown"], target_size=64, trainset_hash="abc123",
        training={"epochs": 3, "history": {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.5],
                                           "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.4, 0.7, 0.85]},
                  "trainset_counts": {"A": 100, "B": 300, "C": 50, "Multi": 20, "NoAnt": 500, "Unknown": 80}},
        metrics={"val_accuracy": 0.85,
                 "confusion": [[8, 2, 0, 0, 0, 0], [1, 9, 0, 0, 0, 0], [0, 3, 7, 0, 0, 0],
                               [0, 0, 0, 2, 0, 0], [0, 0, 0, 0, 5, 0], [0, 0, 0, 1, 0, 1]]},
    )
    base.update(kw)
    return ClassifierCard(**base)


def page_text(path: Path) -> str:
    """The page without its embedded PNG data (base64 can contain any letters, 'nan' included)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,…", path.read_text())


# ---------------------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("k,n,lo,hi", [(0, 10, 0.0, 0.3085), (5, 10, 0.1871, 0.8129), (10, 10, 0.6915, 1.0)])
def test_clopper_pearson_known_values(k, n, lo, hi):
    got = clopper_pearson(k, n)
    assert got is not None
    assert got[0] == pytest.approx(lo, abs=5e-5) and got[1] == pytest.approx(hi, abs=5e-5)


@pytest.mark.parametrize("n", [1, 3, 8, 50, 1000])
def test_clopper_pearson_closed_forms(n):
    # k = 0: upper = 1 - (α/2)^(1/n); k = n: lower = (α/2)^(1/n); k = 1: lower = 1 - (1 - α/2)^(1/n)
    assert clopper_pearson(0, n)[1] == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-10)
    assert clopper_pearson(n, n)[0] == pytest.approx(0.025 ** (1 / n), abs=1e-10)
    assert clopper_pearson(1, n)[0] == pytest.approx(1 - 0.975 ** (1 / n), abs=1e-10)
    # symmetry: CI(k, n) = 1 - CI(n - k, n) reversed
    k = n // 3
    lo, hi = clopper_pearson(k, n)
    lo2, hi2 = clopper_pearson(n - k, n)
    assert lo == pytest.approx(1 - hi2, abs=1e-10) and hi == pytest.approx(1 - lo2, abs=1e-10)


def test_clopper_pearson_zero_n_and_bad_input():
    assert clopper_pearson(0, 0) is None
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


def test_betainc_against_closed_forms_and_binomial_tails():
    for x in (0.01, 0.3, 0.5, 0.77, 0.999):
        assert betainc(0.5, 0.5, x) == pytest.approx(2 / math.pi * math.asin(math.sqrt(x)), abs=1e-12)
        assert betainc(1, 3.5, x) == pytest.approx(1 - (1 - x) ** 3.5, abs=1e-12)
        assert betainc(2.5, 1, x) == pytest.approx(x ** 2.5, abs=1e-12)
    # I_p(k, n-k+1) = P(Bin(n, p) >= k)
    n, p = 30, 0.37
    for k in (1, 5, 11, 20, 30):
        tail = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
        assert betainc(k, n - k + 1, p) == pytest.approx(tail, abs=1e-12)
    assert betainc(3, 4, 0.0) == 0.0 and betainc(3, 4, 1.0) == 1.0
    q = beta_ppf(0.3, 2.0, 5.0)
    assert betainc(2.0, 5.0, q) == pytest.approx(0.3, abs=1e-10)


def test_rate_formatting_never_nan():
    assert tracklet_rate(0, 0).format() == "n/a (n = 0)"
    assert frame_rate([], []).format() == "n/a (n = 0)"
    assert tracklet_rate(0, 0).value is None
    assert tracklet_rate(5, 10).format() == "50.0 % (5/10 tracklets; 95 % CI 18.7–81.3 %)"


def test_effective_n_hand_computed():
    # p = 100/160; residuals y - p w = -6.25, 37.5, -12.5, -18.75; Σ² = 1953.125
    # var = 4/3 · 1953.125 / 160² = 0.1017253; n_eff = 0.625 · 0.375 / var = 2.304
    assert effective_n([0, 100, 0, 0], [10, 100, 20, 30]) == pytest.approx(2.304, abs=1e-9)
    # equal lengths, whole tracklets right or wrong: n_eff = m - 1
    assert effective_n([0, 0, 7, 0, 7, 0], [7] * 6) == pytest.approx(5.0)
    assert effective_n([0, 0, 0], [5, 9, 2]) == 3.0  # p = 0: the number of tracklets


def test_frame_rate_interval_is_not_falsely_narrow():
    # 1 of 10 tracklets wrong, each 500 frames: frames are not 5,000 independent trials
    fr = frame_rate([500] + [0] * 9, [500] * 10)
    assert (fr.k, fr.n, fr.n_units) == (500, 5000, 10)
    naive = clopper_pearson(500, 5000)
    assert fr.ci[1] - fr.ci[0] > 5 * (naive[1] - naive[0])
    assert fr.ci == pytest.approx(clopper_pearson(0.9, 9), abs=1e-9)  # n_eff = m - 1 = 9, k_eff = 0.9
    assert fr.format().startswith("10.0 % (500/5000 frames in 10 tracklets; 95 % CI")


def test_label_kind():
    assert [label_kind(x, LABELS) for x in ("A", "NoAnt", "Multi", "Unknown", "Food")] == [
        "ID", "non-ant", "multi", "Unknown", "unlisted"]
    other = LabelSet({"ant_labels": ("A",), "other_labels": ("Unknown", "Ambig")})
    assert label_kind("Ambig", other) == "other"
    assert label_kind("MultiAnt", None) == "multi" and label_kind("A", None) == "unlisted"


def test_validation_stats_antrax_definitions():
    marks = [("correct", 10), ("wrong", 5), ("correct", 20), ("ambig", 40), ("trueneg", 30)]
    vs = validation_stats(marks)
    assert vs.counts == {"correct": 2, "wrong": 1, "ambig": 1, "falseneg": 0, "trueneg": 1}
    assert (vs.wrong_id[0].k, vs.wrong_id[0].n) == (1, 3)  # W/(C+W)
    assert (vs.wrong_id[1].k, vs.wrong_id[1].n) == (5, 35)
    assert (vs.false_positive[0].k, vs.false_positive[0].n) == (1, 4)  # A/(A+C+W)
    assert (vs.false_positive[1].k, vs.false_positive[1].n) == (40, 75)
    assert (vs.false_negative[0].k, vs.false_negative[0].n) == (0, 1)  # FN/(FN+TN)
    assert vs.wrong_id[0].ci == pytest.approx(clopper_pearson(1, 3))
    assert vs.wrong_id[0].ci[0] == pytest.approx(1 - 0.975 ** (1 / 3), abs=1e-10)
    empty = validation_stats([("correct", 3)])
    assert empty.false_negative[0].format() == "n/a (n = 0)"
    assert empty.false_negative[1].format() == "n/a (n = 0)"
    with pytest.raises(ValueError, match="unknown validation mark 'maybe'"):
        validation_stats([("maybe", 3)])


def test_truth_stats_hand_computed():
    s = make_session()
    pred = {a.tracklet: a.label for rows in s.autoids.values() for a in rows}
    frames = {T1: 10, T2: 5, T3: 20, T4: 30, T5: 15, T6: 20, U1: 40, U2: 60}
    ts = truth_stats(pred, frames, s.truth, LABELS)
    assert (ts.n_compared, ts.n_truth_only, ts.n_predicted_only) == (8, 1, 0)
    # true IDs: t1 t2 t3 t5 u1; given an ID: t1 t2 t3 u1; wrong: t2
    assert (ts.id_error[0].k, ts.id_error[0].n, ts.id_error[1].k, ts.id_error[1].n) == (1, 4, 5, 75)
    assert (ts.assignment[0].k, ts.assignment[0].n, ts.assignment[1].k, ts.assignment[1].n) == (4, 5, 75, 90)
    assert (ts.correct_id[0].k, ts.correct_id[1].k) == (3, 70)
    assert (ts.non_id_given_id[0].k, ts.non_id_given_id[0].n, ts.non_id_given_id[1].n) == (0, 3, 110)
    assert ts.crosstab["ID"]["Unknown"] == 1 and ts.crosstab["non-ant"]["Unknown"] == 1


def test_most_confused():
    cm = make_card().metrics["confusion"]
    classes = make_card().classes
    assert most_confused(cm, classes, among=["A", "B", "C"]) == [
        ("C", "B", 3, 0.3), ("A", "B", 2, 0.2), ("B", "A", 1, 0.1)]
    assert ("Unknown", "Multi", 1, 0.5) in most_confused(cm, classes)


# ---------------------------------------------------------------------------------------------------- summaries


def test_summarize_session_counts_and_rates():
    df = summarize_session(make_session())
    assert list(df.movie) == [1, 2, 3] and list(df.status) == ["ok", "ok", "failed"]
    m1, m2, m3 = (df.iloc[i] for i in range(3))
    assert (m1.tracklets, m1.frames, m1.tracklets_id, m1.frames_id) == (6, 100, 3, 35)
    assert (m1.frames_nonant, m1.frames_multi, m1.frames_unknown, m1.frames_unlisted) == (30, 20, 15, 0)
    assert m1.assignment_rate == pytest.approx(0.5) and m1.assignment_rate_tracklets == pytest.approx(0.6)
    assert m2.assignment_rate == pytest.approx(0.4) and m2.assignment_rate_tracklets == pytest.approx(0.5)
    assert m3.error == ERROR_TEXT and pd.isna(m3.tracklets) and math.isnan(m3.assignment_rate)
    tot = summary_totals(df)
    assert (tot["tracklets"], tot["frames"], tot["frames_id"]) == (8, 200, 75)
    assert tot["assignment_rate"] == pytest.approx(75 / 170)
    assert tot["assignment_rate_tracklets"] == pytest.approx(4 / 7)


def test_summarize_only_nonant_and_empty_movie_rates_undefined():
    s = make_session(autoids={1: [AutoID(T4, "NoAnt")], 2: []}, failed_movies={}, n_images={})
    df = summarize_session(s)
    assert list(df.status) == ["ok", "empty"]
    assert math.isnan(df.assignment_rate[0]) and df.tracklets[1] == 0


def test_frames_fallback_and_errors():
    s = make_session(n_images={})
    df = summarize_session(s)
    assert df.frames[0] == 120  # T3 counted from its name (40) when no image count is given
    bad = make_session(autoids={1: [AutoID("weird", "A", 1.0, 1)]}, n_images={})
    with pytest.raises(AntraxFormatError, match=r"exp1/sess, movie 1: tracklet 'weird'"):
        summarize_session(bad)


def test_marks_table_last_mark_wins_and_bad_mark():
    mt = marks_table(make_session())
    assert len(mt) == 5 and mt.set_index("tracklet").loc[T2, "mark"] == "wrong"
    rows = [{"Tracklet": T6, "autoid": "Multi", "MARK": "Ambig"}]  # case-insensitive columns, n_frames from name
    mt = marks_table(make_session(validation_marks=rows))
    assert mt.iloc[0].tolist()[:4] == [T6, "Multi", "ambig", 20]
    assert mt.iloc[0].tolist()[4:] == ["", "", ""]  # classifier_sha256, annotator, timestamp: not recorded
    with pytest.raises(AntraxFormatError, match=rf"tracklet '{T1}' is 'great'"):
        marks_table(make_session(validation_marks=[{"tracklet": T1, "mark": "great"}]))


def test_write_summary_tsv(tmp_path):
    out = write_summary_tsv([make_session()], tmp_path / "summary.tsv")
    text = out.read_text()
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    df = pd.read_csv(out, sep="\t")
    assert list(df.frames_id[:2]) == [35, 40]
    assert df.status.tolist() == ["ok", "ok", "failed"] and pd.isna(df.assignment_rate[2])


# ---------------------------------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return build_report([make_session()], make_card(), out, params={"min_conf": 0.9, "min_conf_short": 0.99,
                                                                    "short_len": 5, "multi_frac": 0.25})


def test_report_renders_everything(full_report):
    raw = full_report.read_text()
    text = page_text(full_report)
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', raw)
    assert len(imgs) == 7  # labels, scores, lengths, per movie; trainset, training curves, confusion
    assert all(base64.b64decode(d)[:8] == b"\x89PNG\r\n\x1a\n" for d in imgs)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert "<table" in text and "Classification per movie" in text
    assert ERROR_TEXT in text and "movie(s) without classification" in text
    assert "44.1 %" in text and "57.1 %" in text  # session assignment rates
    # validation marks: wrong ID 1/3, FP 1/4 (frames 40/75), FN 0/1
    assert "33.3 % (1/3 tracklets; 95 % CI 0.8–90.6 %)" in text
    assert "25.0 % (1/4 tracklets;" in text and "53.3 % (40/75 frames in 4 tracklets;" in text
    # truth: ID error 1/4 tracklets, 5/75 frames
    assert "25.0 % (1/4 tracklets;" in text and "6.7 % (5/75 frames in 4 tracklets;" in text
    # model card: imbalance, most-confused pair first, thresholds printed
    assert "largest/smallest = 25.0" in text and "min_conf_short" in text
    pairs = text[text.index("Most-confused ID pairs"):]
    assert pairs.index("<td>C</td><td>B</td><td>3</td>") < pairs.index("<td>A</td><td>B</td><td>2</td>")
    assert [p.name for p in full_report.parent.iterdir()] == ["report.html"]  # atomic: no temp left behind


def test_report_without_card_and_optional_inputs(tmp_path):
    s = make_session(truth=None, validation_marks=None, failed_movies={}, n_images={}, autoids={1: []})
    out = build_report([s], None, tmp_path / "r.html", params=None)
    text = page_text(out)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert "No classifier card was given" in text and "Ground truth: not available" in text
    assert "Validation marks (<code>classifier/validation.csv</code>): not available" in text
    assert "Aggregation parameters: not available" in text and "autoids file without rows" in text
    assert 'data:image/png;base64,' not in text  # nothing to plot
    out = build_report([], None, tmp_path / "r2.html")
    assert "No session was given" in page_text(out)


def test_report_with_sparse_card_and_zero_denominators(tmp_path):
    card = ClassifierCard(classes=["A", "B"], target_size=32,
                          metrics={"confusion": [[1, 0, 0], [0, 1, 0]], "val_accuracy": float("nan")})
    s = make_session(autoids={1: [AutoID(T4, "NoAnt"), AutoID(T5, "Food")]}, failed_movies={},
                     validation_marks=[{"tracklet": T4, "autoID": "NoAnt", "mark": "trueneg", "n_frames": 30}])
    out = build_report([s], card, tmp_path / "r.html", params={"min_conf": float("nan")})
    text = page_text(out)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert text.count("n/a (n = 0)") >= 6  # wrong ID and FP (x2), ID-based truth rates
    assert "confusion matrix is 2x3 but the card has 2 classes" in text
    assert "Trainset counts per label: not available" in text and "Training history: not available" in text
    assert "<code>Food</code>" in text  # unlisted label flagged
    assert "no tracklet was given an ID" in text


def test_load_session_result_from_files(tmp_path):
    exp = Experiment(expdir=tmp_path / "exp1", session="sess")
    write_labels(exp.labels_file, LABELS)
    exp.images_dir.mkdir(parents=True)
    with h5py.File(exp.images_dir / "images_1.mat", "w") as f:
        f.create_dataset(T1, data=np.zeros((7, 3, 4, 4), np.uint8))  # 7 images although the name spans 10
        f.create_dataset(T5, data=np.zeros((3, 4, 4), np.uint8))  # one image
    with h5py.File(exp.images_dir / "images_2.mat", "w") as f:
        f.create_dataset(U1, data=np.zeros((2, 3, 4, 4), np.uint8))
    write_autoids(exp.autoids_file(1), [AutoID(T1, "A", 6.5, 2), AutoID(T5, "Unknown")])
    exp.classdir.mkdir(parents=True)
    (exp.classdir / "validation.csv").write_text(f"tracklet,autoID,mark,n_frames\n{T1},A,correct,\n")
    s = load_session_result(exp, failed_movies={3: "boom"})
    assert (s.experiment, s.session) == ("exp1", "sess")
    assert s.n_images == {1: {T1: 7, T5: 1}, 2: {U1: 2}}
    df = summarize_session(s)
    assert df.status.tolist() == ["ok", "missing", "failed"]
    assert df.frames[0] == 8 and df.assignment_rate[0] == pytest.approx(7 / 8)
    mt = marks_table(s)
    assert mt.n_frames.tolist() == [7]  # empty n_frames filled from the image count …
    assert load_validation_marks(exp.classdir / "validation.csv").n_frames.tolist() == [10]  # … else from the name
    (exp.classdir / "bad.csv").write_text("tracklet,autoID\nx,A\n")
    with pytest.raises(AntraxFormatError, match=r"bad\.csv: validation marks have no 'mark' column"):
        load_validation_marks(exp.classdir / "bad.csv")


# ---------------------------------------------------------------------------------------------------- issue 6 parts


def test_per_movie_distributions_hand_computed():
    from antrax_pipe.report import per_movie_distributions
    from antrax_pipe.results import tracklet_table

    d = per_movie_distributions(tracklet_table(make_session())).set_index("movie")
    # movie 1 lengths 10, 5, 20, 30, 15, 20 → quartiles (numpy linear) 11.25, 17.5, 20; ID: 10, 5, 20
    assert (d.at[1, "length_p25"], d.at[1, "length_median"], d.at[1, "length_p75"]) == (11.25, 17.5, 20.0)
    assert d.at[1, "id_tracklets"] == 3 and d.at[1, "id_length_median"] == 10
    # score ÷ frames: A 9.5/10, A 4/5, B 19/20 → median 0.95
    assert d.at[1, "id_conf_median"] == pytest.approx(0.95)
    assert d.at[2, "length_max"] == 60 and d.at[2, "id_conf_median"] == pytest.approx(39 / 40)


def test_app_written_validation_csv_is_read(tmp_path):
    from antrax_pipe.io.marks import ValidationFile

    vf = ValidationFile(tmp_path / "validation.csv")
    vf.set(T1, "correct", {"movie": 1, "autoID": "A", "n_frames": 10})
    vf.set(T2, "wrong", {"movie": 1, "autoID": "A", "n_frames": 5})
    vf.set(T4, "falseneg", {"movie": 1, "autoID": "NoAnt", "n_frames": ""})  # empty n_frames → from the name
    vf.set(T1, "ambig", {"movie": 1, "autoID": "A", "n_frames": 10})  # re-marked: replaces the row
    header = (tmp_path / "validation.csv").read_text().splitlines()[0]
    # issue 15: the classifier a mark judged and its annotator are appended after the original six columns
    assert header == "tracklet,movie,autoID,mark,n_frames,timestamp,classifier_sha256,annotator"
    df = load_validation_marks(tmp_path / "validation.csv")
    assert df[["tracklet", "autoID", "mark", "n_frames"]].values.tolist() == [
        [T1, "A", "ambig", 10], [T2, "A", "wrong", 5], [T4, "NoAnt", "falseneg", 30]]


def new_layout_card() -> ClassifierCard:
    """A card as antrax_pipe.training writes it: counts per label, history as a list, metrics.validation."""
    classes = ["A", "B", "C", "Multi", "NoAnt", "Unknown"]
    cm = [[8, 2, 0, 0, 0, 0], [1, 9, 0, 0, 0, 0], [0, 3, 7, 0, 0, 0],
          [0, 0, 0, 2, 0, 0], [0, 0, 0, 0, 5, 0], [0, 0, 0, 1, 0, 1]]
    return ClassifierCard(
        classes=classes, target_size=32,
        training={"recipe": "default", "seed": 0, "val_fraction": 0.2,
                  "counts": {c: {"images": 10 * (i + 1), "tracklets": i + 1} for i, c in enumerate(classes)}},
        history=[{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.2, "val_accuracy": 0.4, "seconds": 1},
                 {"epoch": 2, "loss": 0.6, "accuracy": 0.7, "val_loss": 0.9, "val_accuracy": 0.6, "seconds": 1}],
        metrics={"validation": {"split": "tracklet", "seed": 0, "val_fraction": 0.2, "image_accuracy": 0.7,
                                "confusion_images": cm, "confusion_tracklets": cm,
                                "per_class": {"A": {"tracklet_recall": 0.5}}, "val_tracklets": ["x"]}})


def hand_validation(**kw):
    from antrax_pipe.io.heldout import STATUS_OK, ClassifierValidation

    # the hand-made table of tests/test_coverage.py: at min_conf 0.9 coverage 2/5, error 1/3
    table = pd.DataFrame({"key": ["t1", "t2", "t3", "t4", "t5", "t6"],
                          "true_label": ["A", "A", "B", "B", "NoAnt", "B"],
                          "pred_label": ["A", "B", "B", "Unknown", "A", "B"],
                          "gate": [0.95, 0.70, 0.85, math.nan, 0.92, 0.995], "n_gate": [10, 10, 3, 0, 8, 2],
                          "n_frames": [10, 12, 3, 7, 8, 2]})
    base = dict(status=STATUS_OK, classes=["A", "B", "NoAnt", "Unknown"], ids=["A", "B"], table=table,
                meta={"aggregate": {"method": "antrax", "min_conf": 0.9, "min_conf_short": 0.99, "short_length": 5},
                      "warnings": ["the trainset changed since the classifier was trained"]})
    base.update(kw)
    return ClassifierValidation(**base)


def test_report_with_training_card_layout_coverage_curve_review_plan_and_label_next(tmp_path):
    plan = pd.DataFrame({"order": [1, 2, 3], "tracklet": [T1, T3, U1], "movie": [1, 1, 2], "autoID": ["A", "B", "C"],
                         "score": [9.5, 19.0, 39.0], "n_frames": [10, 20, 40],
                         "stratum": ["A|5-19", "B|20-99", "C|20-99"], "stratum_size": [1, 1, 1],
                         "stratum_drawn": [1, 1, 1], "weight": [1.0, 1.0, 1.0]})
    nxt = pd.DataFrame({"rank": [1], "tracklet": [U2], "movie": [2], "autoID": ["Unknown"], "n_frames": [60],
                        "score": [0.0], "reason": ["long Unknown"], "priority": [60.0], "gate": [0.5],
                        "candidate": ["A"], "runner_up": ["B"], "detail": ["60 frames left Unknown"]})
    s = make_session(review_plan=plan, label_next=nxt)
    out = build_report([s], new_layout_card(), tmp_path / "r.html", validation=hand_validation(),
                       params={"method": "antrax", "min_conf": 0.9, "min_conf_short": 0.99, "short_length": 5})
    text = page_text(out)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert len(re.findall("data:image/png", text)) == 8  # + trainset, curves, confusion, coverage–error
    # model card read from the training layout
    assert "largest/smallest = 6.0" in text and "Training history: not available" not in text
    assert "validation: image_accuracy</b></td><td>70.0 %" in text
    pairs = text[text.index("Most-confused ID pairs"):]
    assert pairs.index("<td>C</td><td>B</td><td>3</td>") < pairs.index("<td>A</td><td>B</td><td>2</td>")
    # coverage–error at the configured threshold, with n and exact interval
    cov = text[text.index("Coverage–error curve of the tracklet rule"):]
    assert "0.9 (configured)</td><td>40.0 % (2/5 tracklets; 95 % CI 5.3–85.3 %)</td><td>33.3 % (1/3 tracklets;" in cov
    assert "<td>1 % " not in cov and "the trainset changed since" in cov
    # review plan: T1 (correct), T3 (correct) and U1 (ambig) of the 3 planned are judged; T2's 'wrong' is not planned
    assert "3 of 3 planned tracklets judged (100.0 %)" in text
    planned = text[text.index("Rates over the planned tracklets only"):]
    assert "0.0 % (0/2 tracklets; 95 % CI 0.0–84.2 %)" in planned  # wrong ID among planned: 0/2
    assert "33.3 % (1/3 tracklets;" in planned  # false positive: U1 ambig of 3
    assert "n/a (n = 0)" in planned  # no non-ant tracklet planned: FN 0/0
    assert "60 frames left Unknown" in text and "reasons: long Unknown: 1" in text


def test_report_coverage_section_without_split_or_file(tmp_path):
    from antrax_pipe.io.heldout import STATUS_NO_SPLIT, empty_table

    nos = hand_validation(status=STATUS_NO_SPLIT, table=empty_table(),
                          reason="the classifier was trained without a validation split (recipe antrax)")
    text = page_text(build_report([make_session()], new_layout_card(), tmp_path / "a.html", validation=nos))
    assert "No coverage–error curve: the classifier was trained without a validation split (recipe antrax)" in text
    text = page_text(build_report([make_session()], new_layout_card(), tmp_path / "b.html"))
    assert "Classifier validation (<code>validation.h5</code> of the <code>validate</code> rule): not available" in text
    assert "What to label next (<code>classifier/label_next.csv</code>" in text
    # use_min_conf off: the ungated operating point is listed too
    text = page_text(build_report([make_session()], new_layout_card(), tmp_path / "c.html",
                                  validation=hand_validation(), params={"use_min_conf": False}))
    assert "no gate (use_min_conf off, configured)</td><td>80.0 % (4/5 tracklets" in text
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_coverage_plot_stage_writes_png(tmp_path):
    from antrax_pipe.io.heldout import STATUS_NO_SPLIT, empty_table, write_validation
    from antrax_pipe.stages import coverage_plot_stage

    for name, v in (("ok", hand_validation()), ("none", hand_validation(status=STATUS_NO_SPLIT, table=empty_table(),
                                                                         reason="no split"))):
        h5 = write_validation(tmp_path / f"{name}.h5", v)
        png = coverage_plot_stage(h5, tmp_path / f"{name}.png", {"min_conf": 0.8})
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_session_result_picks_up_plan_and_label_next(tmp_path):
    from antrax_pipe.io.review_tables import write_label_next, write_review_plan
    from antrax_pipe.review import label_next, sampling_plan
    from antrax_pipe.aggregation import AggregationParams
    from antrax_pipe.results import tracklet_table

    exp = Experiment(expdir=tmp_path / "exp1", session="sess")
    write_labels(exp.labels_file, LABELS)
    write_autoids(exp.autoids_file(1), [AutoID(T1, "A", 6.5, 2), AutoID(T5, "Unknown")])
    s = load_session_result(exp, count_images=False)
    assert s.review_plan is None and s.label_next is None
    tt = tracklet_table(s)
    write_review_plan(exp.classdir / "review_plan.csv", sampling_plan(tt, 5))
    write_label_next(exp.classdir / "label_next.csv", label_next(tt, None, AggregationParams()))
    s = load_session_result(exp, count_images=False)
    assert list(s.review_plan.tracklet) == [T1] and list(s.label_next.tracklet) == [T5]
