#!/usr/bin/env python
"""Honest accuracy evaluation of a training recipe on the shared real trainset (issue 8).

Splits are grouped by tracklet (frames of one tracklet are near-duplicates; an image-level split measures
memorisation):

* ``known``   — a seeded fraction of the tracklets of every label (all 9 experiments) is held out;
* ``loeo:EXP`` — leave one experiment out: every example of ``EXP`` is held out, the model never saw that experiment.

Only the training part is given to :func:`antrax_pipe.training.train_classifier` (which makes its own grouped
validation split inside it). The held-out tracklets are then classified image by image with the saved classifier,
read back with :func:`antrax_pipe.classifier.load_classifier` and the same preprocessing inference uses, and
aggregated per tracklet with anTraX's rule (:func:`antrax_pipe.aggregation.aggregate_tracklet`, default
:class:`AggregationParams`, labels = the 16 IDs + ``NoAnt`` (non-ant) + ``Unknown`` (other)). Metrics, as anTraX's eLife
Table 2:

* image accuracy (all held-out images);
* ID error: among held-out tracklets whose truth is an ID and that were given an ID, the fraction given the wrong one;
* assigned: the fraction of ID tracklets that were given an ID at all;
* non-ID given an ID: the fraction of ``NoAnt``/``Unknown`` tracklets that were given an ID.

Each run appends one row (config + metrics) to ``bench/results/accuracy_runs.tsv`` and saves the held-out
probabilities (``--save-probs``) so that aggregation settings can be re-scored without retraining (``--rescore``).

    python bench/accuracy_eval.py --split known --split loeo:T4_colony_part1 --tag default
    python bench/accuracy_eval.py --split known --recipe antrax --tag antrax
    python bench/accuracy_eval.py --rescore /tmp/probs_known.npz
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from antrax_pipe.aggregation import AggregationParams, aggregate_tracklet
from antrax_pipe.model import ANT_CATEGORY, NOANT_CATEGORY, OTHER_CATEGORY, LabelSet
from antrax_pipe.io.examples import Example, list_examples

DEFAULT_TAR = Path("/work/shared/data/antrax-demo-trainset.tar.gz")
RESULTS = Path(__file__).resolve().parent / "results" / "accuracy_runs.tsv"
NON_ID = ("NoAnt", "Unknown")


def labelset(classes: Sequence[str]) -> LabelSet:
    """IDs = every class but NoAnt/Unknown; NoAnt is a non-ant label, Unknown an 'other' label (as labels.csv)."""
    ids = tuple(c for c in classes if c not in NON_ID)
    return LabelSet({ANT_CATEGORY: ids, NOANT_CATEGORY: ("NoAnt",), OTHER_CATEGORY: ("Unknown",)})


def extracted_classdir(tar: Path, workdir: Path) -> Path:
    """Extract the trainset tarball once into ``workdir`` (never into /work/shared) → the dir with ``examples/``."""
    marker = workdir / ".extracted"
    if not marker.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as tf:
            tf.extractall(workdir, filter="data")
        marker.write_text(str(tar))
    hits = sorted(p.parent for p in workdir.rglob("examples") if p.is_dir())
    if not hits:
        raise SystemExit(f"{tar}: no examples/ directory inside")
    return hits[0]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"eval{seed}:{key}".encode()).hexdigest()


def split_examples(examples: list[Example], split: str, frac: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, test) by tracklet. ``known``: per label, ``max(1, round(frac·n))`` of its tracklets (labels with ≥2)
    go to test; ``loeo:EXP``: all of EXP's examples go to test."""
    if split.startswith("loeo:"):
        exp = split.split(":", 1)[1]
        test = [e for e in examples if e.exp == exp]
        if not test:
            raise SystemExit(f"split {split}: no examples of experiment {exp!r}")
        return [e for e in examples if e.exp != exp], test
    if split != "known":
        raise SystemExit(f"unknown split {split!r} (known | loeo:EXPNAME)")
    by_label: dict[str, set[str]] = {}
    for e in examples:
        by_label.setdefault(e.label, set()).add(e.tracklet_key)
    held: set[str] = set()
    for lab, keys in by_label.items():
        ks = sorted(keys, key=lambda k: _rank(seed, k))
        if len(ks) >= 2:
            held.update(ks[: max(1, round(frac * len(ks)))])
    return [e for e in examples if e.tracklet_key not in held], [e for e in examples if e.tracklet_key in held]


def cap_frames(examples: list[Example], per_tracklet: int | None) -> list[Example]:
    """At most ``per_tracklet`` evenly spaced frames of each (tracklet, label): consecutive frames are
    near-duplicates."""
    if not per_tracklet:
        return list(examples)
    groups: dict[tuple[str, str], list[Example]] = {}
    for e in examples:
        groups.setdefault((e.tracklet_key, e.label), []).append(e)
    out = []
    for g in groups.values():
        g = sorted(g, key=lambda e: (e.frame if e.frame is not None else -1, e.path.name))
        if len(g) > per_tracklet:
            idx = np.unique(np.linspace(0, len(g) - 1, per_tracklet).round().astype(int))
            g = [g[i] for i in idx]
        out += g
    return out


def temper(probs: np.ndarray, t: float) -> np.ndarray:
    """Softmax with temperature t applied to probabilities: p^(1/t), renormalised (= softmax(logits / t))."""
    if t == 1:
        return probs
    lp = np.log(np.clip(probs.astype(np.float64), 1e-30, 1)) / t
    lp -= lp.max(1, keepdims=True)
    e = np.exp(lp)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def load_probs(path: Path) -> tuple[dict, list[Example]]:
    """A saved npz of held-out (or validation) probabilities and its examples, in row order."""
    d = dict(np.load(path, allow_pickle=True))
    return d, [Example(Path(f), lab, k, frame=int(fr)) for f, lab, k, fr in
               zip(d["paths"], d["labels"], d["keys"], d["frames"])]


def score(probs: np.ndarray, classes: Sequence[str], test: list[Example],
          params: AggregationParams = AggregationParams()) -> dict:
    """Image accuracy + anTraX Table-2 tracklet metrics of held-out probabilities (rows in ``test`` order)."""
    labels = labelset(classes)
    ids = set(labels.ant_labels)
    y = np.array([list(classes).index(e.label) for e in test])
    groups: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(test):
        groups.setdefault((e.tracklet_key, e.label), []).append(i)
    n_id = n_assigned = n_wrong = n_non = n_non_given = n_correct_trk = 0
    for (key, truth), idx in groups.items():
        idx = sorted(idx, key=lambda i: (test[i].frame if test[i].frame is not None else -1))
        got = aggregate_tracklet(probs[idx], classes, labels, params, tracklet=key).label
        n_correct_trk += got == truth
        if truth in ids:
            n_id += 1
            if got in ids:
                n_assigned += 1
                n_wrong += got != truth
        else:
            n_non += 1
            n_non_given += got in ids
    return {
        "n_images": len(test),
        "n_tracklets": len(groups),
        "image_acc": float((probs.argmax(1) == y).mean()),
        "tracklet_acc": n_correct_trk / len(groups),
        "n_id_tracklets": n_id,
        "id_error": n_wrong / n_assigned if n_assigned else float("nan"),
        "assigned": n_assigned / n_id if n_id else float("nan"),
        "n_nonid_tracklets": n_non,
        "nonid_given_id": n_non_given / n_non if n_non else float("nan"),
    }


def _row_text(name: str, m: dict) -> str:
    return (f"| {name} | {m['image_acc']:.3f} | {m['tracklet_acc']:.3f} | {m['id_error']:.3f} "
            f"({100 * m['assigned']:.0f} % of {m['n_id_tracklets']} assigned) | "
            f"{m['nonid_given_id']:.3f} (of {m['n_nonid_tracklets']}) |")


def print_table(rows: list[tuple[str, dict]]) -> None:
    print("| split | image acc | tracklet acc | ID error (assigned) | non-ID tracklets given an ID |")
    print("|---|---|---|---|---|")
    for name, m in rows:
        print(_row_text(name, m))


def predict_examples(model_path: Path, test: list[Example]) -> tuple[np.ndarray, list[str]]:
    """Classify examples with the saved classifier exactly as inference does (shared preprocessing, saved model)."""
    from antrax_pipe.classifier import load_classifier
    from antrax_pipe.trainset import load_example_images

    model, card = load_classifier(model_path, compile=False)
    x = load_example_images(test, card.preprocess_spec())
    out = [np.asarray(model.predict_on_batch(x[i:i + 512].astype(np.float32))) for i in range(0, len(x), 512)]
    return np.concatenate(out).astype(np.float32), list(card.classes)


def append_result(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    cols = list(row)
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f, delimiter="\t"), None)
        if header and header != cols:
            cols = header + [c for c in cols if c not in header]
            with open(path, newline="") as f:
                old = list(csv.DictReader(f, delimiter="\t"))
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, cols, delimiter="\t", extrasaction="ignore")
                w.writeheader()
                w.writerows(old)
            new = False
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, cols, delimiter="\t", extrasaction="ignore", restval="")
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def rescore(a: argparse.Namespace) -> int:
    """``--rescore``: score saved probabilities under other aggregation settings / temperatures; no training."""
    params = AggregationParams(method=a.method)
    if a.min_conf is not None:
        params = params.with_(min_conf=a.min_conf)
    settings = [(f" ev={t:g}", params.with_(min_evidence=t)) for t in a.min_evidence] if a.min_evidence else [
        ("", params)]
    rows: list[tuple[str, dict]] = []
    pooled: dict[str, list[dict]] = {}
    for p in a.rescore:
        d, test = load_probs(p)
        if a.recalibrate:
            rows += _recalibrated(p, d, test, params, a.recalibrate)
            continue
        probs, what, t_saved = d["probs"], "T", 1.0
        if a.uncalibrated:
            t_saved, what = float(np.load(p.with_name(p.stem + "_validation.npz"))["temperature"]), "raw T"
            probs = temper(probs, 1 / t_saved)
        for t in a.temperatures:
            for tag, prm in settings:
                rows.append((f"{p.stem} {what}={t:g}{tag}", score(temper(probs, t), list(d["classes"]), test, prm)))
                if a.validation:
                    v, val = load_probs(p.with_name(p.stem + "_validation.npz"))
                    vprobs = temper(temper(v["probs"], 1 / t_saved) if a.uncalibrated else v["probs"], t)
                    pooled.setdefault(f"{what}={t:g}{tag}", []).append(score(vprobs, list(v["classes"]), val, prm))
    print_table(rows)
    if pooled:
        print_pooled(pooled, a.penalty)
    return 0


def _recalibrated(p: Path, d: dict, test: list[Example], params: AggregationParams,
                  penalties: Sequence[float]) -> list[tuple[str, dict]]:
    from antrax_pipe.training import fit_gate_temperature

    v, val = load_probs(p.with_name(p.stem + "_validation.npz"))
    t_saved, classes = float(v["temperature"]), list(v["classes"])
    raw_val, raw_test = temper(v["probs"], 1 / t_saved), temper(d["probs"], 1 / t_saved)
    y = np.array([classes.index(e.label) for e in val])
    rows = []
    for pen in penalties:
        t, _ = fit_gate_temperature(raw_val, y, [e.tracklet_key for e in val], classes, penalty=pen)
        rows.append((f"{p.stem} penalty {pen:g} (t={t:.2f}, saved t={t_saved:.2f})",
                     score(temper(raw_test, t), classes, test, params)))
    return rows


def print_pooled(pooled: dict[str, list[dict]], penalty: float) -> None:
    """Validation tracklets of every run pooled, per setting: counts and right − penalty × (wrong + non-ID given)."""
    print(f"\n| setting (validation, {len(next(iter(pooled.values())))} runs pooled) | ID tracklets | right | wrong | "
          f"non-ID given an ID (of) | right - {penalty:g} x (wrong + non-ID given) |")
    print("|---|---|---|---|---|---|")
    best = None
    for name, ms in pooled.items():
        n_id = sum(m["n_id_tracklets"] for m in ms)
        given = sum(round(m["assigned"] * m["n_id_tracklets"]) for m in ms)
        wrong = sum(round(m["id_error"] * m["assigned"] * m["n_id_tracklets"]) for m in ms if m["assigned"])
        n_non = sum(m["n_nonid_tracklets"] for m in ms)
        non = sum(round(m["nonid_given_id"] * m["n_nonid_tracklets"]) for m in ms if m["n_nonid_tracklets"])
        obj = given - wrong - penalty * (wrong + non)
        if best is None or obj > best[0]:  # ties: the first (lowest) setting
            best = (obj, name)
        print(f"| {name} | {n_id} | {given - wrong} | {wrong} | {non} ({n_non}) | {obj:.1f} |")
    print(f"best on validation: {best[1]} ({best[0]:.1f})")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tar", type=Path, default=DEFAULT_TAR)
    ap.add_argument("--classdir", type=Path, help="an already extracted trainset (dir holding examples/)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "antrax_eval")
    ap.add_argument("--split", action="append", help="known | loeo:EXP (repeatable; default known)")
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--split-seed", type=int, default=1)
    ap.add_argument("--train-frames", type=int, default=None, help="cap frames per training tracklet")
    ap.add_argument("--test-frames", type=int, default=None, help="cap frames per held-out tracklet")
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--train-kwargs", default="{}", help="JSON dict of extra train_classifier arguments")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--save-probs", type=Path, help="dir for held-out probabilities (npz per split)")
    ap.add_argument("--keep-models", type=Path, help="dir to keep the trained classifiers in (<tag>_<split>.h5)")
    ap.add_argument("--rescore", type=Path, nargs="*", help="re-score saved npz files; no training")
    ap.add_argument("--min-conf", type=float, default=None, help="aggregation min_conf for --rescore")
    ap.add_argument("--method", default="antrax",
                    help="aggregation method for --rescore (antrax|mean|vote|evidence)")
    ap.add_argument("--min-evidence", type=float, nargs="*", default=None,
                    help="--rescore with --method evidence: score each of these min_evidence thresholds")
    ap.add_argument("--validation", action="store_true",
                    help="--rescore: also score each run's <name>_validation.npz (the training's own grouped "
                         "validation tracklets) and print, per setting, the pooled validation counts and "
                         "right - PENALTY x (wrong + non-ID given): the honest way to choose a threshold")
    ap.add_argument("--penalty", type=float, default=1.5, help="--validation: cost of a wrong / non-ID assignment")
    ap.add_argument("--temperatures", type=float, nargs="*", default=[1.0],
                    help="--rescore: also score softmax temperatures T (p ∝ p^(1/T))")
    ap.add_argument("--uncalibrated", action="store_true",
                    help="--rescore: undo the saved model's temperature first (read from <name>_validation.npz), "
                         "i.e. score what training with calibrate=false would have saved; --temperatures then "
                         "apply to the raw probabilities")
    ap.add_argument("--recalibrate", type=float, nargs="*", metavar="PENALTY",
                    help="--rescore: redo the training's gate calibration with these penalties on the run's saved "
                         "validation probabilities (<name>_validation.npz) and score the held-out set at the chosen "
                         "temperature — exactly what training with train_kwargs gate_penalty would have saved")
    a = ap.parse_args(argv)

    if a.rescore:
        return rescore(a)

    classdir = a.classdir or extracted_classdir(a.tar, a.workdir)
    examples = list_examples(classdir)
    kwargs = json.loads(a.train_kwargs)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for split in a.split or ["known"]:
        train, test = split_examples(examples, split, a.test_fraction, a.split_seed)
        train_used = cap_frames(train, a.train_frames)
        test = cap_frames(test, a.test_frames)
        print(f"[{split}] train {len(train_used)} images / {len({e.tracklet_key for e in train})} tracklets; "
              f"test {len(test)} images / {len({e.tracklet_key for e in test})} tracklets", flush=True)
        with tempfile.TemporaryDirectory(prefix="acc_eval_") as tmp:
            model_path = Path(tmp) / "model.h5"
            from antrax_pipe.training import train_classifier

            t0 = time.time()
            card = train_classifier(classdir, examples=train_used, output=model_path, scratch=True,
                                    recipe=a.recipe, threads=a.threads, seed=a.seed,
                                    progress=lambda s: print("   ", s, flush=True), **kwargs)
            train_s = time.time() - t0
            probs, classes = predict_examples(model_path, test)
            val_keys = set(card.metrics.get("validation", {}).get("val_tracklets", []))
            val = [e for e in train_used if e.tracklet_key in val_keys]
            val_probs = predict_examples(model_path, val)[0] if (a.save_probs and val) else None
            if a.keep_models:
                import shutil

                a.keep_models.mkdir(parents=True, exist_ok=True)
                shutil.copy2(model_path, a.keep_models / f"{a.tag or 'run'}_{split.replace(':', '_')}.h5")
        m = score(probs, classes, test)
        rows.append((split, m))
        print(_row_text(split, m), flush=True)
        if a.save_probs:
            a.save_probs.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                a.save_probs / f"{a.tag or 'run'}_{split.replace(':', '_')}.npz", probs=probs,
                classes=np.array(classes), paths=np.array([str(e.path) for e in test]),
                labels=np.array([e.label for e in test]), keys=np.array([e.tracklet_key for e in test]),
                frames=np.array([e.frame if e.frame is not None else -1 for e in test]))
            if val_probs is not None:  # the training's own validation tracklets, to study calibration honestly
                np.savez_compressed(
                    a.save_probs / f"{a.tag or 'run'}_{split.replace(':', '_')}_validation.npz", probs=val_probs,
                    classes=np.array(classes), paths=np.array([str(e.path) for e in val]),
                    labels=np.array([e.label for e in val]), keys=np.array([e.tracklet_key for e in val]),
                    frames=np.array([e.frame if e.frame is not None else -1 for e in val]),
                    temperature=card.training.get("temperature", 1.0))
        val = card.metrics.get("validation", {})
        tr = card.training
        append_result(a.results, {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "tag": a.tag, "split": split, "recipe": a.recipe,
            "train_kwargs": json.dumps(kwargs, sort_keys=True), "train_frames": a.train_frames or "all",
            "n_train_images": len(train_used), "target_size": card.target_size, "arch": card.arch,
            "epochs_run": tr.get("epochs_run"), "best_epoch": tr.get("best_epoch"),
            "temperature": tr.get("temperature", ""), "train_s": round(train_s, 1), "threads": a.threads,
            "val_image_acc": val.get("image_accuracy", ""), "val_tracklet_acc": val.get("tracklet_accuracy", ""),
            "recipe_resolved": json.dumps({k: tr.get(k) for k in (
                "arch", "frames_per_tracklet", "lr_schedule", "label_smoothing", "unknown_weight", "patience",
                "epochs", "bn_momentum")} | {"aug": {k: v for k, v in tr.get("aug_options", {}).items() if v},
                "calibration": {k: card.metrics.get("calibration", {}).get(k) for k in ("method", "penalty")}},
                sort_keys=True),
            **{k: m[k] for k in ("n_images", "n_tracklets", "image_acc", "tracklet_acc", "n_id_tracklets", "id_error",
                                 "assigned", "n_nonid_tracklets", "nonid_given_id")},
        })
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
