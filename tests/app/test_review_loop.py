"""Issue 15, the review loop through the HTTP API (a real server thread, urllib): marks tied to what they judged (stale
after re-classification, counted apart, per classifier), the workflow's review lists in the app with the plan's
weighted estimates against a hand computation, "Correct + export as autoID" and the undo of exports (files and
manifest restored), every-k-th frames with the rest on demand, per-frame top-2 probabilities, annotators.

The experiment is ``test_app``'s: movie 1 classified PB→PB (right), PG→PB (wrong), Unknown, NoAnt and a one-frame PB
tracklet called PG; movie 2 not classified. Browser tests of the same features: ``test_review_browser.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from antrax_pipe.app.core import TrainsetApp
from antrax_pipe.io.autoids import provenance_path, read_autoids, write_autoids
from antrax_pipe.io.manifest import read_manifest
from antrax_pipe.io.marks import read_validation_rows
from antrax_pipe.io.probabilities import ProbabilitiesWriter
from antrax_pipe.io.review_tables import NEXT_COLUMNS, PLAN_COLUMNS, write_label_next, write_review_plan
from antrax_pipe.model import AutoID, TrackletName
from antrax_pipe.stats import clopper_pearson
from test_app import AppExp, Client, make_app_experiment, running_server

SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.fixture
def app_exp(tmp_path, tiny_experiment) -> AppExp:
    return make_app_experiment(tmp_path, tiny_experiment)


def autoids_file(app_exp: AppExp, movie: int = 1) -> Path:
    return app_exp.sessiondir / "labels" / f"autoids_{movie}.csv"


def set_classifier(app_exp: AppExp, sha: str, movie: int = 1) -> None:
    """The provenance document the aggregate stage writes next to the autoids (only the part the app reads)."""
    p = provenance_path(autoids_file(app_exp, movie))
    p.parent.mkdir(exist_ok=True)
    p.write_text(json.dumps({"format": "antrax-pipe-provenance-1", "classifier": {"path": "x.h5", "sha256": sha}}))
    _touch_later(p)


def _touch_later(p: Path) -> None:
    """Move a file's mtime on by a second: a rewrite within the file system's timestamp resolution is still seen."""
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def reclassify(app_exp: AppExp, sha: str | None, changes: dict[str, str] | None = None) -> None:
    """Rewrite movie 1's autoids (``changes``: tracklet → new label) as by a classifier with sha256 ``sha``."""
    rows = [AutoID(r.tracklet, (changes or {}).get(r.tracklet, r.label), r.score, r.best_frame)
            for r in read_autoids(autoids_file(app_exp))]
    write_autoids(autoids_file(app_exp), rows)
    _touch_later(autoids_file(app_exp))
    if sha is not None:
        set_classifier(app_exp, sha)


def serve(app: TrainsetApp):
    return running_server(app)


def write_plan(app_exp: AppExp, tracklets: list[str], weights: list[float], movies: list[int] | None = None) -> None:
    ids = {r.tracklet: r for r in read_autoids(autoids_file(app_exp))}
    n = len(tracklets)
    plan = pd.DataFrame({
        "order": range(1, n + 1), "tracklet": tracklets, "movie": movies or [1] * n,
        "autoID": [ids[t].label if t in ids else "PB" for t in tracklets], "score": [1.0] * n,
        "n_frames": [3] * n, "stratum": [f"s{i}" for i in range(n)], "stratum_size": [1] * n,
        "stratum_drawn": [1] * n, "weight": weights})
    write_review_plan(app_exp.sessiondir / "classifier" / "review_plan.csv", plan[list(PLAN_COLUMNS)])


# ------------------------------------------------------------------------------------- marks tied to what they judged


def test_reclassified_marks_are_stale_not_counted_and_listed_for_a_recheck(app_exp):
    set_classifier(app_exp, SHA_A)
    pb, pg, noant = app_exp.tracklet_with("PB"), app_exp.tracklet_with("PG"), app_exp.tracklet_with("NoAnt")
    with serve(TrainsetApp(app_exp.expdir, seed=1, annotator="alice")) as base:
        c = Client(base)
        for t, m in ((pb, "correct"), (pg, "wrong"), (noant, "trueneg")):
            c.post("/api/mark", {"movie": 1, "tracklet": t, "mark": m})
        rows = read_validation_rows(app_exp.validation_csv)[1]
        assert [(r["tracklet"], r["autoID"], r["classifier_sha256"], r["annotator"]) for r in rows] == [
            (pb, "PB", SHA_A, "alice"), (pg, "PB", SHA_A, "alice"), (noant, "NoAnt", SHA_A, "alice")]
        s = c.get("/api/stats", movie=1)
        assert s["checked"]["tracklets"] == 3 and s["stale"] == 0 and s["wrong_id"]["tracklets"]["value"] == 0.5
        assert [(x["classifier"], x["current"], x["tracklets"]) for x in s["classifiers"]] == [(SHA_A, True, 3)]
        assert c.get("/api/tracklet", movie=1, tracklet=pg)["stale"] is False

        reclassify(app_exp, SHA_B, {pg: "PG"})  # another classifier: PG's autoID changes, the others stay
        info = c.get("/api/tracklet", movie=1, tracklet=pg)
        assert info["stale"] is True and info["mark"] == "wrong" and "autoID is PG now" in info["stale_reason"]
        info = c.get("/api/tracklet", movie=1, tracklet=pb)  # same autoID, but judged with the old classifier
        assert info["stale"] is True and "re-classified by classifier bbbbbbbbbbbb" in info["stale_reason"]
        s = c.get("/api/stats", movie=1)
        assert s["checked"]["tracklets"] == 0 and s["stale"] == 3 and s["stale_marks"] == 3
        assert sum(s["counts"].values()) == 0 and s["wrong_id"]["tracklets"]["value"] is None  # nothing counted
        assert [(x["classifier"], x["current"], x["stale"]) for x in s["classifiers"]] == [(SHA_A, False, 3)]
        assert s["current_classifiers"] == [SHA_B]
        recheck = c.get("/api/pool", source="stale")
        assert [r["tracklet"] for r in recheck["tracklets"]] == [pb, pg, noant]  # validation.csv order
        assert all(r["stale"] for r in recheck["tracklets"]) and recheck["tracklets"][1]["autoID"] == "PG"

        c.post("/api/mark", {"movie": 1, "tracklet": pg, "mark": "correct"})  # re-checked against classifier B
        s = c.get("/api/stats", movie=1)
        assert s["checked"]["tracklets"] == 1 and s["stale"] == 2 and s["counts"]["correct"] == 1
        assert {x["classifier"]: (x["current"], x["tracklets"]) for x in s["classifiers"]} == {
            SHA_A: (False, 2), SHA_B: (True, 1)}
        assert [r["tracklet"] for r in c.get("/api/pool", source="stale")["tracklets"]] == [pb, noant]
    row = {r["tracklet"]: r for r in read_validation_rows(app_exp.validation_csv)[1]}[pg]
    assert (row["autoID"], row["classifier_sha256"], row["mark"]) == ("PG", SHA_B, "correct")


def test_without_provenance_only_a_changed_autoid_makes_a_mark_stale(app_exp):
    """autoids written by anTraX (no provenance): the classifier is unknown, so only the autoID is compared; the
    classifier then comes from the probabilities file when the app can reach it."""
    pb, pg = app_exp.tracklet_with("PB"), app_exp.tracklet_with("PG")
    app = TrainsetApp(app_exp.expdir, annotator="alice")
    app.mark(1, pb, "correct")
    app.mark(1, pg, "wrong")
    assert {r["classifier_sha256"] for r in app.validation.rows()} == {""}
    reclassify(app_exp, None, {pg: "PG"})
    assert app.tracklet(1, pb)["stale"] is False and app.tracklet(1, pg)["stale"] is True
    s = app.stats(1)
    assert s["checked"]["tracklets"] == 1 and s["stale"] == 1 and s["classifiers"][0]["short"] == "unknown"


def test_old_validation_file_loads_and_gets_the_new_columns_appended(app_exp):
    pb, pg = app_exp.tracklet_with("PB"), app_exp.tracklet_with("PG")
    app_exp.validation_csv.parent.mkdir(parents=True, exist_ok=True)
    app_exp.validation_csv.write_text("tracklet,movie,autoID,mark,n_frames,timestamp,note\n"
                                      f"{pb},1,PB,correct,8,2024-01-02T03:04:05+00:00,first pass\n")
    app = TrainsetApp(app_exp.expdir, annotator="bob")
    s = app.stats(1)
    assert s["checked"]["tracklets"] == 1 and s["stale"] == 0  # an old mark of the same autoID still counts
    assert app.tracklet(1, pb)["mark"] == "correct" and app.tracklet(1, pb)["marked_by"] == ""
    app.mark(1, pg, "wrong")
    cols, rows = read_validation_rows(app_exp.validation_csv)
    assert cols == ["tracklet", "movie", "autoID", "mark", "n_frames", "timestamp", "classifier_sha256", "annotator",
                    "note"]
    assert rows[0]["note"] == "first pass" and rows[0]["annotator"] == "" and rows[1]["annotator"] == "bob"
    app.mark(1, pb, "wrong")  # an old mark without annotator becomes bob's: one row per tracklet, as before
    rows = read_validation_rows(app_exp.validation_csv)[1]
    assert [(r["tracklet"], r["mark"], r["annotator"], r["note"]) for r in rows] == [
        (pb, "wrong", "bob", "first pass"), (pg, "wrong", "bob", "")]


def test_two_annotators_keep_their_own_marks_and_the_newest_counts(app_exp):
    pg = app_exp.tracklet_with("PG")
    alice = TrainsetApp(app_exp.expdir, annotator="alice")
    bob = TrainsetApp(app_exp.expdir, annotator="bob")
    alice.mark(1, pg, "wrong")
    bob.mark(1, pg, "correct")
    rows = read_validation_rows(app_exp.validation_csv)[1]
    assert [(r["annotator"], r["mark"]) for r in rows] == [("alice", "wrong"), ("bob", "correct")]
    seen = alice.tracklet(1, pg)
    assert seen["mark"] == "wrong" and seen["others"] == [{"annotator": "bob", "mark": "correct", "stale": False}]
    s = alice.stats(1)
    assert s["checked"]["tracklets"] == 1 and s["annotators"] == {"alice": 1, "bob": 1}
    assert s["counts"]["correct"] + s["counts"]["wrong"] == 1  # one mark per tracklet
    bob.mark(1, pg, None)  # bob removes his own mark only
    assert [r["annotator"] for r in read_validation_rows(app_exp.validation_csv)[1]] == ["alice"]
    with pytest.raises(ValueError, match="annotator name"):
        TrainsetApp(app_exp.expdir, annotator="  ")


# --------------------------------------------------------------------------------------------- review lists


def test_review_plan_opens_in_file_order_with_weighted_estimates_matching_a_hand_computation(app_exp):
    pb, pg, noant = app_exp.tracklet_with("PB"), app_exp.tracklet_with("PG"), app_exp.tracklet_with("NoAnt")
    one = app_exp.tracklet_with("PB", single=True)  # autoID PG, truly PB
    t2 = app_exp.tracklet_with("PB", 2)
    write_plan(app_exp, [pg, noant, t2, pb, one], [3.0, 1.0, 1.0, 1.0, 2.0], movies=[1, 1, 2, 1, 1])
    with serve(TrainsetApp(app_exp.expdir, movlist=[1], annotator="alice")) as base:
        c = Client(base)
        assert c.get("/api/info")["lists"] == {"review_plan": True, "label_next": False}
        p = c.get("/api/pool", source="review_plan")
        assert [r["tracklet"] for r in p["tracklets"]] == [pg, noant, pb, one]  # file order
        assert [r["order"] for r in p["tracklets"]] == [1, 2, 4, 5] and p["tracklets"][0]["weight"] == 3.0
        assert p["skipped"] == [{"movie": 2, "tracklet": t2, "error": "movie 2 is not offered by this app"}]
        for t, m in ((pg, "wrong"), (noant, "trueneg"), (pb, "correct"), (one, "wrong")):
            c.post("/api/mark", {"movie": 1, "tracklet": t, "mark": m})
        plan = c.get("/api/stats", movie=1)["plan"]
    assert (plan["planned"], plan["judged"], plan["strata"]) == (5, 4, 5)
    # by hand: error = wrong / (correct + wrong) weighted: (3 + 2) / (3 + 1 + 2); Kish n_eff = 6² / (9 + 1 + 4)
    err = plan["estimates"]["error"]
    p_hat, n_eff = 5 / 6, 36 / 14
    assert (err["k"], err["n"]) == (2, 3) and err["value"] == pytest.approx(p_hat)
    assert err["n_eff"] == pytest.approx(n_eff)
    assert err["ci"] == pytest.approx(list(clopper_pearson(p_hat * n_eff, n_eff)))
    fp = plan["estimates"]["false_positive"]
    assert (fp["k"], fp["n"], fp["value"]) == (0, 3, 0.0)
    assign = plan["estimates"]["assignment"]
    assert (assign["k"], assign["n"], assign["value"]) == (3, 3, 1.0)  # no "is an ant" among the judged
    fn = plan["estimates"]["false_negative"]
    assert (fn["k"], fn["n"], fn["value"]) == (0, 1, 0.0)
    assert "wrong / (correct + wrong)" in err["definition"]


def test_review_plan_with_equal_weights_gives_the_unweighted_exact_interval(app_exp):
    pb, pg, one = app_exp.tracklet_with("PB"), app_exp.tracklet_with("PG"), app_exp.tracklet_with("PB", single=True)
    write_plan(app_exp, [pb, pg, one], [7.0, 7.0, 7.0])
    app = TrainsetApp(app_exp.expdir, annotator="alice")
    for t, m in ((pb, "correct"), (pg, "wrong"), (one, "wrong")):
        app.mark(1, t, m)
    err = app.stats(1)["plan"]["estimates"]["error"]
    assert err["value"] == pytest.approx(2 / 3) and err["n_eff"] == 3
    assert err["ci"] == list(clopper_pearson(2, 3))
    assert err["text"] == "66.7 % (2/3 tracklets; 95 % CI 9.4–99.2 %)"
    reclassify(app_exp, None, {pg: "PG"})  # pg's mark goes stale: the plan's estimate drops it
    err = app.stats(1)["plan"]["estimates"]["error"]
    assert (err["k"], err["n"]) == (1, 2)


def test_label_next_opens_in_file_order_and_a_missing_list_is_a_clear_404(app_exp):
    unknown, pb = app_exp.tracklet_with("Unknown"), app_exp.tracklet_with("PB")
    nxt = pd.DataFrame({"rank": [1, 2], "tracklet": [unknown, pb], "movie": [1, 1], "autoID": ["Unknown", "PB"],
                        "n_frames": [8, 8], "score": [0.0, 12.5], "reason": ["long Unknown", "near threshold"],
                        "priority": [8.0, 4.0], "gate": [0.5, 0.86], "candidate": ["PB", "PB"],
                        "runner_up": ["PG", "PG"], "detail": ["8 frames left Unknown", "gate 0.860 below 0.9"]})
    with serve(TrainsetApp(app_exp.expdir, annotator="alice")) as base:
        c = Client(base)
        status, msg = c.error("/api/pool?source=label_next")
        assert status == 404 and "label_next.csv not found" in msg and "review rule" in msg
        write_label_next(app_exp.sessiondir / "classifier" / "label_next.csv", nxt[list(NEXT_COLUMNS)])
        p = c.get("/api/pool", source="label_next")
        assert [(r["tracklet"], r["rank"], r["reason"]) for r in p["tracklets"]] == [
            (unknown, 1, "long Unknown"), (pb, 2, "near threshold")]
        status, msg = c.error("/api/pool?source=everything")
        assert status == 400 and "source must be one of random, review_plan, label_next, stale" in msg


# ------------------------------------------------------------------------------------ export, confirm, undo


def _manifest(app_exp: AppExp) -> list[tuple[str, str]]:
    path = app_exp.sessiondir / "classifier" / "trainset_manifest.tsv"
    return sorted((e.path, e.label) for e in read_manifest(path).entries) if path.is_file() else []


def test_correct_export_and_undo_restore_files_manifest_and_mark(app_exp):
    set_classifier(app_exp, SHA_A)
    pb, pg, noant = app_exp.tracklet_with("PB"), app_exp.tracklet_with("PG"), app_exp.tracklet_with("NoAnt")
    with serve(TrainsetApp(app_exp.expdir, annotator="alice")) as base:
        c = Client(base)
        status, msg = c.error("/api/undo_export", {})
        assert status == 409 and "nothing to undo" in msg
        c.post("/api/export", {"movie": 1, "tracklet": pg, "label": "PG", "frames": [0, 1]})
        before = _manifest(app_exp)
        c.post("/api/mark", {"movie": 1, "tracklet": pb, "mark": "wrong"})

        r = c.post("/api/correct_export", {"movie": 1, "tracklet": pb})  # one key: export as PB + mark correct
        assert r["mark"] == "correct" and r["label"] == "PB" and r["written"] == app_exp.export_names(1, pb)
        assert sorted(p.name for p in (app_exp.examples / "PB").iterdir()) == sorted(app_exp.export_names(1, pb))
        assert len(_manifest(app_exp)) == len(before) + len(app_exp.images(1, pb))
        row = {r["tracklet"]: r for r in read_validation_rows(app_exp.validation_csv)[1]}[pb]
        assert (row["mark"], row["classifier_sha256"], row["annotator"]) == ("correct", SHA_A, "alice")
        r2 = c.post("/api/correct_export", {"movie": 1, "tracklet": noant})  # a non-ant label: "not an ant"
        assert r2["mark"] == "trueneg" and r2["label"] == "NoAnt"

        u = c.post("/api/undo_export", {})
        assert u["tracklet"] == noant and sorted(u["removed"]) == sorted(app_exp.export_names(1, noant))
        assert not (app_exp.examples / "NoAnt").exists()  # the folder the export made goes too
        assert noant not in {r["tracklet"] for r in read_validation_rows(app_exp.validation_csv)[1]}

        u = c.post("/api/undo_export", {})  # the correct + export of pb: files, manifest, the earlier mark back
        assert u["tracklet"] == pb and u["mark"] == "wrong" and u["exported"] == {} and u["kept"] == []
        assert not (app_exp.examples / "PB").exists() and _manifest(app_exp) == before
        assert c.get("/api/tracklet", movie=1, tracklet=pb)["mark"] == "wrong"

        u = c.post("/api/undo_export", {})  # the plain export of two pg frames
        assert u["tracklet"] == pg and u["mark"] is None and len(u["removed"]) == 2 and _manifest(app_exp) == []
        assert c.error("/api/undo_export", {})[0] == 409

        unknown = app_exp.tracklet_with("Unknown")
        status, msg = c.error("/api/correct_export", {"movie": 1, "tracklet": unknown})
        assert status == 409 and "only an ID or a non-ant label" in msg
        c.post("/api/export", {"movie": 1, "tracklet": pg, "label": "PG"})
        assert c.error("/api/correct_export", {"movie": 1, "tracklet": pg})[0] == 409  # PG files exist: refused …
        assert c.get("/api/tracklet", movie=1, tracklet=pg)["mark"] == ""  # … and nothing was marked


def test_undo_keeps_a_file_changed_since_the_export(app_exp):
    pg = app_exp.tracklet_with("PG")
    app = TrainsetApp(app_exp.expdir, annotator="alice")
    r = app.export(1, pg, "PG", [0, 1, 2])
    changed = app_exp.examples / "PG" / r["written"][1]
    changed.write_bytes(b"someone else's file")
    u = app.undo_export()
    assert u["kept"] == [changed.name] and sorted(u["removed"]) == sorted([r["written"][0], r["written"][2]])
    assert changed.read_bytes() == b"someone else's file"
    assert [e.path for e in read_manifest(app_exp.sessiondir / "classifier" / "trainset_manifest.tsv").entries] == [
        f"examples/PG/{changed.name}"]


# ------------------------------------------------------------------------------- frames, numbering, probabilities


def test_frames_every_kth_with_the_rest_on_demand_and_one_frame_numbering(app_exp):
    pg = app_exp.tracklet_with("PG")
    first = TrackletName.parse(pg).first_frame
    n = len(app_exp.images(1, pg))
    with serve(TrainsetApp(app_exp.expdir, max_frames_shown=3)) as base:
        c = Client(base)
        assert c.get("/api/info")["max_frames_shown"] == 3
        f = c.get("/api/frames", movie=1, tracklet=pg, step=3)
        assert f["n"] == n == 8 and [x["i"] for x in f["frames"]] == [0, 3, 6, 7]  # every 3rd and the last
        assert [x["movie_frame"] for x in f["frames"]] == [first + i for i in (0, 3, 6, 7)]
        assert [x["frame"] for x in f["frames"]] == [app_exp.fi[1] + first - 1 + i for i in (0, 3, 6, 7)]
        rest = c.get("/api/frames", movie=1, tracklet=pg, start=1, stop=3)
        assert [x["i"] for x in rest["frames"]] == [1, 2] and "top2" not in rest["frames"][0]  # no probs_dir
        for bad in ("step=0", "start=5&stop=5", "stop=99", "step=x"):
            status, msg = c.error(f"/api/frames?movie=1&tracklet={pg}&{bad}")
            assert status == 400, (bad, msg)
        info = c.get("/api/tracklet", movie=1, tracklet=pg)
        assert info["best_frame"] == 2 and info["best_movie_frame"] == first + 1  # best image 2 = movie frame
        assert info["movie_frames"] == [first, first + n - 1]


def write_probs(path: Path, app_exp: AppExp, rows_of: dict[str, np.ndarray], classes: list[str], sha: str) -> None:
    """A probabilities file of movie 1 as inference writes it (tracklets in images-file order)."""
    names = app_exp.built.sorted_tracklets(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        w = ProbabilitiesWriter(h5, classes)
        ends = []
        for t in names:
            y = rows_of.get(t)
            if y is None:
                y = np.tile(np.eye(len(classes), dtype=np.float32)[0], (len(app_exp.images(1, t)), 1))
            w.append(np.asarray(y, np.float32))
            ends.append(w.rows)
        w.finish(names, [0] * len(names), ends, {"classifier_sha256": sha, "classifier_path": "c.h5"})


def test_top2_probabilities_per_frame_and_frames_that_disagree(app_exp, tmp_path):
    classes = ["NoAnt", "PB", "PG", "Unknown"]
    pg = app_exp.tracklet_with("PG")  # autoID PB
    n = len(app_exp.images(1, pg))
    y = np.zeros((n, 4), np.float32)
    y[:, 1], y[:, 2] = 0.8, 0.15  # PB, then PG …
    y[[2, 5], 1], y[[2, 5], 2] = 0.3, 0.6  # … except images 2 and 5, where PG is on top
    y[:, 3] = 1 - y[:, 1] - y[:, 2]
    probs_dir = tmp_path / "results" / "probs"
    write_probs(probs_dir / app_exp.expdir.name / "probs_1.h5", app_exp, {pg: y}, classes, SHA_B)
    app = TrainsetApp(app_exp.expdir, probs_dir=probs_dir, annotator="alice")  # results/probs: finds <exp>/
    f = app.frames(1, pg)
    assert f["probs"] is True
    assert [x["top2"] for x in f["frames"][:3]] == [[["PB", 0.8], ["PG", 0.15]], [["PB", 0.8], ["PG", 0.15]],
                                                   [["PG", 0.6], ["PB", 0.3]]]
    assert [x["i"] for x in f["frames"] if x["disagree"]] == [2, 5]
    unknown = app.frames(1, app_exp.tracklet_with("Unknown"))  # not judged: nothing outlined
    assert not any(x["disagree"] for x in unknown["frames"])
    assert app.frames(2, app_exp.tracklet_with("PB", 2))["probs"] is False  # no file for movie 2
    app.mark(1, pg, "wrong")  # no provenance: the classifier comes from the probabilities file
    assert read_validation_rows(app_exp.validation_csv)[1][0]["classifier_sha256"] == SHA_B
