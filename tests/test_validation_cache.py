"""The held-out validation is kept per classifier (content) in <classdir>/.antrax-pipe/ and reused by later runs;
another classifier, another trainset or other settings never reuse it (antrax_pipe.stages.validate_stage)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from fixtures.experiments import write_labels_files
from test_evaluate import LABELS, tiny_classifier  # noqa: F401  (the module fixture: a classdir + classifier.h5)

from antrax_pipe import stages
from antrax_pipe.io.heldout import read_validation

PARAMS = {"method": "antrax", "multi_fraction": 0.25}


@pytest.fixture
def setup(tiny_classifier, tmp_path):  # noqa: F811
    path, _, _ = tiny_classifier
    classdir = tmp_path / "general"
    shutil.copytree(path.parent, classdir)
    labels = write_labels_files(tmp_path / "params", LABELS)
    return classdir / "classifier.h5", labels


def _same(a, b) -> None:
    va, vb = read_validation(a), read_validation(b)
    assert va.status == vb.status and va.meta == vb.meta
    assert va.table.equals(vb.table)
    assert np.array_equal(va.probs, vb.probs) and np.array_equal(va.offsets, vb.offsets)


def test_second_run_reuses_the_validation(setup, tmp_path, monkeypatch):
    clf, labels = setup
    first = stages.validate_stage(clf, labels, tmp_path / "w1" / "validation.h5", PARAMS, threads=1)
    kept = list((clf.parent / ".antrax-pipe").glob("validation-*.h5"))
    assert len(kept) == 1 and kept[0].name.startswith("validation-")

    def fail(*a, **k):
        raise AssertionError("validated again")

    monkeypatch.setattr(stages, "validate_classifier", fail)
    second = stages.validate_stage(clf, labels, tmp_path / "w2" / "validation.h5", PARAMS, threads=1)
    _same(first, second)


def test_other_classifier_settings_or_trainset_are_not_reused(setup, tmp_path, monkeypatch):
    clf, labels = setup
    stages.validate_stage(clf, labels, tmp_path / "a.h5", PARAMS, threads=1)
    calls = []
    real = stages.validate_classifier
    monkeypatch.setattr(stages, "validate_classifier", lambda *a, **k: calls.append(1) or real(*a, **k))
    stages.validate_stage(clf, labels, tmp_path / "b.h5", {**PARAMS, "multi_fraction": 0.5}, threads=1)
    assert len(calls) == 1
    with h5py.File(clf, "a") as f:  # another classifier file (other bytes) in the same classdir
        f.attrs["antrax_pipe_test"] = "other"
    stages.validate_stage(clf, labels, tmp_path / "c.h5", PARAMS, threads=1)
    assert len(calls) == 2
    png = next((clf.parent / "examples").rglob("*.png"))
    png.unlink()  # the trainset changed
    stages.validate_stage(clf, labels, tmp_path / "d.h5", PARAMS, threads=1)
    assert len(calls) == 3
    assert len(list((clf.parent / ".antrax-pipe").glob("validation-*.h5"))) == 4


def test_damaged_or_foreign_cache_file_is_recomputed(setup, tmp_path, monkeypatch):
    clf, labels = setup
    stages.validate_stage(clf, labels, tmp_path / "a.h5", PARAMS, threads=1)
    (kept,) = (clf.parent / ".antrax-pipe").glob("validation-*.h5")
    with h5py.File(kept, "a") as f:
        f.attrs["cache_key"] = "0" * 64  # made for another key
    calls = []
    real = stages.validate_classifier
    monkeypatch.setattr(stages, "validate_classifier", lambda *a, **k: calls.append(1) or real(*a, **k))
    stages.validate_stage(clf, labels, tmp_path / "b.h5", PARAMS, threads=1)
    kept.write_bytes(b"not hdf5")
    stages.validate_stage(clf, labels, tmp_path / "c.h5", PARAMS, threads=1)
    assert len(calls) == 2
    _same(tmp_path / "a.h5", tmp_path / "c.h5")
