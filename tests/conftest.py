"""Shared fixtures: real labelled tracklets, a tiny real-image anTraX experiment, the demo.

Real images come from the shared trainset tarball (``ANTRAX_TRAINSET_TARBALL``, default
/work/shared/data/antrax-demo-trainset.tar.gz), cached in pytest's cache dir after the first run (~3 s once, then
~0.1 s); where the tarball is absent (e.g. CI) they come from the committed demo trainsets instead. Either way they
are real anTraX blob images with known labels.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

# tests/ on sys.path in every import mode, so that test modules in every folder import the fixture modules as
# ``from fixtures.experiments import build_experiment`` (pytest's default "prepend" mode adds it too, for this file).
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from antrax_pipe.model import LabelSet  # noqa: E402
from fixtures.experiments import BuiltExperiment, build_experiment, make_labelset  # noqa: E402
from fixtures.trainset import (  # noqa: E402
    EXP_FOR1, EXP_T12, TRAINSET_TARBALL, RealTracklet, extract_real_examples, read_trainset_dir)

REPO = TESTS.parent
DEMO_DIR = REPO / "demo"

#: label → (source experiment, resize-to) for the small real selection used by the tests
REAL_SELECTION = {"PB": (EXP_T12, None), "PG": (EXP_T12, None), "Unknown": (EXP_T12, None),
                  "NoAnt": (EXP_FOR1, 48)}
REAL_PER_LABEL = 2
REAL_MAX_FRAMES = 8
_CACHE_VERSION = 1


def _from_tarball(tarball: Path) -> dict[str, list[RealTracklet]]:
    return extract_real_examples(None, REAL_SELECTION, REAL_PER_LABEL, REAL_MAX_FRAMES, seed=1,
                                 experiments={lab: exp for lab, (exp, _) in REAL_SELECTION.items()},
                                 size={lab: size for lab, (_, size) in REAL_SELECTION.items()},
                                 tarball=tarball, single_label_only=True)


def _from_demo() -> dict[str, list[RealTracklet]]:
    out: dict[str, list[RealTracklet]] = {}
    for exdir in sorted(DEMO_DIR.glob("experiments/*/*/classifier/examples")):
        for label, ts in read_trainset_dir(exdir, REAL_SELECTION).items():
            out.setdefault(label, []).extend(ts)
    picked = {}
    for label, ts in out.items():
        chosen = sorted(ts, key=lambda t: t.key)[:REAL_PER_LABEL]
        picked[label] = [RealTracklet(t.key, t.label, t.images[:REAL_MAX_FRAMES], t.frames[:REAL_MAX_FRAMES])
                         for t in chosen]
    return picked


def _save(path: Path, data: dict[str, list[RealTracklet]]) -> None:
    arrays, meta = {}, []
    for label, ts in data.items():
        for i, t in enumerate(ts):
            arrays[f"a{len(meta)}"] = t.images
            meta.append({"key": t.key, "label": label, "frames": list(t.frames)})
    np.savez(path, meta=json.dumps(meta), **arrays)


def _load(path: Path) -> dict[str, list[RealTracklet]]:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        out: dict[str, list[RealTracklet]] = {}
        for i, m in enumerate(meta):
            out.setdefault(m["label"], []).append(RealTracklet(m["key"], m["label"], z[f"a{i}"], tuple(m["frames"])))
    return out


@pytest.fixture(scope="session")
def real_tracklets(request) -> dict[str, list[RealTracklet]]:
    """label → 2 real tracklets (≤8 frames, 48 px, RGB white bg) for PB, PG, Unknown (t12) and NoAnt (FOR1)."""
    tarball = TRAINSET_TARBALL
    if not tarball.is_file():
        if not any(DEMO_DIR.glob("experiments/*/*/classifier/examples")):
            pytest.skip("no real images: neither the trainset tarball nor the demo trainsets are present")
        return _from_demo()
    if getattr(request.config, "cache", None) is None:  # run with -p no:cacheprovider
        return _from_tarball(tarball)
    st = tarball.stat()
    tag = hashlib.sha1(json.dumps([_CACHE_VERSION, str(tarball), st.st_size, st.st_mtime, REAL_SELECTION,
                                   REAL_PER_LABEL, REAL_MAX_FRAMES]).encode()).hexdigest()[:12]
    cache = Path(request.config.cache.mkdir("antrax-real-tracklets")) / f"{tag}.npz"
    if cache.is_file():
        try:
            return _load(cache)
        except Exception:  # a damaged cache is rebuilt, never trusted
            cache.unlink(missing_ok=True)
    data = _from_tarball(tarball)
    tmp = cache.with_suffix(".tmp.npz")
    _save(tmp, data)
    tmp.replace(cache)
    return data


@pytest.fixture(scope="session")
def real_labels(real_tracklets) -> LabelSet:
    """labels.csv content matching :func:`real_tracklets`: IDs PB, PG; NoAnt; Unknown; tag colours B G O P."""
    return make_labelset([lab for lab in real_tracklets if lab not in ("NoAnt", "Unknown")])


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory, real_tracklets, real_labels) -> BuiltExperiment:
    """A real-image experiment ``tinyexp`` (session ``antrax``): movie 1 plain, movie 2 parted in 2, frame_passed
    files and ``#refs#`` groups; every real tracklet of :func:`real_tracklets` is in a movie, plus a one-frame
    tracklet. Treat as read-only."""
    flat = [t for ts in real_tracklets.values() for t in ts]
    movie1 = [t for i, t in enumerate(flat) if i % 2 == 0]
    movie2 = [t for i, t in enumerate(flat) if i % 2 == 1]
    # one-frame tracklet in movie 1, cut from a real one, so the (3,W,H) layout is always covered
    one = flat[1]
    movie1.append(RealTracklet(one.key + "#f0", one.label, one.images[:1], one.frames[:1]))
    root = tmp_path_factory.mktemp("experiments")
    return build_experiment(root, "tinyexp", {1: movie1, 2: movie2}, real_labels, session="antrax",
                            parted={2: 2}, with_passed=True, seed=3, refs=True)


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO_DIR
