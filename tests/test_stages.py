"""antrax_pipe.stages called directly, as the workflow scripts call them, on real anTraX-format data and no TensorFlow:
the trainset stage (merge + manifest, label-set check), the aggregate stage on a probabilities file written by
:class:`ProbabilitiesWriter` (autoids + provenance naming the classifier's sha256), and how failed movies are found
and explained from their job logs."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from antrax_pipe.io.atomic import file_sha256
from antrax_pipe.io.autoids import autoids_classifier, read_autoids
from antrax_pipe.io.manifest import manifest_hash, read_manifest
from antrax_pipe.io.probabilities import ProbabilitiesWriter, add_attribute
from antrax_pipe.logutil import stage_logging
from antrax_pipe.model import AntraxFormatError, ClassLabelMismatchError
from antrax_pipe.stages import NOT_RUN, aggregate_stage, failure_reason, find_failures, trainset_stage
from fixtures.mat import write_frame_passed
from fixtures.trainset import write_trainset

# ---------------------------------------------------------------------------------------------- trainset_stage


def _sources(tmp_path: Path, real_tracklets, labels_of: dict[str, list[str]]) -> dict[str, Path]:
    """One classdir per name with real tracklets of the given labels (source i gets the i-th tracklet of a label)."""
    out = {}
    for i, (name, labels) in enumerate(labels_of.items()):
        out[name] = tmp_path / name
        write_trainset(out[name], {lab: [real_tracklets[lab][i % len(real_tracklets[lab])]] for lab in labels})
    return out


def _png_hashes(classdir: Path) -> dict[str, str]:
    """examples/<label>/<file> → sha256 of every PNG under the classdir's examples."""
    ex = classdir / "examples"
    return {p.relative_to(classdir).as_posix(): file_sha256(p) for p in sorted(ex.rglob("*.png"))}


def test_trainset_stage_merges_sources_and_writes_their_manifest(tmp_path, real_tracklets):
    src = _sources(tmp_path, real_tracklets, {"a": ["PB", "PG", "NoAnt"], "b": ["PB", "PG", "NoAnt"]})
    clf = tmp_path / "classifiers" / "general"
    stale = clf / "examples" / "PB" / "old.trj_id1_ti1_1_tf1_1.1.png"  # a removed example of an earlier run
    stale.parent.mkdir(parents=True)
    shutil.copy(next((src["a"] / "examples" / "PB").glob("*.png")), stale)
    out = trainset_stage(clf, [src["a"], src["b"]], clf / "trainset_manifest.tsv")
    assert out == clf / "trainset_manifest.tsv" and out.is_file()
    assert not stale.exists()  # examples are rebuilt from the sources, not added to
    assert not list(clf.glob(".merge-*"))  # the staging folder is gone
    merged = _png_hashes(clf)
    want = sorted(list(_png_hashes(src["a"]).values()) + list(_png_hashes(src["b"]).values()))
    assert sorted(merged.values()) == want  # every source image once, byte for byte
    m = read_manifest(out)
    assert {e.path: e.sha256 for e in m.entries} == merged
    assert m.classes == ["NoAnt", "PB", "PG"]
    keys = {f"{e.exp}.{e.tracklet}" for e in m.entries}
    assert keys == {real_tracklets[lab][i].key for lab in ("PB", "PG", "NoAnt") for i in (0, 1)}
    frames = {lab: sum(len(real_tracklets[lab][i]) for i in (0, 1)) for lab in ("PB", "PG", "NoAnt")}
    assert m.counts() == dict(sorted(frames.items()))
    # the same sources again: the same manifest (what the training rule depends on)
    again = trainset_stage(clf, [src["b"], src["a"]], tmp_path / "again.tsv")
    assert manifest_hash(read_manifest(again)) == manifest_hash(m)


def test_trainset_stage_refuses_sources_with_different_label_sets(tmp_path, real_tracklets):
    src = _sources(tmp_path, real_tracklets, {"a": ["PB", "PG", "NoAnt"], "c": ["PB", "NoAnt"]})
    clf = tmp_path / "clf"
    trainset_stage(clf, [src["a"]], clf / "trainset_manifest.tsv")
    before = _png_hashes(clf)
    manifest_before = (clf / "trainset_manifest.tsv").read_bytes()
    with pytest.raises(AntraxFormatError, match="different label sets") as err:
        trainset_stage(clf, [src["a"], src["c"]], clf / "trainset_manifest.tsv")
    assert f"{src['c']} lacks PG" in str(err.value) and "allow_new_labels" in str(err.value)
    assert _png_hashes(clf) == before  # the existing trainset is untouched
    assert (clf / "trainset_manifest.tsv").read_bytes() == manifest_before
    out = trainset_stage(clf, [src["a"], src["c"]], clf / "trainset_manifest.tsv", allow_new_labels=True)
    m = read_manifest(out)
    assert m.classes == ["NoAnt", "PB", "PG"]
    assert m.counts()["PG"] == len(real_tracklets["PG"][0])  # PG only from the source that has it
    assert m.counts()["PB"] == len(real_tracklets["PB"][0]) + len(real_tracklets["PB"][1])


def test_trainset_stage_without_sources_describes_the_classdir_as_it_is(tmp_path, real_tracklets):
    src = _sources(tmp_path, real_tracklets, {"own": ["PB", "Unknown"]})
    before = _png_hashes(src["own"])
    out = trainset_stage(src["own"], [], tmp_path / "m.tsv")
    assert _png_hashes(src["own"]) == before
    assert {e.path: e.sha256 for e in read_manifest(out).entries} == before


# ---------------------------------------------------------------------------------------------- aggregate_stage

CLASSES = ["NoAnt", "PB", "PG", "Unknown"]
PARAMS = {"min_conf": 0.9, "min_conf_short": 0.99, "short_length": 5}
SPECIAL_P, OTHER_P = 0.97, 0.93


def _rows(label: str, n: int) -> np.ndarray:
    """Softmax rows whose argmax is ``label`` in every frame; an ID gets 0.93 everywhere and 0.97 at frame n//2."""
    y = np.full((n, len(CLASSES)), 0.0, np.float32)
    k = CLASSES.index(label)
    y[:, k] = OTHER_P
    y[n // 2, k] = SPECIAL_P
    rest = (1 - y[:, k]) / (len(CLASSES) - 1)
    for j in range(len(CLASSES)):
        if j != k:
            y[:, j] = rest
    return y


def _write_probs(path: Path, built, movie: int, classifier: Path, classes=CLASSES) -> dict[str, np.ndarray]:
    """A probabilities file as the classify stage writes it (ProbabilitiesWriter, tracklets in file order)."""
    names = built.sorted_tracklets(movie)
    ys = {t: _rows(built.truth[movie][t], len(built.images[movie][t])) for t in names}
    ends = np.cumsum([len(ys[t]) for t in names])
    part_of = {}
    for k, f in enumerate(built.files[movie]):
        with h5py.File(f, "r") as h:
            part_of.update((t, k) for t in h if t in ys)
    with h5py.File(path, "w") as h5:
        w = ProbabilitiesWriter(h5, classes)
        for t in names:
            w.append(ys[t])
        w.finish(names, [part_of[t] for t in names], ends.tolist(), {
            "classifier_path": str(classifier), "classifier_sha256": file_sha256(classifier),
            "image_files": json.dumps([str(f) for f in built.files[movie]]), "batch_size": 256,
        })
    return ys


@pytest.fixture
def classifier_file(tmp_path) -> Path:
    """Aggregation only reads the classifier's path and hash from the probabilities file: any file will do."""
    p = tmp_path / "classifiers" / "general" / "classifier.h5"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"stand-in for a trained classifier " + bytes(range(256)))
    return p


def _expected(built, movie: int, ys: dict[str, np.ndarray], passed: dict[str, np.ndarray] | None = None):
    """anTraX's rule worked out by hand for these rows: an ID needs ≥ 5 (passed) frames, since its best probability
    0.97 is under min_conf_short; NoAnt/Unknown tracklets keep their label with score 0."""
    want = {}
    for t, y in ys.items():
        true = built.truth[movie][t]
        keep = np.ones(len(y), bool) if passed is None else np.asarray(passed[t], bool)
        if true not in ("PB", "PG"):
            want[t] = (true, 0.0, 0) if keep.any() else ("Unknown", 0.0, 0)
        elif keep.sum() < 5:
            want[t] = ("Unknown", 0.0, 0)
        else:
            k = CLASSES.index(true)
            score = float(y[keep, k].sum(dtype=np.float32))
            special = len(y) // 2
            best = special if keep[special] else int(np.flatnonzero(keep)[0])
            want[t] = (true, score, best + 1)
    return want


def test_aggregate_stage_writes_autoids_and_provenance(tmp_path, tiny_experiment, classifier_file):
    built = tiny_experiment
    probs = tmp_path / "probs" / "probs_1.h5"
    probs.parent.mkdir()
    ys = _write_probs(probs, built, 1, classifier_file)
    add_attribute(probs, "job_record", {"format": "antrax-pipe-job-record-1", "threads": 3,
                                        "images": [{"path": str(f)} for f in built.files[1]]})
    labels_file = built.sessiondir / "parameters" / "labels.csv"
    autoids = tmp_path / "labels" / "autoids_1.csv"
    prov = tmp_path / "labels" / "antrax-pipe" / "autoids_1.json"
    assert aggregate_stage(probs, labels_file, autoids, dict(PARAMS), provenance_out=prov) == autoids

    rows = read_autoids(autoids)
    assert [r.tracklet for r in rows] == built.sorted_tracklets(1)  # anTraX's order: file order
    want = _expected(built, 1, ys)
    for r in rows:
        label, score, best = want[r.tracklet]
        assert (r.label, r.best_frame) == (label, best), r.tracklet
        assert r.score == pytest.approx(score, rel=1e-6)
    n_id = sum(r.best_frame > 0 for r in rows)
    assert 0 < n_id < len(rows)  # both sides of the rule were exercised (the one-frame tracklet is short)

    doc = json.loads(prov.read_text())
    digest = hashlib.sha256(classifier_file.read_bytes()).hexdigest()
    assert doc["classifier"] == {"path": str(classifier_file.resolve()), "sha256": digest, "classes": CLASSES}
    assert autoids_classifier(autoids) == digest  # what validation marks record as the classifier they judged
    assert doc["autoids_sha256"] == hashlib.sha256(autoids.read_bytes()).hexdigest()
    assert doc["autoids"] == str(autoids.resolve())
    assert doc["aggregation"] == PARAMS
    assert doc["n_tracklets"] == len(rows) and doc["n_identified"] == n_id
    assert doc["probabilities"]["n_images"] == sum(len(y) for y in ys.values())
    assert doc["probabilities"]["batch_size"] == 256
    assert doc["images"] == [{"path": str(f)} for f in built.files[1]]  # from the classify job's record
    assert doc["classify_job"]["threads"] == 3
    assert not list(prov.parent.glob("*.tmp*")) and not list(autoids.parent.glob("*.tmp*"))


def test_aggregate_stage_with_frame_passed(tmp_path, tiny_experiment, classifier_file):
    built = tiny_experiment  # movie 2 is parted: two images files, two frame_passed files
    probs = tmp_path / "probs_2.h5"
    ys = _write_probs(probs, built, 2, classifier_file)
    labels_file = built.sessiondir / "parameters" / "labels.csv"
    passed_files = sorted(built.images_dir.glob("frame_passed_2_p*.mat"))
    assert len(passed_files) == 2
    params = PARAMS | {"usepassed": True}
    with pytest.raises(AntraxFormatError, match="usepassed is on but the movie has no frame_passed"):
        aggregate_stage(probs, labels_file, tmp_path / "x.csv", params)
    assert not (tmp_path / "x.csv").exists()

    out = aggregate_stage(probs, labels_file, tmp_path / "autoids_2.csv", params, passed_files=passed_files)
    want = _expected(built, 2, ys, passed=built.passed[2])
    rows = read_autoids(out)
    assert [r.tracklet for r in rows] == built.sorted_tracklets(2)
    for r in rows:
        label, score, best = want[r.tracklet]
        assert (r.label, r.best_frame) == (label, best), r.tracklet
        assert r.score == pytest.approx(score, rel=1e-6)
        if best:
            assert built.passed[2][r.tracklet][best - 1]  # best frame indexes the full stack, at a passed frame
    # the frame with the highest probability did not pass in some ID tracklet: its best frame moved
    assert any(r.best_frame not in (0, len(ys[r.tracklet]) // 2 + 1) for r in rows)

    # hand-made masks: an ID with 4 passed frames is short (Unknown), no passed frame at all → Unknown
    ids = [t for t in ys if built.truth[2][t] in ("PB", "PG")]
    noant = [t for t in ys if built.truth[2][t] == "NoAnt"]
    masks = {t: np.ones(len(ys[t]), bool) for t in ys}
    masks[ids[0]][4:] = False
    masks[ids[1]][len(ys[ids[1]]) // 2] = False
    masks[noant[0]][:] = False
    mine = write_frame_passed(tmp_path / "frame_passed_2.mat", masks)
    out = aggregate_stage(probs, labels_file, tmp_path / "autoids_2b.csv", params, passed_files=[mine])
    got = {r.tracklet: (r.label, r.best_frame) for r in read_autoids(out)}
    assert got[ids[0]] == ("Unknown", 0)
    assert got[ids[1]] == (built.truth[2][ids[1]], 1)  # frame n//2 did not pass: the first of the 0.93 frames
    assert got[noant[0]] == ("Unknown", 0)  # a NoAnt tracklet none of whose frames passed
    want = _expected(built, 2, ys, passed=masks)
    assert got == {t: (w[0], w[2]) for t, w in want.items()}


def test_aggregate_stage_stops_when_classes_and_labels_disagree(tmp_path, tiny_experiment, classifier_file):
    probs = tmp_path / "probs_1.h5"
    _write_probs(probs, tiny_experiment, 1, classifier_file, classes=["NoAnt", "PB", "GG", "Unknown"])
    autoids = tmp_path / "autoids_1.csv"
    with pytest.raises(ClassLabelMismatchError, match=r"cannot predict: \['PG'\]"):
        aggregate_stage(probs, tiny_experiment.sessiondir / "parameters" / "labels.csv", autoids, PARAMS,
                        provenance_out=tmp_path / "p.json")
    assert not autoids.exists() and not (tmp_path / "p.json").exists()


# ---------------------------------------------------------------------------------------------- failures


def _stage_log(path: Path, body) -> Path:
    """Run ``body`` under the stages' logging (as a workflow script does) and keep its log, failed or not."""
    try:
        with stage_logging(path):
            body()
    except SystemExit as exc:  # a known error: one line, exit status 1, no traceback on the terminal
        assert exc.code == 1
    return path


def test_failure_reason_prefers_the_stage_error_over_the_traceback(tmp_path):
    def classify():
        logging.getLogger("antrax_pipe.stages").info("3 tracklet(s) in images_2.mat")
        logging.getLogger("antrax_pipe.stages").error("movie images cannot be read: images_2.mat: truncated file")
        raise AntraxFormatError("images_2.mat: truncated file")

    log = _stage_log(tmp_path / "classify.log", classify)
    text = log.read_text()
    assert " E antrax_pipe.stages: movie images cannot be read" in text and "stage failed" in text
    assert failure_reason([log]) == f"movie images cannot be read: images_2.mat: truncated file (log: {log})"


def test_a_failed_stage_logs_its_error_as_one_line_and_the_traceback_to_the_file(tmp_path, tiny_experiment, capfd):
    missing = tmp_path / "probs_9.h5"
    labels_file = tiny_experiment.sessiondir / "parameters" / "labels.csv"
    log = _stage_log(tmp_path / "aggregate.log",
                     lambda: aggregate_stage(missing, labels_file, tmp_path / "autoids_9.csv", {}))
    assert "Traceback" in log.read_text()
    assert failure_reason([log]) == f"{missing}: probabilities file not found (log: {log})"
    err = capfd.readouterr().err
    assert err.strip() == f"{missing}: probabilities file not found" and "Traceback" not in err


def test_failure_reason_falls_back_to_the_last_traceback_line(tmp_path):
    log = tmp_path / "bug.log"  # a job killed by a bug outside the stage's own logging
    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'probs'\n")
    assert failure_reason([log]) == f"KeyError: 'probs' (log: {log})"


def test_a_bug_in_a_stage_is_re_raised_with_its_traceback_in_the_log(tmp_path):
    def buggy():
        raise KeyError("probs")

    with pytest.raises(KeyError):
        with stage_logging(tmp_path / "bug.log"):
            buggy()
    assert "Traceback" in (tmp_path / "bug.log").read_text()


def test_failure_reason_without_an_error(tmp_path):
    ok = _stage_log(tmp_path / "ok.log", lambda: logging.getLogger("antrax_pipe.stages").info("all fine"))
    assert "all fine" in ok.read_text()
    assert failure_reason([]) is None
    assert failure_reason([tmp_path / "absent.log"]) is None
    assert failure_reason([ok]) is None
    warned = tmp_path / "warned.log"  # a warning is not an error
    warned.write_text("2024-05-01 10:00:00 W antrax_pipe.aggregation: 2 tracklet(s) missing from frame_passed\n")
    assert failure_reason([warned]) is None
    # logs are tried in order (classify, then aggregate): the first one that shows an error names the cause
    bad = tmp_path / "bad.log"
    bad.write_text("2024-05-01 10:00:01 E antrax_pipe.stages: disk full\n")
    assert failure_reason([tmp_path / "absent.log", ok, bad]) == f"disk full (log: {bad})"


def test_find_failures_names_each_movie_without_autoids(tmp_path):
    sessions = {}
    for name in ("expA", "expB"):
        sessions[name] = tmp_path / "sessions" / name
        (sessions[name] / "labels").mkdir(parents=True)
    (sessions["expA"] / "labels" / "autoids_1.csv").write_text("tracklet,label,score,best_frame\n")
    for m in (1, 2):
        (sessions["expB"] / "labels" / f"autoids_{m}.csv").write_text("tracklet,label,score,best_frame\n")
    logs = tmp_path / "logs"
    (logs / "classify" / "expA").mkdir(parents=True)
    (logs / "aggregate" / "expA").mkdir(parents=True)
    (logs / "classify" / "expA" / "2.log").write_text(
        "2024-05-01 10:00:00 I antrax_pipe.stages: 4 tracklet(s) in images_2.mat\n"
        "2024-05-01 10:00:01 E antrax_pipe.stages: movie images cannot be read: images_2.mat: truncated\n"
        "2024-05-01 10:00:01 E antrax_pipe: stage failed\nTraceback (most recent call last):\n"
        "antrax_pipe.model.AntraxFormatError: images_2.mat: truncated\n")
    (logs / "classify" / "expA" / "3.log").write_text("2024-05-01 10:00:00 I antrax_pipe.stages: done\n")
    (logs / "aggregate" / "expA" / "3.log").write_text(
        "2024-05-01 10:00:02 E antrax_pipe: stage failed\nTraceback (most recent call last):\n"
        "  File \"aggregate.py\", line 1\nValueError: probs_3.h5: tracklet 'x': bad shape\n")
    experiments = {
        "expA": {"session_link": str(sessions["expA"]), "movies": [1, 2, 3, 4]},
        "expB": {"session_link": str(sessions["expB"]), "movies": [1, 2]},
    }
    got = find_failures(experiments, logs)
    assert got == {"expA": {
        2: f"movie images cannot be read: images_2.mat: truncated (log: {logs / 'classify' / 'expA' / '2.log'})",
        3: f"ValueError: probs_3.h5: tracklet 'x': bad shape (log: {logs / 'aggregate' / 'expA' / '3.log'})",
        4: NOT_RUN,
    }}
    assert find_failures({"expB": experiments["expB"]}, logs) == {}


def test_a_job_given_a_gpu_that_tensorflow_cannot_see_warns_loudly_or_stops(tmp_path, monkeypatch, capfd):
    """No GPU can run here: the batch system's allocation is mocked with its environment variable (as SLURM sets it
    for a job with --gpus=1), while the installed CPU TensorFlow really sees no GPU."""
    from antrax_pipe.inference import configure_tf
    from antrax_pipe.model import TrainingError
    from antrax_pipe.stages import check_gpu

    tf_info = configure_tf(1)
    assert tf_info["gpus"] == []  # this machine's TensorFlow sees no GPU
    for var in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES", "LSB_BIND_GPU"):
        monkeypatch.delenv(var, raising=False)
    with stage_logging(tmp_path / "cpu.log"):
        check_gpu(tf_info)  # no GPU given: nothing to say
    assert "GPU" not in (tmp_path / "cpu.log").read_text()

    monkeypatch.setenv("SLURM_JOB_GPUS", "0")
    with stage_logging(tmp_path / "gpu.log"):
        check_gpu(tf_info)
    assert "given a GPU (SLURM_JOB_GPUS=0) but TensorFlow sees none" in (tmp_path / "gpu.log").read_text()
    assert "TensorFlow sees none" in capfd.readouterr().err  # on the terminal too
    with pytest.raises(TrainingError, match="require_gpu"):
        check_gpu(tf_info, require=True)
    monkeypatch.setenv("SLURM_JOB_GPUS", "")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # "no GPU" in CUDA's words: not an allocation
    check_gpu(tf_info, require=True)
