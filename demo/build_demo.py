#!/usr/bin/env python
"""Write the embedded demo: two anTraX experiments made of real labelled blob images, with ground truth.

Why a generated demo: the anTraX example data ships no ``images_<m>.mat`` (too large), so we rebuild experiments the
way anTraX/MATLAB writes them (tests/fixtures/) from real images of the anTraX example trainset. Tracklets used in
the movies and in the trainsets are disjoint (split by tracklet, never by image) and movie tracklets are only taken
from tracklets whose frames all carry one label, so accuracy measured on the demo is honest.

Deterministic: the same tarball and seed give byte-identical files. Run from anywhere:

    python demo/build_demo.py [--tarball PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from fixtures.experiments import build_experiment, make_labelset, write_ground_truth  # noqa: E402
from fixtures.trainset import (  # noqa: E402
    EXP_FOR1, EXP_T12, TRAINSET_TARBALL, RealTracklet, TrainsetIndex, load_real_tracklets, multi_label_keys, trainset_index)

SEED = 20200430
ID_LABELS = ("BB", "GP", "PB", "PG", "PO", "PP")  # the IDs with the most tracklets in EXP_T12
SIZE = 48  # EXP_T12's image side; NoAnt images (86 px) are resized to it
MAX_FRAMES_MOVIE = 40
MAX_FRAMES_TRAIN = 25
N_MOVIE = {"Unknown": 8, "NoAnt": 8}
N_TRAIN = {"Unknown": 8, "NoAnt": 10}
# (experiment, movie) slots that movie tracklets are dealt to, and the two trainsets
SLOTS = (("colonyA", 1), ("colonyA", 2), ("colonyB", 1), ("colonyB", 2))
COLONIES = ("colonyA", "colonyB")
PARTED = {"colonyA": {}, "colonyB": {2: 2}}
NFRAMES = {"colonyA": {1: 6000, 2: 6000}, "colonyB": {1: 6000, 2: 4000}}


def _rng(label: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(label.encode())])


def split_tracklets(index: TrainsetIndex) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """label → movie keys, label → train keys. Movie keys: single-label tracklets only; train keys: the rest."""
    multi = multi_label_keys(index)
    exp_of = {lab: EXP_T12 for lab in ID_LABELS + ("Unknown",)} | {"NoAnt": EXP_FOR1}
    movie, train, used = {}, {}, set()
    for lab in ID_LABELS + ("Unknown", "NoAnt"):
        keys = sorted(k for k in index[lab] if k.startswith(exp_of[lab] + "."))
        n_movie = N_MOVIE.get(lab, (len(keys) + 1) // 2)
        eligible = [k for k in keys if k not in multi and k not in used]
        pick = _rng(lab).permutation(len(eligible))
        movie[lab] = sorted(eligible[i] for i in pick[:n_movie])
        rest = [k for k in keys if k not in movie[lab]]
        rest = [rest[i] for i in _rng(lab + "/train").permutation(len(rest))]
        train[lab] = sorted(rest[: N_TRAIN.get(lab, len(rest))])
        used.update(movie[lab])
    # a key filed under two labels may be trained under both, but must never also be in a movie
    all_train = {k for ks in train.values() for k in ks}
    all_movie = {k for ks in movie.values() for k in ks}
    assert not all_train & all_movie, "train/movie tracklets overlap"
    return movie, train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tarball", default=str(TRAINSET_TARBALL))
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args(argv)
    out = Path(args.out)
    index = trainset_index(args.tarball)
    movie_keys, train_keys = split_tracklets(index)
    size_of = {lab: (SIZE if lab == "NoAnt" else None) for lab in movie_keys}
    movie_tr = load_real_tracklets(movie_keys, MAX_FRAMES_MOVIE, size_of, args.tarball)
    train_tr = load_real_tracklets(train_keys, MAX_FRAMES_TRAIN, size_of, args.tarball)

    # deal tracklets: movies round-robin over SLOTS, trainsets alternating over COLONIES, offset per label
    slots: dict[tuple[str, int], list[RealTracklet]] = {s: [] for s in SLOTS}
    trainsets: dict[str, dict[str, list[RealTracklet]]] = {c: {} for c in COLONIES}
    for j, lab in enumerate(movie_tr):
        for i, t in enumerate(movie_tr[lab]):
            slots[SLOTS[(i + j) % len(SLOTS)]].append(t)
        # longest first, dealt A,B,B,A,... so both colonies get a similar number of images per label
        for i, t in enumerate(sorted(train_tr[lab], key=lambda t: (-len(t), t.key))):
            trainsets[COLONIES[(i + j + (i // 2)) % 2]].setdefault(lab, []).append(t)
    labels = make_labelset(ID_LABELS)

    for sub in ("experiments", "ground_truth"):
        shutil.rmtree(out / sub, ignore_errors=True)
    prov = ["experiment,movie,tracklet,label,source,n_images"]
    for ci, colony in enumerate(COLONIES):
        movies = {}
        for (c, m), items in slots.items():
            if c == colony:
                order = np.random.default_rng([SEED, ci, m]).permutation(len(items))
                movies[m] = [items[i] for i in order]
        built = build_experiment(out / "experiments", colony, movies, labels, session="antrax",
                                 parted=PARTED[colony], with_passed=True, seed=SEED + ci,
                                 trainset=trainsets[colony], nframes=NFRAMES[colony])
        write_ground_truth(out / "ground_truth" / f"{colony}.csv", built)
        for m in sorted(built.truth):
            for t in built.sorted_tracklets(m):
                prov.append(f"{colony},{m},{t},{built.truth[m][t]},{built.sources[m][t]},{len(built.images[m][t])}")
        n_one = sum(len(v) == 1 for mv in built.images.values() for v in mv.values())
        print(f"{colony}: movies {sorted(built.truth)}, tracklets "
              f"{ {m: len(v) for m, v in built.truth.items()} }, one-frame {n_one}, trainset "
              f"{ {lab: sum(len(t) for t in ts) for lab, ts in sorted(trainsets[colony].items())} }")
    (out / "ground_truth" / "provenance.csv").write_text("\n".join(prov) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
