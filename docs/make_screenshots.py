"""Screenshots for the README, taken in headless Chromium on copies of the demo: the ``extract-trainset`` app and the
first screen (the verdict) of the HTML report.

    .venv/bin/python docs/make_screenshots.py [--chromium /usr/bin/chromium] [--out docs/screenshots] [--only app|report]

App: the demo experiment ``demo/experiments/colonyA`` is copied to a temporary folder (the repository is never
written, except the PNGs); two tracklets are marked there from the demo's ground truth so the statistics panel shows
numbers.

Report: both demo experiments are copied to a temporary folder and classified there without TensorFlow — from the
per-frame probabilities of a demo run (``results/probs/<exp>/probs_<m>.h5``, aggregated with the library's
``aggregate_movie``; its provenance records the classifier) or, without a demo run, from the demo's ground truth with
every 7th ID tracklet given a wrong ID. The review plan and label-next list are built with the library; the judging is
simulated from the ground truth (annotator "alice" judges the first 80 planned tracklets, "bob" the first 15 again;
3 marks judged an earlier classifier, so they are stale). The model card is the demo run's classifier when present.
Needs Debian's ``chromium`` and Python Playwright (``pip install -e '.[test]'``).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import threading
from pathlib import Path

import json

import cv2
import pandas as pd

from antrax_pipe.aggregation import AggregationParams, aggregate_movie
from antrax_pipe.app.core import TrainsetApp
from antrax_pipe.app.server import make_server
from antrax_pipe.io.autoids import provenance_path, read_autoids, write_autoids
from antrax_pipe.io.classifier import read_card
from antrax_pipe.io.experiment import load_experiment
from antrax_pipe.io.labels import read_labels
from antrax_pipe.io.marks import ValidationFile
from antrax_pipe.io.review_tables import write_label_next, write_review_plan
from antrax_pipe.model import AutoID
from antrax_pipe.provenance import provenance_record
from antrax_pipe.report import build_report
from antrax_pipe.results import load_session_result, tracklet_table
from antrax_pipe.review import confused_pairs_of, label_next, sampling_plan, tracklet_gates

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _recompress(path: Path) -> None:
    """Chromium writes fast, loosely compressed PNGs; level 9 keeps the README light."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def _truth(exp: str) -> dict[str, str]:
    with open(REPO / "demo" / "ground_truth" / f"{exp}.csv", newline="") as fh:
        return {r["tracklet"]: r["label"] for r in csv.DictReader(fh)}


def _classify(expdir: Path, exp: str, params: AggregationParams) -> str:
    """autoids (+ provenance) of every movie of a copied demo experiment; returns how they were made."""
    e = load_experiment(expdir, "antrax")
    labels = read_labels(e.labels_file)
    probs = {int(p.stem.split("_")[1]): p for p in (REPO / "results" / "probs" / exp).glob("probs_*.h5")}
    e.labels_dir.mkdir(parents=True, exist_ok=True)
    if probs:
        for m, pf in sorted(probs.items()):
            write_autoids(e.autoids_file(m), aggregate_movie(pf, labels, params))
            doc = provenance_record(e.autoids_file(m), pf, vars(params))
            provenance_path(e.autoids_file(m)).parent.mkdir(exist_ok=True)
            provenance_path(e.autoids_file(m)).write_text(json.dumps(doc, indent=1))
        return "aggregated from the demo run's probabilities"
    truth = _truth(exp)
    with open(REPO / "demo" / "ground_truth" / f"{exp}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = list(labels.ant_labels)
    for m in sorted({int(r["movie"]) for r in rows}):
        out = []
        for k, r in enumerate(x for x in rows if int(x["movie"]) == m):
            lab = truth[r["tracklet"]]
            if lab in ids and k % 7 == 3:
                lab = ids[(ids.index(lab) + 1) % len(ids)]
            out.append(AutoID(r["tracklet"], lab, 10.0 if lab in ids else 0.0, 1 if lab in ids else 0))
        write_autoids(e.autoids_file(m), out)
    return "made from the ground truth (every 7th ID tracklet wrong)"


def _judge(autoid: str, truth: str, ids: tuple[str, ...]) -> str:
    if autoid in ids:
        return "correct" if truth == autoid else "wrong" if truth in ids else "ambig"
    return "falseneg" if truth in ids else "trueneg"


def _review_and_marks(expdir: Path, exp: str, params: AggregationParams, card) -> None:
    """Review plan, label-next list and simulated marks (see the module docstring) of a classified demo copy."""
    e = load_experiment(expdir, "antrax")
    labels = read_labels(e.labels_file)
    res = load_session_result(e, count_images=True)
    tt = tracklet_table(res)
    plan = sampling_plan(tt, 200, seed=0, experiment=exp)
    write_review_plan(e.classdir / "review_plan.csv", plan)
    probs = sorted((REPO / "results" / "probs" / exp).glob("probs_*.h5"))
    gates = pd.concat([tracklet_gates(p, labels, params, int(p.stem.split("_")[1])) for p in probs],
                      ignore_index=True) if probs else None
    pairs = confused_pairs_of(card, labels) if card is not None else []
    write_label_next(e.classdir / "label_next.csv", label_next(tt, gates, params, pairs, top=50))
    truth, vf = _truth(exp), ValidationFile(e.classdir / "validation.csv")
    n_stale = 3 if len(plan) > 6 else 1
    for k, r in enumerate(plan.head(80).itertuples()):
        if k >= len(plan) - n_stale:  # judged against an earlier classification by another classifier: stale now
            vf.set(r.tracklet, "wrong", {"movie": r.movie, "autoID": "PP" if r.autoID != "PP" else "GP",
                                         "n_frames": r.n_frames, "classifier_sha256": "0" * 64}, annotator="alice")
            continue
        fields = {"movie": r.movie, "autoID": r.autoID, "n_frames": r.n_frames,
                  "classifier_sha256": res.classifiers.get(int(r.movie), "")}
        for who in ("alice", "bob") if k < 15 else ("alice",):
            vf.set(r.tracklet, _judge(r.autoID, truth.get(r.tracklet, ""), labels.ant_labels), fields, annotator=who)


def report_screenshot(chromium: str, out: Path) -> None:
    """docs/screenshots/report-verdict.png: the first screen of the report of the two demo experiments."""
    from playwright.sync_api import sync_playwright

    params = AggregationParams()
    clf = REPO / "results" / "classifiers" / "general" / "classifier.h5"
    card = read_card(clf) if clf.is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        sessions = []
        for exp in ("colonyA", "colonyB"):
            expdir = Path(tmp) / exp
            shutil.copytree(REPO / "demo" / "experiments" / exp, expdir)
            how = _classify(expdir, exp, params)
            print(f"{exp}: autoIDs {how}")
            _review_and_marks(expdir, exp, params, card)
            sessions.append(load_session_result(load_experiment(expdir, "antrax")))
            print(f"{exp}: {sum(len(read_autoids(p)) for p in (expdir / 'antrax' / 'labels').glob('autoids_*.csv'))}"
                  f" autoID rows")
        cwd = Path.cwd()
        os.chdir(tmp)  # the report names experiment folders relative to the working directory
        try:
            html_path = build_report(sessions, card, Path(tmp) / "report.html", params=vars(params))
        finally:
            os.chdir(cwd)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(html_path.as_uri())
            page.screenshot(path=str(out / "report-verdict.png"))
            browser.close()


def app_screenshots(chromium: str, out: Path) -> None:
    """docs/screenshots/extract-trainset*.png: the app on a copy of demo colonyA."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        expdir = Path(tmp) / "colonyA"
        shutil.copytree(REPO / "demo" / "experiments" / "colonyA", expdir)
        app = TrainsetApp(expdir, seed=12)
        with open(REPO / "demo" / "ground_truth" / "colonyA.csv", newline="") as fh:
            truth = {(int(r["movie"]), r["tracklet"]): r["label"] for r in csv.DictReader(fh)}
        marked = 0
        for row in app.pool("all")["tracklets"]:
            if marked < 3 and app.allowed_marks(row["autoID"]) and row["autoID"] in app.labels.ant_labels:
                ok = truth.get((row["movie"], row["tracklet"])) == row["autoID"]
                app.mark(row["movie"], row["tracklet"], "correct" if ok else "wrong")
                marked += 1
        httpd = make_server(app)
        th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        th.start()
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
                page = browser.new_page(viewport={"width": 1200, "height": 720})
                page.goto(httpd.url)
                page.wait_for_selector("body[data-state=ready]")
                page.select_option("#movie", "all")
                page.wait_for_selector("body[data-state=ready]")
                page.select_option("#autoid", "PG")
                page.wait_for_selector("body[data-state=ready]")
                page.keyboard.press("4")  # label PG
                page.screenshot(path=str(out / "extract-trainset.png"))
                for i in (3, 4, 5, 9):
                    page.click(f"#frames figure[data-i='{i}']")
                page.click("#frames figure[data-i='12']", modifiers=["Shift"])
                page.keyboard.press("s")
                page.wait_for_selector("#status.ok")
                page.click("#frames figure[data-i='20']")
                page.click("#frames figure[data-i='22']", modifiers=["Shift"])
                page.screenshot(path=str(out / "extract-trainset-select-frames.png"))
                browser.close()
        finally:
            httpd.shutdown()
            httpd.server_close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    ap.add_argument("--only", choices=("app", "report"), help="only the app's or only the report's screenshot")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "app"):
        app_screenshots(args.chromium, out)
    if args.only in (None, "report"):
        report_screenshot(args.chromium, out)
    names = {"app": "extract-trainset*.png", "report": "report-verdict.png"}
    for key, pattern in names.items():
        if args.only in (None, key):
            for p in sorted(out.glob(pattern)):
                _recompress(p)
                print(f"{p} ({p.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
