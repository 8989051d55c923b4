#!/usr/bin/env python
"""What a big project costs Snakemake before (and instead of) any real work: dry run and no-op rerun times.

Builds fake anTraX experiments (default 10 × 100 movies: session parameters, labels.csv, a tiny stand-in
``images_<m>.mat`` per movie, a small trainset of PNG examples per experiment) and one "general" classifier merged from
all their trainsets, i.e. ~2,000 per-movie jobs (classify + aggregate) plus merge, training and report. Then prints:

* the plan step alone (sheet → experiments, movies, classifiers, trainset fingerprint; cold and warm hash cache),
* ``snakemake -n`` (dry run of everything; target ≤ 3 s),
* ``snakemake`` when everything is up to date (no-op rerun; target ≤ 3 s). The finished state is faked: every
  output is created empty, then ``snakemake --touch`` touches them in DAG order and records them (nothing is
  computed; a no-op rerun does not look inside the files).

    python bench/dag_bench.py                          # 10 experiments x 100 movies
    python bench/dag_bench.py --experiments 2 --movies 5 --repeat 1
    python bench/dag_bench.py --json out.json --keep /tmp/dagbench

Times are wall-clock medians of ``--repeat`` runs, Python start-up included (what a user waits for).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures.experiments import make_labelset, write_session  # noqa: E402  (the test suite's anTraX writers)

from antrax_pipe.plan import plan_classifiers, plan_experiments, read_sheet, trainset_fingerprint  # noqa: E402

LABELS = ["BB", "BG", "GB", "GG"]


def build_project(root: Path, n_exp: int, n_movies: int, n_examples: int, seed: int = 0) -> Path:
    """``root`` with ``experiments/exp<k>`` and ``config/{config.yaml,experiments.tsv}``."""
    rng = np.random.default_rng(seed)
    labels = make_labelset(LABELS)
    rows = ["name\texpdir\tsession\tmovlist\tclassifier\ttruth"]
    for k in range(n_exp):
        name = f"exp{k:02d}"
        expdir = root / "experiments" / name
        sess = write_session(expdir, "antrax", labels, {m: 6000 for m in range(1, n_movies + 1)})
        for m in range(1, n_movies + 1):  # stand-ins: the plan only lists them; --touch never opens them
            (sess / "images" / f"images_{m}.mat").write_bytes(b"\0" * 64)
        for i in range(n_examples):
            label = LABELS[i % len(LABELS)]
            d = sess / "classifier" / "examples" / label
            d.mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            cv2.imwrite(str(d / f"{name}.trj_id{i}_ti1_{i + 1}_tf1_{i + 5}.{i + 1}.png"), img)
        rows.append(f"{name}\texperiments/{name}\tantrax\tall\tgeneral\t")
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "experiments.tsv").write_text("\n".join(rows) + "\n")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["classifiers"] = {"general": {"trainsets": [f"exp{k:02d}" for k in range(n_exp)]}}
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


TRIVIAL = """\
rule all:
    input: expand("b/{e}/{m}.txt", e=range(config["experiments"]), m=range(config["movies"]))
rule a:
    output: "a/{e}/{m}.txt"
    shell: "touch {output}"
rule b:
    input: "a/{e}/{m}.txt"
    output: "b/{e}/{m}.txt"
    shell: "touch {output}"
"""


def trivial_dry_run(root: Path, n_exp: int, n_movies: int, repeat: int) -> float:
    """Snakemake's own floor on this machine, now: a dry run of a 2-rule workflow with as many per-movie jobs."""
    d = root / "trivial"
    d.mkdir()
    (d / "Snakefile").write_text(TRIVIAL)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", f"experiments={n_exp}",
                        f"movies={n_movies}"], cwd=d, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def snakemake(root: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
           str(root), "--workflow-profile", str(REPO / "profiles" / "default"), *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return dt, res


def median_time(root: Path, repeat: int, *args: str) -> tuple[float, list[float], subprocess.CompletedProcess]:
    times, res = [], None
    for _ in range(repeat):
        dt, res = snakemake(root, *args)
        times.append(dt)
    return statistics.median(times), times, res


def fake_outputs(root: Path, n_exp: int, n_movies: int) -> int:
    """Create every output of the workflow (empty files; --touch then orders their mtimes and records them)."""
    res = root / "results"
    files = [res / "classifiers" / "general" / "trainset_manifest.tsv", res / "classifiers" / "general" /
             "classifier.h5", res / "report" / "report.html",
             res / "validation" / "general" / "validation.h5", res / "validation" / "general" / "coverage_error.png"]
    for k in range(n_exp):
        exp = f"exp{k:02d}"
        files += [res / "sessions" / exp / "classifier" / n for n in ("review_plan.csv", "label_next.csv")]
        for m in range(1, n_movies + 1):
            files += [res / "probs" / exp / f"probs_{m}.h5",
                      res / "sessions" / exp / "labels" / f"autoids_{m}.csv",
                      res / "sessions" / exp / "labels" / "antrax-pipe" / f"autoids_{m}.json"]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    return len(files)


def plan_times(root: Path) -> dict[str, float]:
    """The workflow's plan step in-process (what common.smk does at every parse), cold and warm hash cache."""
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    out = {}
    cache = root / "results" / ".cache" / "bench-hashes.json"
    for label in ("plan_cold_s", "plan_warm_s"):
        t0 = time.perf_counter()
        exps = plan_experiments(read_sheet(root / "config" / "experiments.tsv"), root, "general")
        clfs = plan_classifiers(cfg, exps, root)
        trainset_fingerprint(clfs["general"].sources, cache=cache)
        out[label] = time.perf_counter() - t0
    out["movies"] = sum(len(e.movies) for e in exps.values())
    cache.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", type=int, default=10)
    ap.add_argument("--movies", type=int, default=100, help="movies per experiment")
    ap.add_argument("--examples", type=int, default=20, help="trainset examples per experiment")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)

    tmp = None
    if args.keep:
        root = args.keep
        if root.exists():
            shutil.rmtree(root)
    else:
        tmp = tempfile.mkdtemp(prefix="dag-bench-")
        root = Path(tmp)
    try:
        t0 = time.perf_counter()
        build_project(root, args.experiments, args.movies, args.examples)
        figures: dict[str, object] = {"experiments": args.experiments, "movies_per_experiment": args.movies,
                                      "build_s": round(time.perf_counter() - t0, 2)}
        figures.update({k: round(v, 3) if isinstance(v, float) else v for k, v in plan_times(root).items()})
        # "--quiet host" replaces the default profile's quiet list, which hides the job table read below
        dry, dry_all, res = median_time(root, args.repeat, "--quiet", "host", "-n")
        jobs = next((int(ln.split()[1]) for ln in res.stdout.splitlines() if ln.startswith("total ")), None)
        figures.update(jobs=jobs, dry_run_s=round(dry, 2), dry_run_runs=[round(x, 2) for x in dry_all])
        dry_q, _, _ = median_time(root, args.repeat, "-n", "--quiet", "all")
        figures["dry_run_quiet_s"] = round(dry_q, 2)
        figures["trivial_dry_run_s"] = round(trivial_dry_run(root, args.experiments, args.movies, args.repeat), 2)
        t0 = time.perf_counter()
        fake_outputs(root, args.experiments, args.movies)
        snakemake(root, "--touch", "--cores", "2", "--quiet", "all")
        figures["touch_all_s"] = round(time.perf_counter() - t0, 2)
        noop, noop_all, res = median_time(root, args.repeat, "--cores", "2")
        assert "Nothing to be done" in res.stdout + res.stderr, res.stdout[-2000:]
        figures.update(noop_rerun_s=round(noop, 2), noop_rerun_runs=[round(x, 2) for x in noop_all])
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    n = figures["experiments"] * figures["movies_per_experiment"]
    print(f"DAG benchmark: {figures['experiments']} experiments x {figures['movies_per_experiment']} movies = {n} "
          f"movies, {figures['jobs']} jobs (median of {args.repeat})")
    print(f"  plan step (sheet -> movies, classifiers, fingerprint): {figures['plan_cold_s']:.3f} s cold, "
          f"{figures['plan_warm_s']:.3f} s warm")
    print(f"  dry run  (snakemake -n):           {figures['dry_run_s']:.2f} s  {figures['dry_run_runs']}"
          f"  (--quiet all: {figures['dry_run_quiet_s']:.2f} s)   target <= 3 s")
    print(f"  no-op rerun (all up to date):      {figures['noop_rerun_s']:.2f} s  {figures['noop_rerun_runs']}"
          f"   target <= 3 s")
    print(f"  Snakemake's floor: dry run of a trivial 2-rule workflow with as many jobs: "
          f"{figures['trivial_dry_run_s']:.2f} s")
    print(f"  (faking the finished run with --touch took {figures['touch_all_s']:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
