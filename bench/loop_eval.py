#!/usr/bin/env python
"""The retraining loop, measured (issue 14, item 4): how fast does a general classifier learn a new experiment from
the tracklets the review suggests?

1. A *general* classifier is trained on the shared real trainset without experiment ``EXP`` (leave one experiment
   out; or ``--general MODEL`` reuses one trained earlier by this script).
2. Every image of ``EXP`` is classified with it and aggregated per tracklet (anTraX's rule, default gates).
3. ``label_next`` (:func:`antrax_pipe.review.label_next`, on the experiment's tracklet table and the rule's gates,
   confused pairs from the classifier card — what ``classifier/label_next.csv`` holds in the workflow) ranks the
   tracklets; the top ones are "labelled" from the truth the way the app does it: their frames are exported
   (:func:`antrax_pipe.trainset.export_images`) into a copy of the classdir under their true labels. When
   label_next offers fewer than asked (it only lists tracklets with a reason), the longest unlabelled tracklets
   fill the rest (counted as ``filled``).
4. The classifier is retrained *incrementally* on that classdir (:func:`antrax_pipe.training.train_classifier`, not
   scratch) and the experiment is classified again.

After each step it prints ID error and assignment on the REST of the experiment (tracklets not labelled so far),
non-ID tracklets given an ID there, and the retraining time; at the end, every step again on the tracklets never
labelled (one common set). ``--ks 5 10 20`` = cumulative labelled tracklets after each step.

    python bench/loop_eval.py --experiment T4_colony_part1 --ks 5 10 20
    python bench/loop_eval.py --experiment T4_colony_part1 --epochs 8 --retrain-epochs 4   # small, ~15 min CPU
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_eval import DEFAULT_TAR, extracted_classdir, labelset, predict_examples, score  # noqa: E402

from antrax_pipe.aggregation import AggregationParams, aggregate_tracklet  # noqa: E402
from antrax_pipe.io.examples import Example, find_classes, list_examples, read_example_image  # noqa: E402
from antrax_pipe.model import TrackletName  # noqa: E402

NON_ID = ("NoAnt", "Unknown")


def copy_classdir(src: Path, dst: Path, experiment: str) -> list[str]:
    """``dst/examples`` = ``src/examples`` without ``experiment``'s images (hard links: nothing is modified in place,
    export writes new files). Returns the classes, which must stay those of the full trainset."""
    if dst.exists():
        shutil.rmtree(dst)
    n = 0
    for ex in list_examples(src):
        target = dst / "examples" / ex.label / ex.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if ex.exp != experiment:
            try:
                os.link(ex.path, target)
            except OSError:
                shutil.copy2(ex.path, target)
            n += 1
    classes = find_classes(dst / "examples")
    if classes != find_classes(src / "examples"):
        raise SystemExit(f"{experiment}: some label has examples only in this experiment; the class list would "
                         f"change ({classes})")
    print(f"classdir copy without {experiment}: {n} images, {len(classes)} classes in {dst}", flush=True)
    return classes


def tracklet_table(probs, classes: list[str], test: list[Example], params: AggregationParams) -> pd.DataFrame:
    """The experiment's tracklet table as the review stage has it (movie, tracklet, label, kind, score, frames)."""
    labels = labelset(classes)
    by_trk: dict[str, list[int]] = {}
    for i, e in enumerate(test):
        by_trk.setdefault(e.tracklet, []).append(i)
    rows = []
    for trk, idx in by_trk.items():
        idx = sorted(idx, key=lambda i: test[i].frame or 0)
        a = aggregate_tracklet(probs[idx], classes, labels, params, tracklet=trk)
        kind = "ID" if a.label in labels.ant_labels else ("non-ant" if a.label in labels.noant_labels else "Unknown")
        rows.append(dict(movie=TrackletName.parse(trk).movie, tracklet=trk, label=a.label, kind=kind,
                         score=a.score, frames=len(idx)))
    return pd.DataFrame(rows)


def gates_table(probs, classes: list[str], test: list[Example], params: AggregationParams, workdir: Path):
    """:func:`antrax_pipe.review.tracklet_gates` on per-movie probabilities files written as inference writes them."""
    import h5py

    from antrax_pipe.io.probabilities import ProbabilitiesWriter
    from antrax_pipe.review import tracklet_gates

    labels = labelset(classes)
    by_movie: dict[int, dict[str, list[int]]] = {}
    for i, e in enumerate(test):
        by_movie.setdefault(TrackletName.parse(e.tracklet).movie, {}).setdefault(e.tracklet, []).append(i)
    out = []
    for movie, trks in sorted(by_movie.items()):
        path = workdir / f"probs_{movie}.h5"
        with h5py.File(path, "w") as h5:
            w = ProbabilitiesWriter(h5, classes)
            ends = []
            for idx in trks.values():
                w.append(probs[sorted(idx, key=lambda i: test[i].frame or 0)])
                ends.append(w.rows)
            w.finish(list(trks), [0] * len(trks), ends, {"image_files": "[]"})
        out.append(tracklet_gates(path, labels, params, movie))
    return pd.concat(out, ignore_index=True)


def pick_next(tt: pd.DataFrame, gates: pd.DataFrame, params: AggregationParams, card, labels, n: int,
              labelled: set[str]) -> tuple[list[str], Counter]:
    """The top ``n`` of label_next (excluding tracklets labelled already), filled up with the longest others."""
    from antrax_pipe.review import confused_pairs_of, label_next

    nxt = label_next(tt, gates, params, confused_pairs_of(card, labels), top=n, exclude=labelled)
    picks = list(nxt["tracklet"])
    reasons = Counter(r.split(";")[0] for r in nxt["reason"])
    rest = tt[~tt["tracklet"].isin(labelled | set(picks))].sort_values(["frames", "tracklet"], ascending=[False, True])
    fill = list(rest["tracklet"][: n - len(picks)])
    if fill:
        reasons["filled (longest)"] += len(fill)
    return picks + fill, reasons


def export_truth(classdir: Path, test: list[Example], tracklets: Sequence[str]) -> int:
    """Export every image of ``tracklets`` under its true label, as the app's export does."""
    from antrax_pipe.trainset import export_images

    n = 0
    groups: dict[tuple[str, str], list[Example]] = {}
    for e in test:
        if e.tracklet in tracklets:
            groups.setdefault((e.tracklet, e.label), []).append(e)
    for (trk, label), exs in groups.items():
        exs.sort(key=lambda e: e.frame or 0)
        images = [read_example_image(e.path) for e in exs]
        written, _ = export_images(classdir / "examples", exs[0].exp, trk, label, images, [e.frame for e in exs])
        n += len(written)
    return n


def _row(step: str, labelled: int, retrain_s: float | None, m: dict, reasons: str = "") -> str:
    rs = f"{retrain_s:.0f}" if retrain_s is not None else "-"
    given = round(m["assigned"] * m["n_id_tracklets"]) if m["n_id_tracklets"] else 0
    wrong = round(m["id_error"] * given) if given else 0
    non = round(m["nonid_given_id"] * m["n_nonid_tracklets"]) if m["n_nonid_tracklets"] else 0
    return (f"| {step} | {labelled} | {m['n_tracklets']} ({m['n_id_tracklets']} ID) | {m['id_error']:.3f} "
            f"({wrong}/{given}) | {100 * m['assigned']:.0f} % | {m['nonid_given_id']:.3f} ({non}/"
            f"{m['n_nonid_tracklets']}) | {rs} | {reasons} |")


def train(classdir: Path, model: Path, scratch: bool, epochs: int, a: argparse.Namespace):
    from antrax_pipe.training import train_classifier

    t0 = time.time()
    card = train_classifier(classdir, output=model, scratch=scratch, epochs=epochs, seed=a.seed, threads=a.threads,
                            progress=(lambda s: print("   ", s, flush=True)) if a.verbose else (lambda s: None))
    return card, time.time() - t0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="T4_colony_part1")
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20], help="cumulative labelled tracklets per step")
    ap.add_argument("--tar", type=Path, default=DEFAULT_TAR)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "loop_eval")
    ap.add_argument("--extracted", type=Path, default=Path(tempfile.gettempdir()) / "antrax_eval")
    ap.add_argument("--general", type=Path, help="reuse this general classifier (trained without EXPERIMENT)")
    ap.add_argument("--save-general", type=Path, help="keep the general classifier here")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the general classifier (default recipe's 30)")
    ap.add_argument("--retrain-epochs", type=int, default=8, help="epochs of each incremental retraining")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    src = extracted_classdir(a.tar, a.extracted)
    test = [e for e in list_examples(src) if e.exp == a.experiment]
    if not test:
        raise SystemExit(f"no examples of experiment {a.experiment!r}")
    classdir = a.workdir / "classdir"
    a.workdir.mkdir(parents=True, exist_ok=True)
    classes = copy_classdir(src, classdir, a.experiment)
    labels, params = labelset(classes), AggregationParams()
    model = classdir / "classifier.h5"
    if a.general:
        shutil.copy2(a.general, model)
        from antrax_pipe.io.classifier import read_card

        card, general_s = read_card(model), None
    else:
        card, general_s = train(classdir, model, True, a.epochs, a)
        print(f"general classifier: {general_s:.0f} s ({a.epochs} epochs max, {card.training.get('epochs_run')} run)",
              flush=True)
        if a.save_general:
            shutil.copy2(model, a.save_general)
    return loop(a, test, classdir, model, card, classes, labels, params, general_s)


def loop(a, test, classdir, model, card, classes, labels, params, general_s) -> int:
    labelled: set[str] = set()
    steps: list[tuple[str, int, float | None, object, str]] = []  # (name, n labelled, retrain s, probs, reasons)
    retrain_s: float | None = general_s
    reasons_txt = "general classifier (trained without the experiment)"
    header = ("| step | labelled tracklets | rest: tracklets | ID error | assigned | non-ID given an ID | "
              "train s | picked by |\n|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    for i in range(len(a.ks) + 1):
        probs, _ = predict_examples(model, test)
        rest = [e for e in test if e.tracklet not in labelled]
        name = "general" if i == 0 else f"+{len(labelled)}"
        steps.append((name, len(labelled), retrain_s, probs, reasons_txt))
        print(_row(name, len(labelled), retrain_s, score(probs[[j for j, e in enumerate(test) if e.tracklet not in
                                                               labelled]], classes, rest), reasons_txt), flush=True)
        if i == len(a.ks):
            break
        tt = tracklet_table(probs, classes, test, params)
        gates = gates_table(probs, classes, test, params, a.workdir)
        n_new = a.ks[i] - len(labelled)
        picks, reasons = pick_next(tt, gates, params, card, labels, n_new, labelled)
        n_img = export_truth(classdir, test, picks)
        labelled |= set(picks)
        reasons_txt = ", ".join(f"{k} {v}" for k, v in reasons.items()) + f" ({n_img} images)"
        card, retrain_s = train(classdir, model, False, a.retrain_epochs, a)
    never = [j for j, e in enumerate(test) if e.tracklet not in labelled]
    for rule, prm in (("antrax", params), ("evidence", AggregationParams(method="evidence"))):
        print(f"\nEvery step on the {len({test[j].tracklet for j in never})} tracklets never labelled, "
              f"aggregate.method {rule}:\n{header}")
        for name, n, s, probs, reasons in steps:
            print(_row(name, n, s, score(probs[never], classes, [test[j] for j in never], prm), reasons))
    np.savez_compressed(a.workdir / "loop_probs.npz", classes=np.array(classes), labelled=np.array(sorted(labelled)),
                        paths=np.array([str(e.path) for e in test]), steps=np.array([st[0] for st in steps]),
                        probs=np.stack([st[3] for st in steps]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
