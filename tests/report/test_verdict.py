"""Issue 15, the report: a first screen per session with the verdict (assignment rate, ID error with interval and n
from current marks only, stale/current marks, ID conflicts, failed movies) and what to do next; stale marks never
counted; per-classifier marks; agreement between annotators; the review plan's weighted estimates; blob thumbnails
from real images; the model card as a short table with everything else folded away; plots at 150 dpi; no NaN.

Sessions are ``test_report``'s hand-computed fixture (``make_session``) unless said otherwise.
"""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from antrax_pipe.io.autoids import provenance_path, write_autoids
from antrax_pipe.io.experiment import load_experiment
from antrax_pipe.io.marks import ValidationFile
from antrax_pipe.io.review_tables import NEXT_COLUMNS, write_label_next
from antrax_pipe.model import AutoID, ClassifierCard
from antrax_pipe.report import build_report
from antrax_pipe.report.verdict import ErrorEstimate, decide
from antrax_pipe.results import load_session_result, mark_status, marks_table, tracklet_table
from antrax_pipe.stats import clopper_pearson, weighted_rate
from test_report import ERROR_TEXT, T1, T2, T3, T4, T5, U1, make_card, make_session, page_text

SHA_OLD, SHA_NEW = "0" * 64, "1" * 64


def first_screen(text: str) -> str:
    """The verdict block: from the top of the page to the table of contents."""
    return text[: text.index('<ul class="toc">')]


def assert_no_nan(text: str) -> None:
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def marks_df(rows: list[tuple]) -> pd.DataFrame:
    """(tracklet, autoID, mark, n_frames, classifier, annotator, timestamp) rows."""
    return pd.DataFrame(rows, columns=["tracklet", "autoID", "mark", "n_frames", "classifier_sha256", "annotator",
                                       "timestamp"])


# ------------------------------------------------------------------------------------------------ the first screen


def test_report_leads_with_the_verdict_per_session(tmp_path):
    text = page_text(build_report([make_session()], make_card(), tmp_path / "r.html"))
    assert_no_nan(text)
    top = first_screen(text)
    assert text.index('id="verdict"') < text.index('<h2 id="overview">') < text.index('<h2 id="s0">')
    assert "exp1/sess</a>: 1 movie(s) failed: fix them first" in top
    # assignment rate of the session (hand computed in test_report: 75/170 frames, 4/7 tracklets)
    assert "44.1 %" in top and "57.1 % of tracklets" in top
    # ID error from all current marks: wrong 1 of (correct 2 + wrong 1); exact interval; n
    assert "33.3 %" in top and "95 % CI 0.8–90.6 %; n = 3 judged ID tracklets; from all current marks" in top
    assert "5 current" in top and "0 stale" in top
    assert "failed movies" in top and "1 of 3" in top
    assert "--missing</code>" in top  # what to do next: re-run the failed movie first
    assert "ID conflicts" in top and "1 ID conflict(s)" in top  # T1 and T2 are both A at frames 1-5
    assert ERROR_TEXT in text  # the reason is further down


def test_stale_marks_are_not_counted_and_the_report_says_how_many(tmp_path):
    marks = marks_df([
        (T1, "A", "correct", 10, SHA_OLD, "alice", "2024-01-01T10:00:00+00:00"),  # judged the old classifier
        (T2, "A", "wrong", 5, SHA_OLD, "alice", "2024-01-01T10:01:00+00:00"),  # idem
        (T3, "B", "correct", 20, SHA_NEW, "alice", "2024-01-02T10:00:00+00:00"),
        (T5, "A", "wrong", 15, "", "alice", "2024-01-02T10:00:00+00:00"),  # T5 is Unknown now: autoID changed
        (U1, "C", "ambig", 40, "", "alice", "2024-01-02T10:00:00+00:00"),  # movie 2: classifier unknown
        (T4, "NoAnt", "trueneg", 30, SHA_NEW, "alice", "2024-01-02T10:00:00+00:00"),
    ])
    s = make_session(validation_marks=marks, classifiers={1: SHA_NEW})
    st = mark_status(s, marks_table(s), tracklet_table(s))
    assert list(st.current.tracklet) == [T3, U1, T4] and list(st.stale.tracklet) == [T1, T2, T5]
    assert "autoID is Unknown now" in st.stale.set_index("tracklet").at[T5, "reason"]
    text = page_text(build_report([s], make_card(), tmp_path / "r.html"))
    assert_no_nan(text)
    top = first_screen(text)
    assert "3 current" in top and "3 stale (re-classified since, not counted)" in top
    assert "3 marked tracklet(s) were re-classified since: re-check them" in top
    # only T3 (correct) counts for the ID error: 0 of 1
    assert "0.0 %" in top and "n = 1 judged ID tracklets" in top
    val = text[text.index("<h3>Validation marks</h3>"):]
    assert "3 marked tracklet(s) are stale</b> (3 mark(s)" in val
    assert "0.0 % (0/1 tracklets;" in val and "50.0 % (1/2 tracklets;" in val  # wrong ID 0/1, FP (U1) 1/2
    per_clf = val[val.index("Marks per classifier"):]
    assert "<code>111111111111</code></td><td>yes</td><td>2</td><td>0</td>" in per_clf
    assert "<code>000000000000</code></td><td>no</td><td>2</td><td>2</td>" in per_clf


def test_review_plan_estimates_weighted_against_a_hand_computation(tmp_path):
    plan = pd.DataFrame({"order": [1, 2, 3, 4], "tracklet": [T1, T2, T3, T4], "movie": [1, 1, 1, 1],
                         "autoID": ["A", "A", "B", "NoAnt"], "score": [9.5, 4.0, 19.0, 0.0], "n_frames": [10, 5, 20, 30],
                         "stratum": ["A|5-19", "A|5-19", "B|20-99", "NoAnt|20-99"], "stratum_size": [2, 2, 9, 4],
                         "stratum_drawn": [2, 2, 3, 4], "weight": [1.0, 1.0, 3.0, 1.0]})
    s = make_session(review_plan=plan)  # marks: T1 correct, T2 wrong (re-marked), T3 correct, T4 trueneg
    text = page_text(build_report([s], make_card(), tmp_path / "r.html"))
    assert_no_nan(text)
    # error among planned ID tracklets: wrong T2 (w 1) of T1 (1) + T2 (1) + T3 (3) → 1/5; Kish n_eff 25 / 11
    p, n_eff = 1 / 5, 25 / 11
    lo, hi = clopper_pearson(p * n_eff, n_eff)
    want = f"20.0 % (1/3 tracklets, weighted: effective n 2.3; 95 % CI {100 * lo:.1f}–{100 * hi:.1f} %)"
    assert weighted_rate([False, True, False], [True] * 3, [1, 1, 3]).format() == want
    planned = text[text.index("Rates over the planned tracklets only"):]
    assert want in planned
    assert "4 of 4 planned tracklets judged (100.0 %)" in text
    top = first_screen(text)  # the verdict takes the plan's estimate (a random sample) over the browsing marks
    assert "20.0 %" in top and f"95 % CI {100 * lo:.1f}–{100 * hi:.1f} %; n = 3 judged ID tracklets; from the review " \
                              "plan (random sample, weighted)" in top


def _est(k: int, n: int) -> ErrorEstimate:
    return ErrorEstimate(weighted_rate([i < k for i in range(n)], [True] * n, [1.0] * n), "review plan",
                         {"planned": 200, "judged": n})


@pytest.mark.parametrize("k,n,stale,level,headline,step", [
    (0, 100, 0, "ok", "Ready for anTraX solve", "Run anTraX's solve"),  # 0/100: CI up to 3.6 %
    (12, 100, 0, "warn", "ID error above 5 %: not ready for solve", "Label the top of “label next”"),
    (1, 30, 0, "warn", "ID error probably below 5 %, not yet sure", "Judge more tracklets of the review plan"),
    (0, 100, 4, "warn", "Re-check the re-classified tracklets first", "4 marked tracklet(s) were re-classified"),
])
def test_decide(k, n, stale, level, headline, step):
    v = decide(make_session(failed_movies={}), 0, _est(k, n), stale, 0)
    assert (v.level, v.headline) == (level, headline)
    assert any(step in s for s in v.steps), v.steps
    none = decide(make_session(failed_movies={}, review_plan=None), 0, ErrorEstimate(None, ""), 0, 2)
    assert none.headline == "ID error not measured yet" and "2 ID conflict(s)" in none.steps[-1]


def test_id_conflicts_are_shown_when_present(tmp_path):
    over = "trj_id7_ti1_3_tf1_12"  # frames 3-12 of movie 1 overlap T1 (1-10), both called A
    s = make_session(failed_movies={}, autoids={1: [AutoID(T1, "A", 9.5, 3), AutoID(over, "A", 8.0, 1),
                                                    AutoID(T4, "NoAnt")], 2: [AutoID(U1, "A", 39.0, 5)]})
    text = page_text(build_report([s], make_card(), tmp_path / "r.html"))
    top = first_screen(text)
    assert "ID conflicts" in top and "in 1 movie(s)" in top and "1 ID conflict(s)" in top
    assert f"<code>{T1}</code> and <code>{over}</code> (8 frames)" in text


def test_agreement_between_annotators(tmp_path):
    t0, t1 = "2024-01-01T10:00:00+00:00", "2024-01-01T11:00:00+00:00"
    marks = marks_df([(T1, "A", "correct", 10, "", "alice", t0), (T2, "A", "wrong", 5, "", "alice", t0),
                      (T3, "B", "correct", 20, "", "alice", t0), (U1, "C", "ambig", 40, "", "alice", t0),
                      (T1, "A", "correct", 10, "", "bob", t1), (T2, "A", "correct", 5, "", "bob", t1),
                      (T3, "B", "correct", 20, "", "bob", t1), (U1, "C", "ambig", 40, "", "bob", t1)])
    text = page_text(build_report([make_session(validation_marks=marks)], None, tmp_path / "r.html"))
    assert_no_nan(text)
    agree = text[text.index("Agreement between annotators"):]
    # 3 of 4 the same; kappa = (0.75 - 0.4375) / (1 - 0.4375) = 0.56 (hand computed in tests/test_stats.py)
    assert "<td>alice &amp; bob</td><td>4</td><td>75.0 % (3/4 tracklets; 95 % CI 19.4–99.4 %)</td><td>0.56</td>" \
        in agree
    # one mark per tracklet counts, the newest: bob's "correct" for T2 → no wrong ID left
    assert "4 tracklets with a current mark" in text and "by alice, bob" in first_screen(text)


# -------------------------------------------------------------------------------------------- model card and plots


def test_model_card_is_short_with_the_parameters_folded_away_and_plots_are_150_dpi(tmp_path):
    out = build_report([make_session()], make_card(), tmp_path / "r.html")
    raw, text = out.read_text(), page_text(out)
    card = text[text.index('<h2 id="card">'):]
    short = card[: card.index("<details")]
    assert "<b>classes</b></td><td>6 (3 individual IDs)" in short and "<b>validation accuracy</b>" in short
    assert "<b>trainset</b></td><td>1050 images of 6 labels" in short
    assert "training: epochs" not in short  # the full list is folded away …
    folded = card[card.index('<details class="params">'): card.index("</details>")]
    assert "All parameters of the classifier" in folded and "training: epochs" in folded  # … but there
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', raw)
    assert len(imgs) == 7
    for data in imgs:
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        assert im.info["dpi"][0] == pytest.approx(150, abs=1) and im.size[0] >= 600


# ------------------------------------------------------------------------------------------- thumbnails, real images


def test_blob_thumbnails_for_wrong_marks_confused_pairs_and_label_next(tmp_path, tiny_experiment):
    expdir = tmp_path / tiny_experiment.name
    shutil.copytree(tiny_experiment.expdir, expdir)
    exp = load_experiment(expdir, tiny_experiment.session)
    truth = tiny_experiment.truth[1]
    wrong_id = {"PB": "PG", "PG": "PB"}
    rows = [AutoID(t, wrong_id.get(lab, lab), 5.0 if lab in wrong_id else 0.0, 1 if lab in wrong_id else 0)
            for t, lab in truth.items()]
    write_autoids(exp.autoids_file(1), rows)
    prov = provenance_path(exp.autoids_file(1))
    prov.parent.mkdir()
    prov.write_text(f'{{"classifier": {{"sha256": "{SHA_NEW}"}}}}')
    ids = [t for t, lab in truth.items() if lab in wrong_id]
    vf = ValidationFile(exp.classdir / "validation.csv")
    for t in ids:
        vf.set(t, "wrong", {"movie": 1, "autoID": wrong_id[truth[t]], "n_frames": "", "classifier_sha256": SHA_NEW},
               annotator="alice")
    unknown = next(t for t, lab in truth.items() if lab == "Unknown")
    nxt = pd.DataFrame({"rank": [1], "tracklet": [unknown], "movie": [1], "autoID": ["Unknown"], "n_frames": [3],
                        "score": [0.0], "reason": ["long Unknown"], "priority": [3.0], "gate": [0.5],
                        "candidate": ["PB"], "runner_up": ["PG"], "detail": ["3 frames left Unknown"]})
    write_label_next(exp.classdir / "label_next.csv", nxt[list(NEXT_COLUMNS)])
    card = ClassifierCard(classes=["NoAnt", "PB", "PG", "Unknown"], target_size=32,
                          metrics={"confusion": [[5, 0, 0, 0], [0, 6, 3, 0], [0, 1, 7, 0], [0, 0, 0, 4]]})
    s = load_session_result(exp)
    assert s.classifiers == {1: SHA_NEW} and s.expdir == expdir and set(s.images) == {1, 2}
    out = build_report([s], card, tmp_path / "r.html")
    raw, text = out.read_text(), page_text(out)
    assert_no_nan(text)
    blobs = text[text.index("The blobs behind the numbers"): text.index("<h3>Classification per movie</h3>")]
    assert "Marked wrong" in blobs and blobs.count("<b>wrong ID</b>") == len(ids)
    assert "PB taken for PG: 3 validation cases (33.3 % of PB); PG taken for PB: 1 validation cases (12.5 % of PG)" \
        in blobs  # one pair, both directions
    assert "Top of “label next”" in blobs and "3 frames left Unknown" in blobs
    thumbs = re.findall(r'<img class="blobs" src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', raw)
    assert len(thumbs) == len(ids) + 2 + 1  # wrong marks, the two IDs of the pair, label next
    for data, tracklet in thumbs:
        im = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        n = min(6, len(tiny_experiment.images[1][tracklet]))
        h, w = tiny_experiment.images[1][tracklet].shape[1:3]
        assert im.shape == (h, n * w + 3 * (n - 1), 3)  # up to 6 real images side by side
        np.testing.assert_array_equal(im[:, :w], tiny_experiment.images[1][tracklet][0])
    top = first_screen(text)  # movie 2 has no autoids; every judged ID was wrong: label next, retrain, re-classify
    assert "1 movie(s) failed: fix them first" in top and "100.0 %" in top
    assert "(List: label next; 1 suggested)" in top and f"<code>antrax-pipe classify {expdir}</code>" in top
