"""The plan (config + experiment sheet → experiments, movies, classifiers) and its schemas, without running jobs.

Covers the per-experiment classifier case (``classifier: <name>`` per sheet row, ``file:`` for a pre-trained one),
movie selection, validation errors that name what is wrong, and the trainset fingerprint that decides when the merge
(and everything downstream) re-runs: by content, never by mtime.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from antrax_pipe import plan as plan_mod
from antrax_pipe.model import AntraxFormatError
from antrax_pipe.plan import ensure_link, plan_classifiers, plan_experiments, read_sheet, trainset_fingerprint
from test_workflow import REPO, make_workdir, planned_jobs

SCHEMAS = REPO / "workflow" / "schemas"
DEMO = REPO / "demo" / "experiments"


def sheet(rows: list[dict]) -> pd.DataFrame:
    cols = ["name", "expdir", "session", "movlist", "classifier", "truth"]
    return pd.DataFrame([{c: r.get(c, "") for c in cols} for r in rows], dtype=str)


def test_per_experiment_classifiers_and_a_pretrained_file():
    rows = sheet([
        {"name": "A", "expdir": str(DEMO / "colonyA"), "classifier": "ownA"},
        {"name": "B", "expdir": str(DEMO / "colonyB"), "classifier": "pre", "movlist": "2"},
        {"name": "A_default", "expdir": str(DEMO / "colonyA"), "movlist": "1-5"},
    ])
    exps = plan_experiments(rows, REPO, default_classifier="general")
    assert {n: e.classifier for n, e in exps.items()} == {"A": "ownA", "B": "pre", "A_default": "general"}
    assert sorted(exps["B"].movies) == [2] and sorted(exps["A_default"].movies) == [1, 2]  # only movies with images
    assert exps["A"].experiment.session == "antrax"
    cfg = {"classifiers": {
        "ownA": {"trainsets": ["A"]},
        "pre": {"file": "models/pretrained.h5"},
        "general": {"trainsets": ["A", "B", str(DEMO / "colonyB" / "antrax" / "classifier")], "name": "gen"},
    }}
    clfs = plan_classifiers(cfg, exps, REPO)
    assert clfs["ownA"].trained_here and clfs["ownA"].sources == [exps["A"].experiment.classdir]
    assert clfs["ownA"].classdir == REPO / "results" / "classifiers" / "ownA"
    assert not clfs["pre"].trained_here and clfs["pre"].model_file == REPO / "models" / "pretrained.h5"
    assert clfs["general"].model_file.name == "gen.h5" and len(clfs["general"].sources) == 3


def test_plan_errors_name_what_is_wrong(tmp_path):
    rows = sheet([{"name": "A", "expdir": str(DEMO / "colonyA"), "classifier": "nope"}])
    exps = plan_experiments(rows, REPO, "general")
    with pytest.raises(AntraxFormatError, match=r"experiment A: classifier 'nope' is not defined.*defined: general"):
        plan_classifiers({"classifiers": {"general": {}}}, exps, REPO)
    with pytest.raises(AntraxFormatError, match=r"classifiers.general.trainsets: 'colonyZ' is neither"):
        plan_classifiers({"classifiers": {"general": {"trainsets": ["colonyZ"]}}}, exps, REPO)
    with pytest.raises(AntraxFormatError, match="session 'other' not found"):
        plan_experiments(sheet([{"name": "A", "expdir": str(DEMO / "colonyA"), "session": "other"}]), REPO, "g")
    with pytest.raises(AntraxFormatError, match="experiment directory not found"):
        plan_experiments(sheet([{"name": "A", "expdir": str(tmp_path / "missing")}]), REPO, "g")
    bad = tmp_path / "sheet.tsv"
    bad.write_text("name\texpdir\nA\tx\nA\ty\n")
    with pytest.raises(AntraxFormatError, match="repeated: A"):
        read_sheet(bad)


def test_schemas_fill_defaults_and_reject_unknown_keys():
    cfg = {"experiments": "config/experiments.tsv", "classifiers": {"general": {"trainsets": ["A"]}}}
    validate(cfg, str(SCHEMAS / "config.schema.yaml"))
    assert cfg["results"] == "results" and cfg["default_classifier"] == "general"
    assert cfg["aggregate"]["min_conf"] == 0.9 and cfg["classify"]["batch_size"] == 256
    # recipe-dependent keys are null: the training recipe decides (tests/training/test_options.py)
    assert cfg["train"]["epochs"] is None and cfg["train"]["arch"] is None
    assert cfg["review"] == {"n": 200, "seed": 0, "top": 50} and cfg["require_gpu"] is False
    assert cfg["classifiers"]["general"]["name"] == "classifier"
    with pytest.raises(WorkflowError):
        validate({**cfg, "aggregate": {"min_conf": 1.5}}, str(SCHEMAS / "config.schema.yaml"))
    with pytest.raises(WorkflowError):
        validate({**cfg, "classify": {"batchsize": 8}}, str(SCHEMAS / "config.schema.yaml"))  # typo: rejected
    rows = sheet([{"name": "A", "expdir": "x", "movlist": "1-3,7"}])
    validate(rows, str(SCHEMAS / "experiments.schema.yaml"))
    with pytest.raises(WorkflowError):
        validate(sheet([{"name": "A", "expdir": "x", "movlist": "1 to 3"}]), str(SCHEMAS / "experiments.schema.yaml"))
    with pytest.raises(WorkflowError):
        validate(sheet([{"name": "A/B", "expdir": "x"}]), str(SCHEMAS / "experiments.schema.yaml"))


def test_config_readme_documents_every_schema_key():
    schema = yaml.safe_load((SCHEMAS / "config.schema.yaml").read_text())
    readme = (REPO / "config" / "README.md").read_text()
    keys = []
    for k, v in schema["properties"].items():
        if k == "classifiers":
            keys += [f"classifiers.<name>.{c}" for c in v["additionalProperties"]["properties"]]
        elif v.get("type") == "object" and "properties" in v:
            keys += [f"{k}.{c}" for c in v["properties"]]
        else:
            keys.append(k)
    missing = [k for k in keys if f"`{k}`" not in readme]
    assert not missing, missing
    cols = yaml.safe_load((SCHEMAS / "experiments.schema.yaml").read_text())["properties"]
    assert all(f"`{c}`" in readme for c in cols)


@pytest.fixture
def trainsets(tmp_path) -> list[Path]:
    out = []
    for name in ("colonyA", "colonyB"):
        d = tmp_path / name
        shutil.copytree(DEMO / name / "antrax" / "classifier", d)
        out.append(d)
    return out


def test_trainset_fingerprint_follows_content_not_mtimes(trainsets, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "hashes.json"
    fp = trainset_fingerprint(trainsets, cache=cache)
    assert fp == trainset_fingerprint(trainsets) == trainset_fingerprint(trainsets, cache=cache)
    assert fp != trainset_fingerprint(trainsets[::-1])
    example = sorted((trainsets[0] / "examples").rglob("*.png"))[0]

    # touched, copied elsewhere: same bytes -> same fingerprint; the cache spares re-reading unchanged files
    os.utime(example, (1, 1))
    calls = []
    real = plan_mod.file_sha256
    monkeypatch.setattr(plan_mod, "file_sha256", lambda p: calls.append(p) or real(p))
    assert trainset_fingerprint(trainsets, cache=cache) == fp
    assert calls == [str(example)]
    calls.clear()
    assert trainset_fingerprint(trainsets, cache=cache) == fp and calls == []
    moved = [tmp_path / "moved" / t.name for t in trainsets]
    for src, dst in zip(trainsets, moved):
        shutil.copytree(src, dst)
    assert trainset_fingerprint(moved) == fp

    # hidden files and non-images are not examples
    (example.parent / ".DS_Store.png").write_bytes(b"x")
    (example.parent / "notes.txt").write_text("x")
    assert trainset_fingerprint(trainsets, cache=cache) == fp

    # added, edited, relabelled, removed -> a different fingerprint each time
    new = example.parent / ("copy_" + example.name)
    shutil.copy(example, new)
    fp_added = trainset_fingerprint(trainsets, cache=cache)
    assert fp_added != fp
    new.write_bytes(new.read_bytes() + b"\0")
    fp_edited = trainset_fingerprint(trainsets, cache=cache)
    assert fp_edited not in (fp, fp_added)
    other = next(d for d in (trainsets[0] / "examples").iterdir() if d.is_dir() and d != example.parent)
    new.rename(other / new.name)
    fp_relabelled = trainset_fingerprint(trainsets, cache=cache)
    assert fp_relabelled not in (fp, fp_added, fp_edited)
    (other / new.name).unlink()
    assert trainset_fingerprint(trainsets, cache=cache) == fp

    # a damaged cache is ignored, never trusted
    cache.write_text("{not json")
    assert trainset_fingerprint(trainsets, cache=cache) == fp


def test_ensure_link_never_replaces_real_data(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    link = tmp_path / "results" / "sessions" / "x"
    ensure_link(link, a)
    assert link.resolve() == a.resolve()
    ensure_link(link, b)  # the sheet now points elsewhere: repointed
    assert link.resolve() == b.resolve()
    real = tmp_path / "results" / "sessions" / "y"
    real.mkdir()
    (real / "data.txt").write_text("keep me")
    with pytest.raises(AntraxFormatError, match="exists and is not a symlink"):
        ensure_link(real, a)
    assert (real / "data.txt").read_text() == "keep me"


def test_dag_of_per_experiment_and_pretrained_classifiers(tmp_path):
    """One experiment with its own classifier, the other with a pre-trained file: one training, no job for the file."""
    wd = make_workdir(tmp_path)
    model = tmp_path / "pretrained.h5"
    model.write_bytes(b"")  # only its existence matters for the plan
    cfg_file = wd / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["classifiers"] = {"ownA": {"trainsets": ["colonyA"]}, "pre": {"file": str(model)}}
    cfg_file.write_text(yaml.safe_dump(cfg))
    tsv = wd / "config" / "experiments.tsv"
    tsv.write_text(tsv.read_text().replace("\tgeneral\t", "\townA\t", 1).replace("\tgeneral\t", "\tpre\t", 1))
    assert planned_jobs(wd) == {"trainset": 1, "train": 1, "validate": 2, "coverage_error": 2, "classify": 4,
                                "aggregate": 4, "review": 2, "report": 1, "all": 1}
    jobs_b = planned_jobs(wd, "--until", "classify", "--forcerun", "classify")
    assert jobs_b == {"trainset": 1, "train": 1, "classify": 4}
    # colonyB's movies need no training: they can run right away
    ready = planned_jobs(wd, "results/probs/colonyB/probs_1.h5", "results/probs/colonyB/probs_2.h5")
    assert ready == {"classify": 2}


@pytest.mark.slow
def test_dag_bench_runs_and_reports_its_figures(tmp_path):
    """bench/dag_bench.py at a small size: the same steps as 10 x 100 (build, dry run, --touch, no-op rerun)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "figures.json"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "dag_bench.py"), "--experiments", "2", "--movies", "3",
                          "--repeat", "1", "--json", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    fig = json.loads(out.read_text())
    # classify + aggregate per movie; review per experiment; merge, train, validate, coverage_error, report, all
    assert fig["movies"] == 6 and fig["jobs"] == 2 * 6 + 2 + 6
    for key in ("dry_run_s", "noop_rerun_s", "trivial_dry_run_s", "plan_cold_s"):
        assert fig[key] > 0
    assert "no-op rerun" in res.stdout
