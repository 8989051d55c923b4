#!/usr/bin/env python
"""End-to-end ``antrax-pipe classify`` of one big movie vs. the bare model, measured in the same run.

Builds an experiment folder (a session's parameters + one ``images_1.mat`` in the real MATLAB v7.3 layout, tracklet
lengths heavy-tailed, as ``bench/classify_bench.py`` builds it) and a classifier file (the untrained anTraX "small"
CNN saved with :func:`antrax_pipe.classifier.save_classifier`, its card asking for a grouped validation split of a
small ``examples/`` folder, so the ``validate`` job does real work), then:

1. runs ``python -m antrax_pipe.cli classify EXP --classifier C --workdir W --cores 2`` (a subprocess; wall time,
   Python and Snakemake start-up included, i.e. what a user waits for) → images/s;
2. measures the same model's ``predict_on_batch`` throughput on preprocessed images of the same movie, in this
   process, with the same thread count, before and after the CLI run (the machine is shared; the mean is the
   reference);
3. prints the ratio (target ≥ 0.9), the peak RSS of the run's processes and the wall time per job (Snakemake's
   benchmark files, results/benchmarks/**).

    python bench/cli_bench.py                      # 2,000 tracklets (~40,000 images)
    python bench/cli_bench.py --tracklets 10000    # the issue's movie (~200,000 images)
    python bench/cli_bench.py --again              # also a second CLI run with the validated classifier (cache)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from classify_bench import (
    IDS,
    ant_pool,
    model_alone,
    small_model,
    tracklet_lengths,
    write_movie,
)
from fixtures.experiments import make_labelset, write_session


def build(work: Path, n_tracklets: int, mean_length: float, image_size: int, target: int, seed: int,
          examples_per_label: int) -> tuple[Path, Path, int]:
    """(experiment dir, classifier file, images in the movie)."""
    import cv2

    from antrax_pipe.classifier import save_classifier
    from antrax_pipe.io.examples import list_examples
    from antrax_pipe.io.manifest import manifest_hash, manifest_of
    from antrax_pipe.model import ClassifierCard

    rng = np.random.default_rng(seed)
    lengths = tracklet_lengths(n_tracklets, mean_length, rng)
    labels = make_labelset(IDS)
    expdir = work / "colonyA"
    sess = write_session(expdir, "antrax", labels, {1: int(10 * n_tracklets + 700)})
    write_movie(sess / "images" / "images_1.mat", lengths, image_size, rng)
    # a classdir with a small trainset (grouped validation split, as the default recipe leaves it)
    classdir = work / "clf"
    pool = ant_pool(image_size, rng)
    for li, label in enumerate(IDS):
        d = classdir / "examples" / label
        d.mkdir(parents=True, exist_ok=True)
        for k in range(examples_per_label):
            key = f"colonyA.trj_id{100 * li + k + 1}_ti1_{10 * k + 1}_tf1_{10 * k + 5}"
            for f in range(5):
                cv2.imwrite(str(d / f"{key}.{10 * k + 1 + f}.png"), pool[li, f][:, :, ::-1])
    examples = list_examples(classdir)
    classes = sorted(labels.ant_labels + labels.noant_labels + labels.other_labels)
    card = ClassifierCard(classes=classes, target_size=target,
                          preprocessing={"target_size": target, "crop_size": None, "background": "white"},
                          training={"recipe": "default", "seed": 0, "val_fraction": 0.2},
                          trainset_hash=manifest_hash(manifest_of(examples, classdir)))
    clf = save_classifier(classdir / "classifier.h5", small_model(target, len(classes)), card)
    return expdir, clf, int(lengths.sum())


def bare_model(clf: Path, movie: Path, threads: int, batch_size: int, n_images: int) -> float:
    """predict_on_batch img/s of the classifier on preprocessed images of the movie (median of 3)."""
    from antrax_pipe.classifier import load_classifier
    from antrax_pipe.io.images import ImagesFile
    from antrax_pipe.preprocess import preprocess

    model, card = load_classifier(clf, compile=False)
    spec = card.preprocess_spec()
    buf = []
    with ImagesFile(movie) as f:
        for name in f.tracklets:
            buf.append(preprocess(f.read(name, white_bg=True), spec))
            if sum(len(b) for b in buf) >= 8 * batch_size:
                break
    x = np.concatenate(buf).astype(np.float32)
    batches = [x[i : i + batch_size] for i in range(0, len(x) - batch_size + 1, batch_size)]
    for b in batches[:2]:
        model.predict_on_batch(b)  # warm-up
    return model_alone(model, batches, n_images)


def job_split(workdir: Path) -> dict[str, float]:
    """Seconds per job from Snakemake's benchmark files (results/benchmarks/<rule>/...tsv)."""
    out: dict[str, float] = {}
    for tsv in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        rows = tsv.read_text().splitlines()
        if len(rows) < 2:
            continue
        rule = tsv.relative_to(workdir / "results" / "benchmarks").parts[0].removesuffix(".tsv")
        out[rule] = out.get(rule, 0.0) + float(rows[1].split("\t")[0])
    return out


def run_cli(expdir: Path, clf: Path, workdir: Path, cores: int, threads: int) -> float:
    cmd = [sys.executable, "-m", "antrax_pipe.cli", "classify", str(expdir), "--classifier", str(clf),
           "--workdir", str(workdir), "--cores", str(cores), "--threads", str(threads)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir.parent, check=False)
    dt = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"classify failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return dt


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracklets", type=int, default=2000)
    ap.add_argument("--mean-length", type=float, default=20.0)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--target-size", type=int, default=64)
    ap.add_argument("--examples-per-label", type=int, default=10, help="trainset tracklets (5 images) per ID")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="TF threads, CLI jobs and bare model alike")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--model-alone-images", type=int, default=8192)
    ap.add_argument("--again", action="store_true",
                    help="a second CLI run (new workdir, autoids removed, classifier already validated: cache)")
    ap.add_argument("--keep", type=Path, help="build here and keep it (default: a temp dir, removed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)
        args.keep.mkdir(parents=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="cli_bench_"))
    try:
        from antrax_pipe.inference import configure_tf

        configure_tf(args.threads)  # before building the model: TF's thread pools are fixed at its first op
        t0 = time.perf_counter()
        expdir, clf, n_images = build(work, args.tracklets, args.mean_length, args.image_size, args.target_size,
                                      args.seed, args.examples_per_label)
        print(f"built {args.tracklets} tracklets, {n_images} images in {time.perf_counter() - t0:.1f} s", flush=True)
        movie = expdir / "antrax" / "images" / "images_1.mat"
        before = bare_model(clf, movie, args.threads, args.batch_size, args.model_alone_images)
        print(f"bare model (before): {before:.0f} img/s", flush=True)
        runs = []
        for k in range(2 if args.again else 1):
            wd = work / f"run{k}"
            labels = expdir / "antrax" / "labels"  # each run classifies the movie: no autoids yet
            shutil.rmtree(labels / "antrax-pipe", ignore_errors=True)
            for f in labels.glob("autoids_*"):
                f.unlink()
            wall = run_cli(expdir, clf, wd, args.cores, args.threads)
            split = job_split(wd)
            runs.append({"wall_s": round(wall, 2), "img_s": round(n_images / wall),
                         "jobs_s": {r: round(s, 2) for r, s in split.items()}})
            print(f"CLI run {k + 1}: {wall:.1f} s = {n_images / wall:.0f} img/s; jobs: "
                  + ", ".join(f"{r} {s:.1f} s" for r, s in split.items())
                  + f"; outside jobs {wall - sum(split.values()):.1f} s", flush=True)
        after = bare_model(clf, movie, args.threads, args.batch_size, args.model_alone_images)
        print(f"bare model (after):  {after:.0f} img/s", flush=True)
        bare = (before + after) / 2
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        res = {"tracklets": args.tracklets, "images": n_images, "threads": args.threads, "cores": args.cores,
               "bare_img_s": round(bare), "bare_before": round(before), "bare_after": round(after), "runs": runs,
               "ratio": round(runs[0]["img_s"] / bare, 3), "peak_rss_children_mb": round(peak),
               "load": os.getloadavg()}
        if args.again:
            res["ratio_again"] = round(runs[1]["img_s"] / bare, 3)
        print(f"\nratio CLI / bare model: {res['ratio']:.2f} (target >= 0.9)"
              + (f"; second run (validated classifier): {res['ratio_again']:.2f}" if args.again else "")
              + f"\npeak RSS of a job: {res['peak_rss_children_mb']} MB; load {res['load']}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(res, indent=1) + "\n")
        return res
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
