"""Real Snakemake runs of the whole chain on the embedded demo (trainset merge → train → classify → aggregate → report).

The demo experiments are copied to a temporary folder first: a test never writes into the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

import antrax_pipe
from antrax_pipe import load_autoids
from antrax_pipe.io.experiment import load_experiment, select_movies
from antrax_pipe.io.autoids import HEADER
from antrax_pipe.io.images import ImagesFile
from antrax_pipe.plan import plan_classifiers, plan_experiments, read_sheet

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"


def make_workdir(tmp: Path, epochs: int = 4, **overrides) -> Path:
    """A working directory with the demo experiments and the default config (fewer epochs: tests check the chain,
    not the accuracy). Outputs of earlier demo runs in the checkout (autoids, provenance) are not copied."""
    shutil.copytree(REPO / "demo", tmp / "demo", ignore=shutil.ignore_patterns("autoids_*", "antrax-pipe"))
    (tmp / "config").mkdir()
    shutil.copy(REPO / "config" / "experiments.tsv", tmp / "config" / "experiments.tsv")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["train"]["epochs"] = epochs
    for k, v in overrides.items():
        cfg.setdefault(k, {}).update(v)
    (tmp / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--cores", "2", "--workflow-profile", str(REPO / "profiles" / "default"), *args]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}")
    return res


def test_plan_of_default_config_covers_every_demo_movie():
    sheet = read_sheet(REPO / "config" / "experiments.tsv")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))  # fills the defaults, as the workflow
    exps = plan_experiments(sheet, REPO, cfg["default_classifier"])
    assert set(exps) == {"colonyA", "colonyB"}
    for e in exps.values():
        assert len(e.movies) >= 2
        assert e.movies == select_movies(load_experiment(e.experiment.expdir))
    clfs = plan_classifiers(cfg, exps, REPO)
    assert [s.name for s in clfs["general"].sources] == ["classifier", "classifier"]


def test_dry_run_lists_every_stage(tmp_path):
    wd = make_workdir(tmp_path)
    out = snakemake(wd, "-n", "--quiet", "rules").stdout
    for rule in ("trainset", "train", "classify", "aggregate", "report"):
        assert rule in out


@pytest.mark.slow
def test_demo_run_end_to_end_then_nothing_to_do(tmp_path):
    wd = make_workdir(tmp_path)
    snakemake(wd)
    clf = wd / "results" / "classifiers" / "general" / "classifier.h5"
    clf_sha = hashlib.sha256(clf.read_bytes()).hexdigest()
    for name in ("colonyA", "colonyB"):
        exp = load_experiment(wd / "demo" / "experiments" / name)
        movies = select_movies(exp)
        assert len(movies) >= 2
        truth = {}
        for line in (wd / "demo" / "ground_truth" / f"{name}.csv").read_text().splitlines()[1:]:
            m, t, lab = line.split(",")
            truth[t] = lab
        for m, mi in movies.items():
            f = exp.autoids_file(m)
            assert f.is_file(), f"no autoids for {name} movie {m}"
            raw = f.read_bytes()
            assert raw.startswith((",".join(HEADER) + "\n").encode()) and b"\r" not in raw
            rows = load_autoids(f)
            names = [t for p in mi.parts for t in ImagesFile(p).tracklets]
            assert [r.tracklet for r in rows] == names  # one row per image dataset, file order
            assert all(t in truth for t in names)
            # provenance next to it, outside anTraX's labels/autoids_* glob
            prov = json.loads((exp.labels_dir / "antrax-pipe" / f"autoids_{m}.json").read_text())
            assert prov["autoids_sha256"] == hashlib.sha256(raw).hexdigest()
            assert prov["classifier"]["sha256"] == clf_sha and prov["classifier"]["path"] == str(clf.resolve())
            assert prov["aggregation"]["min_conf"] == 0.9 and prov["probabilities"]["n_images"] > 0
            assert [Path(i["path"]) for i in prov["images"]] == [p.resolve() for p in mi.parts]
            for job in ("classify_job", "aggregate_job"):
                env = prov[job]["environment"]
                assert env["python"] and env["host"] and env["packages"]["snakemake"].startswith("9.")
                assert env["packages"]["tensorflow"] and env["packages"]["keras"].startswith("3.")
                assert prov[job]["code"]["antrax_pipe"] == antrax_pipe.__version__
            assert prov["classify_job"]["environment"]["gpu"] is False  # no GPU on the test machine
        assert sorted(p.name for p in exp.labels_dir.glob("autoids_*")) == [f"autoids_{m}.csv" for m in sorted(movies)]
    html = (wd / "results" / "report" / "report.html").read_text()
    assert "colonyA" in html and "colonyB" in html and "data:image/png;base64," in html
    # nothing changed -> nothing to do
    dry = snakemake(wd, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule → number of jobs a dry run would execute."""
    # "--quiet host" replaces the default profile's quiet list, which hides the job table on the terminal
    out = snakemake(workdir, "--quiet", "host", "-n", *args).stdout
    jobs: dict[str, int] = {}
    in_stats = False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            in_stats = True
            continue
        if in_stats:
            parts = line.split()
            if not parts or parts[0] == "total":
                break
            if parts[0].startswith("---"):
                continue
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.mark.slow
def test_threshold_change_reaggregates_without_inference_and_cli_gives_same_files(tmp_path):
    wd = make_workdir(tmp_path, epochs=2)
    snakemake(wd)
    exp_a = wd / "demo" / "experiments" / "colonyA" / "antrax"
    probs = sorted((wd / "results" / "probs").rglob("probs_*.h5"))
    probs_mtimes = {p: p.stat().st_mtime_ns for p in probs}
    before = {p.name: p.read_bytes() for p in (exp_a / "labels").glob("autoids_*.csv")}

    # a stricter confidence gate: only aggregation and the report are out of date, inference is not repeated
    cfg_file = wd / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg.setdefault("aggregate", {})["min_conf"] = 0.9999
    cfg_file.write_text(yaml.safe_dump(cfg))
    assert planned_jobs(wd) == {"aggregate": 4, "review": 2, "coverage_error": 1, "report": 1, "all": 1}
    snakemake(wd)
    assert {p: p.stat().st_mtime_ns for p in probs} == probs_mtimes
    after = {p.name: p.read_bytes() for p in (exp_a / "labels").glob("autoids_*.csv")}
    n_ids = lambda files: sum(line.count(b",0,0") == 0 for b in files.values() for line in b.splitlines()[1:])  # noqa: E731
    assert n_ids(after) <= n_ids(before)

    # the CLI runs the same workflow: same classifier + thresholds -> byte-identical autoids
    for f in (exp_a / "labels").glob("autoids_*.csv"):
        f.unlink()
    cli_wd = tmp_path / "cli-work"
    cmd = [sys.executable, "-m", "antrax_pipe.cli", "classify", str(exp_a.parent),
           "--classifier", str(wd / "results" / "classifiers" / "general" / "classifier.h5"),
           "--workdir", str(cli_wd), "--cores", "2", "--min-conf", "0.9999"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    cli = {p.name: p.read_bytes() for p in (exp_a / "labels").glob("autoids_*.csv")}
    assert cli == after

    # --missing: nothing left to do for this experiment
    res = subprocess.run(cmd[:5] + ["--missing"] + cmd[5:], capture_output=True, text=True)
    assert res.returncode == 0 and "nothing to classify" in res.stderr


@pytest.mark.slow
def test_classifier_labels_mismatch_stops_before_inference(tmp_path):
    wd = make_workdir(tmp_path, epochs=1)
    snakemake(wd, "--until", "train")
    labels = wd / "demo" / "experiments" / "colonyB" / "antrax" / "parameters" / "labels.csv"
    text = labels.read_text().replace("PP\tant_labels\n", "").replace("GP\tant_labels\n", "GPX\tant_labels\n")
    labels.write_text(text)
    res = snakemake(wd, "--keep-going", check=False)
    assert res.returncode != 0
    log = (wd / "results" / "logs" / "classify" / "colonyB" / "1.log").read_text()
    assert "GPX" in log and "PP" in log and "GP" in log
    assert not (wd / "results" / "probs" / "colonyB" / "probs_1.h5").exists()
    # the other experiment is unaffected
    assert (wd / "demo" / "experiments" / "colonyA" / "antrax" / "labels" / "autoids_1.csv").is_file()
