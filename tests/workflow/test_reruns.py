"""Reproducible reruns, each proven on a real run: what changes decides what runs again, by content, not by mtimes.

One finished run of the demo with a classifier per experiment (colonyA → ``a``, colonyB → ``b``) is made once per
module; each test works on a copy of it (``copy_run``), so the tests are independent. Changing an aggregation
threshold (only aggregation + report) is tested in ``test_workflow.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import h5py
import pytest
import yaml

from fixtures.faults import truncate_file
from fixtures.mat import write_mat73
from test_workflow import make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.slow

EXPS = ("colonyA", "colonyB")


def session(wd: Path, exp: str) -> Path:
    return wd / "demo" / "experiments" / exp / "antrax"


def products(wd: Path) -> dict[str, int]:
    """mtime_ns of every file the workflow wrote (results/, autoids and provenance in the sessions, review lists)."""
    files = [p for p in (wd / "results").rglob("*") if p.is_file() and ".cache" not in p.parts]
    for exp in EXPS:
        files += [p for p in (session(wd, exp) / "labels").rglob("*") if p.is_file()]
        files += [session(wd, exp) / "classifier" / n for n in ("review_plan.csv", "label_next.csv")]
    files = [p for p in files if p.is_file()]
    return {str(p.relative_to(wd)): p.stat().st_mtime_ns for p in files}


def changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {k for k in after if before.get(k) != after[k]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    wd = make_workdir(tmp_path_factory.mktemp("finished"), epochs=2)
    cfg_file = wd / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["classifiers"] = {"a": {"trainsets": ["colonyA"]}, "b": {"trainsets": ["colonyB"]}}
    cfg["default_classifier"] = "a"
    cfg_file.write_text(yaml.safe_dump(cfg))
    tsv = wd / "config" / "experiments.tsv"
    tsv.write_text(tsv.read_text().replace("\tgeneral\t", "\ta\t", 1).replace("\tgeneral\t", "\tb\t", 1))
    snakemake(wd)
    return wd


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """A copy of the finished run (mtimes kept; results/sessions links are repointed when the workflow is parsed)."""
    dst = tmp_path / "run"
    shutil.copytree(finished_run, dst, symlinks=True)
    return dst


def write_movie_copy(sess: Path, src: int, dst: int) -> Path:
    """A new movie ``dst`` made of ``src``'s tracklets, renamed as anTraX names them in movie ``dst``."""
    with h5py.File(sess / "images" / f"images_{src}.mat", "r") as f:
        data = {k.replace(f"_ti{src}_", f"_ti{dst}_").replace(f"_tf{src}_", f"_tf{dst}_"): f[k][()]
                for k in f if not k.startswith("#")}
    return write_mat73(sess / "images" / f"images_{dst}.mat", data)


def test_nothing_changed_nothing_runs(run):
    before = products(run)
    res = snakemake(run, "-n")
    assert "Nothing to be done" in res.stdout + res.stderr
    snakemake(run)
    assert changed(before, products(run)) == set()


def test_touched_examples_rerun_nothing(run):
    """Same bytes, new mtimes (touched, restored from a backup): the content fingerprint is unchanged."""
    future = time.time() + 60
    for p in (session(run, "colonyA") / "classifier" / "examples").rglob("*"):
        os.utime(p, (future, future))
    res = snakemake(run, "-n")
    assert "Nothing to be done" in res.stdout + res.stderr


def test_added_examples_retrain_and_reclassify_exactly_what_depends_on_them(run):
    # three examples of colonyB's PB tracklets added to colonyA's trainset (a label colonyA has)
    src = sorted((session(run, "colonyB") / "classifier" / "examples" / "PB").glob("*.png"))[:3]
    dst_dir = session(run, "colonyA") / "classifier" / "examples" / "PB"
    assert src and dst_dir.is_dir()
    for p in src:
        shutil.copy(p, dst_dir / p.name)
    assert planned_jobs(run) == {"trainset": 1, "train": 1, "validate": 1, "coverage_error": 1, "classify": 2,
                                 "aggregate": 2, "review": 1, "report": 1, "all": 1}
    model_a = run / "results" / "classifiers" / "a" / "classifier.h5"
    old_sha = sha256(model_a)
    before = products(run)
    snakemake(run)
    diff = changed(before, products(run))
    expected = {"results/classifiers/a/trainset_manifest.tsv", "results/classifiers/a/classifier.h5",
                "results/report/report.html", "results/logs/report.log", "results/benchmarks/report.tsv",
                "results/logs/trainset/a.log", "results/benchmarks/trainset/a.tsv",
                "results/logs/train/a/classifier.log", "results/benchmarks/train/a/classifier.tsv",
                # the new classifier's held-out validation and coverage-error curve; colonyA's review lists
                "results/validation/a/validation.h5", "results/validation/a/coverage_error.png",
                "demo/experiments/colonyA/antrax/classifier/review_plan.csv",
                "demo/experiments/colonyA/antrax/classifier/label_next.csv"}
    expected |= {f"results/{k}/{r}/{w}.{x}" for k, x in (("logs", "log"), ("benchmarks", "tsv"))
                 for r, w in (("validate", "a"), ("coverage_error", "a"), ("review", "colonyA"))}
    for m in (1, 2):
        expected.add(f"results/probs/colonyA/probs_{m}.h5")
        expected |= {f"results/{k}/{s}/colonyA/{m}.{x}" for k, x in (("logs", "log"), ("benchmarks", "tsv"))
                     for s in ("classify", "aggregate")}
        expected |= {f"demo/experiments/colonyA/antrax/labels/autoids_{m}.csv",
                     f"demo/experiments/colonyA/antrax/labels/antrax-pipe/autoids_{m}.json"}
    # the new classifier's validation is also kept in its classdir for later runs (stages.validate_stage; its name
    # holds hashes): exactly one new file there
    kept = {d for d in diff if "/.antrax-pipe/validation-" in d}
    assert len(kept) == 1 and next(iter(kept)).startswith("results/classifiers/a/.antrax-pipe/validation-")
    # the merged examples of classifier a were rebuilt; nothing of colonyB (its model, probs, autoids) was touched
    assert {d for d in diff if "/examples/" not in d} - kept == expected
    assert not any("colonyB" in d or "/b/" in d for d in diff)
    manifest = (run / "results" / "classifiers" / "a" / "trainset_manifest.tsv").read_text()
    assert all(p.name in manifest for p in src)
    # the provenance of colonyA's autoids names the new classifier, by hash
    new_sha = sha256(model_a)
    assert new_sha != old_sha
    for m in (1, 2):
        prov = json.loads((session(run, "colonyA") / "labels" / "antrax-pipe" / f"autoids_{m}.json").read_text())
        assert prov["classifier"]["sha256"] == new_sha
        assert prov["autoids_sha256"] == sha256(session(run, "colonyA") / "labels" / f"autoids_{m}.csv")
    res = snakemake(run, "-n")
    assert "Nothing to be done" in res.stdout + res.stderr


def test_added_movie_runs_only_its_jobs(run):
    write_movie_copy(session(run, "colonyB"), 1, 3)
    assert planned_jobs(run) == {"classify": 1, "aggregate": 1, "review": 1, "report": 1, "all": 1}
    before = products(run)
    snakemake(run)
    diff = changed(before, products(run))
    assert {d for d in diff if "colonyB/3" not in d and "_3." not in d} == {
        "results/report/report.html", "results/logs/report.log", "results/benchmarks/report.tsv",
        "results/logs/review/colonyB.log", "results/benchmarks/review/colonyB.tsv",
        "demo/experiments/colonyB/antrax/classifier/review_plan.csv",
        "demo/experiments/colonyB/antrax/classifier/label_next.csv"}
    a1 = (session(run, "colonyB") / "labels" / "autoids_1.csv").read_text().splitlines()
    a3 = (session(run, "colonyB") / "labels" / "autoids_3.csv").read_text().splitlines()
    assert len(a3) == len(a1) and a3[1].split(",")[1:] == a1[1].split(",")[1:]  # same images, same labels


def test_corrupt_movie_fails_alone_with_keep_going_and_report_lists_it(run):
    sess = session(run, "colonyB")
    write_movie_copy(sess, 1, 5)
    truncate_file(write_movie_copy(sess, 1, 4), 0.5)  # a copy cut short
    res = snakemake(run, "--keep-going", check=False)
    assert res.returncode != 0
    assert (sess / "labels" / "autoids_5.csv").is_file()  # the other new movie finished
    assert not (sess / "labels" / "autoids_4.csv").exists()
    log = (run / "results" / "logs" / "classify" / "colonyB" / "4.log").read_text()
    line = next(ln for ln in log.splitlines() if " E antrax_pipe: movie images cannot be read" in ln)
    assert "images_4.mat" in line and "truncated" in line
    report = run / "results" / "report" / "report.html"
    html = report.read_text()
    assert "movie images cannot be read" in html and "images_4.mat" in html
    assert report.stat().st_mtime == 0  # a failure report is never up to date
    assert "failed movie colonyB/4" in res.stderr

    # the broken copy removed: only the report (and colonyB's review lists) are rebuilt, now without failures
    (sess / "images" / "images_4.mat").unlink()
    assert planned_jobs(run) == {"review": 1, "report": 1, "all": 1}  # colonyB's movie set changed
    snakemake(run)
    html = report.read_text()
    assert "images_4.mat" not in html and report.stat().st_mtime > 0
