"""Issue 12 "Nothing lost, nothing silent", library level: two real OS processes (multiprocessing, spawn) writing into
one experiment's ``classifier/`` at the same moment — as two ``extract-trainset`` apps (two people, two ports) or an
app and ``export_labelled`` do.

- ``validation.csv``: each process marks its own tracklets (and both re-mark a shared set) through
  :class:`ValidationFile`; every mark must be in the file afterwards, once. Before the inter-process lock, each
  read-modify-write could overwrite the other process's last rows (marks lost every round).
- the trainset: both processes export the same real tracklet under two different labels at the same moment
  (a barrier per round); exactly one may succeed, the other must get the "already exported under another label"
  conflict, and the tracklet's files must be under one label only — on disk and in the manifest.

The experiment is real anTraX format (MAT v7.3 images files of real blob images, ``fixtures.experiments``); the child
processes read the tracklets from it themselves.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import shutil
import time
import traceback
from pathlib import Path

import pytest
from fixtures.experiments import build_experiment

from antrax_pipe.io.images import ImagesFile
from antrax_pipe.io.manifest import read_manifest
from antrax_pipe.io.marks import ValidationFile, read_validation_rows
from antrax_pipe.model import ExportConflictError
from antrax_pipe.trainset import export_frame_numbers, export_images, refresh_manifest

CTX = mp.get_context("spawn")  # fresh interpreters: no lock state, file descriptor or thread inherited
N_PER_PROCESS = 120
N_SHARED = 20
PROCESS_TIMEOUT = 120


# ---------------------------------------------------------------------------------------------- child processes


def _mark_many(path: str, mine: list[str], shared: list[str], mark: str, barrier, out) -> None:
    try:
        vf = ValidationFile(path)
        barrier.wait(60)
        for i, t in enumerate(mine):
            vf.set(t, mark, {"movie": 1, "autoID": "PB", "n_frames": 8})
            if i < len(shared):  # interleave re-marks of tracklets the other process marks too
                vf.set(shared[i], mark, {"movie": 1, "autoID": "PB", "n_frames": 8})
        out.put(("done", mark, len(mine)))
    except Exception:  # noqa: BLE001 (reported to the parent, which fails the test with it)
        out.put(("crash", mark, traceback.format_exc()))


def _export_rounds(classdir: str, expname: str, rounds: list[tuple[str, str, int | None]], label: str, barrier,
                   out) -> None:
    """For each (images file, tracklet, movie first frame): wait for the other process, then export under ``label``."""
    try:
        examples = Path(classdir) / "examples"
        for part, tracklet, fi in rounds:
            with ImagesFile(part) as f:
                images = f.read(tracklet, white_bg=True)
            numbers, _ = export_frame_numbers(tracklet, len(images), fi)
            barrier.wait(60)
            try:
                written, _skipped = export_images(examples, expname, tracklet, label, images, numbers)
                refresh_manifest(Path(classdir))
                out.put(("ok", tracklet, label, len(written)))
            except ExportConflictError as exc:
                out.put(("conflict", tracklet, label, str(exc)))
    except Exception:  # noqa: BLE001 (reported to the parent, which fails the test with it)
        out.put(("crash", "", label, traceback.format_exc()))


def _hold_lock(path: str, seconds: float, out) -> None:
    from antrax_pipe.io.locking import file_lock

    with file_lock(path):
        out.put("locked")
        time.sleep(seconds)
    out.put("released")


def _run(target, args_per_process: list[tuple], n_messages: int) -> list[tuple]:
    """Start one spawned process per argument tuple (a shared barrier and result queue appended), collect
    ``n_messages`` results, join."""
    barrier = CTX.Barrier(len(args_per_process))
    out = CTX.Queue()
    procs = [CTX.Process(target=target, args=(*a, barrier, out), daemon=True) for a in args_per_process]
    for p in procs:
        p.start()
    results = []
    try:
        for _ in range(n_messages):
            try:
                results.append(out.get(timeout=PROCESS_TIMEOUT))
            except queue.Empty:
                pytest.fail(f"child processes sent {len(results)} of {n_messages} results: {results}")
            if results[-1][0] == "crash":
                pytest.fail(f"a child process crashed:\n{results[-1][-1]}")
    finally:
        for p in procs:
            p.join(PROCESS_TIMEOUT)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return results


# ----------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def crowded_experiment(tmp_path_factory, real_tracklets, real_labels):
    """A real-image experiment with 16 tracklets in movie 1 (the real PB/PG/NoAnt images, reused under new names)."""
    pool = [t for lab in ("PB", "PG", "NoAnt") for t in real_tracklets[lab]]
    items = [(t.label, t.images, t.key) for i in range(16) for t in [pool[i % len(pool)]]]
    return build_experiment(tmp_path_factory.mktemp("locking"), "lockexp", {1: items}, real_labels, seed=12)


@pytest.fixture
def classdir(tmp_path, crowded_experiment) -> Path:
    expdir = tmp_path / crowded_experiment.name
    shutil.copytree(crowded_experiment.expdir, expdir)
    d = expdir / crowded_experiment.session / "classifier"
    d.mkdir(exist_ok=True)
    return d


# -------------------------------------------------------------------------------------------------------- tests


def test_two_processes_marking_at_once_lose_no_mark(classdir):
    """2 × 120 own marks + 20 shared re-marks, written at the same time by two processes: all 260 rows present,
    each once, the file still parses; the shared ones carry one of the two marks."""
    path = classdir / "validation.csv"
    names = [f"trj_id{i}_ti{i}_{100 + i}_tf{i}_{107 + i}" for i in range(2 * N_PER_PROCESS + N_SHARED)]
    a, b, shared = names[:N_PER_PROCESS], names[N_PER_PROCESS:2 * N_PER_PROCESS], names[2 * N_PER_PROCESS:]
    results = _run(_mark_many, [(str(path), a, shared, "correct"), (str(path), b, shared, "wrong")], 2)
    assert sorted(r[1] for r in results) == ["correct", "wrong"]
    _, rows = read_validation_rows(path)
    got = [r["tracklet"] for r in rows]
    lost = sorted(set(names) - set(got))
    assert not lost, f"{len(lost)} of {len(names)} marks lost: {lost[:5]} …"
    assert len(got) == len(set(got)) == len(names)
    marks = {r["tracklet"]: r["mark"] for r in rows}
    assert all(marks[t] == "correct" for t in a) and all(marks[t] == "wrong" for t in b)
    assert all(marks[t] in ("correct", "wrong") for t in shared)
    assert (classdir / ".validation.csv.lock").is_file()  # the lock file stays (deleting lock files races)
    assert not [p.name for p in classdir.iterdir() if ".tmp-" in p.name]  # no temp file left behind


def test_two_processes_exporting_one_tracklet_under_two_labels_one_wins(classdir, crowded_experiment):
    """Per round both processes export the same tracklet, one as PB and one as PG, released by one barrier: exactly
    one export succeeds, the other gets the conflict, and the tracklet's images are under one label only (on disk
    and in the manifest)."""
    built = crowded_experiment
    part = str(built.files[1][0])
    tracklets = built.sorted_tracklets(1)
    rounds = [(part, t, None) for t in tracklets]  # frame numbers within the movie: the names only need be unique
    args = [(str(classdir), built.name, rounds, "PB"), (str(classdir), built.name, rounds, "PG")]
    results = _run(_export_rounds, args, 2 * len(rounds))
    by_tracklet: dict[str, list[tuple]] = {}
    for r in results:
        by_tracklet.setdefault(r[1], []).append(r)
    double = []
    for t in tracklets:
        outcome = sorted(r[0] for r in by_tracklet[t])
        if outcome == ["ok", "ok"]:
            double.append(t)
            continue
        assert outcome == ["conflict", "ok"], (t, by_tracklet[t])
        conflict = next(r for r in by_tracklet[t] if r[0] == "conflict")
        assert "already exported under another label" in conflict[3] and t in conflict[3]
    assert not double, f"{len(double)} of {len(tracklets)} tracklets exported under both labels: {double[:3]}"
    examples = classdir / "examples"
    labels_of = {t: {d.name for d in examples.iterdir() if any(d.glob(f"{built.name}.{t}.*.png"))}
                 for t in tracklets}
    assert all(len(v) == 1 for v in labels_of.values()), labels_of
    for t in tracklets:
        winner = next(r[2] for r in by_tracklet[t] if r[0] == "ok")
        assert labels_of[t] == {winner}
        assert len(list((examples / winner).glob(f"{built.name}.{t}.*.png"))) == len(built.images[1][t])
    manifest = read_manifest(classdir / "trainset_manifest.tsv")
    on_disk = sorted(p.relative_to(classdir).as_posix() for p in examples.rglob("*.png"))
    assert sorted(e.path for e in manifest.entries) == on_disk  # the last refresh saw every export
    assert {e.tracklet: e.label for e in manifest.entries} == {t: next(iter(v)) for t, v in labels_of.items()}


def test_lock_held_by_another_process_waits_times_out_and_dies_with_it(classdir):
    """A mark waits for another process's lock and is then written (not lost, not refused); a caller with a short
    timeout gets LockTimeoutError naming the lock file and writes nothing; a killed holder releases the lock; the
    lock is re-entrant within a thread."""
    # imported here so that the two race tests above also run against code without io/locking.py (to show the bug)
    from antrax_pipe.io.locking import LockTimeoutError, file_lock, lock_path_for

    path = classdir / "validation.csv"
    lock = lock_path_for(path)
    assert lock == classdir / ".validation.csv.lock"
    vf = ValidationFile(path)
    out = CTX.Queue()
    holder = CTX.Process(target=_hold_lock, args=(str(lock), 1.5, out), daemon=True)
    holder.start()
    try:
        assert out.get(timeout=PROCESS_TIMEOUT) == "locked"
        with (pytest.raises(LockTimeoutError, match=r"\.validation\.csv\.lock: still locked by another process"),
              file_lock(lock, timeout=0.2)):
            pass
        assert not path.exists()
        t0 = time.monotonic()
        vf.set("trj_id1_ti1_10_tf1_17", "correct", {"movie": 1})  # waits for the holder, then writes
        assert time.monotonic() - t0 > 0.5
        assert out.get(timeout=PROCESS_TIMEOUT) == "released"
    finally:
        holder.join(PROCESS_TIMEOUT)
    assert [r["tracklet"] for r in read_validation_rows(path)[1]] == ["trj_id1_ti1_10_tf1_17"]

    killed = CTX.Process(target=_hold_lock, args=(str(lock), 600, out), daemon=True)
    killed.start()
    assert out.get(timeout=PROCESS_TIMEOUT) == "locked"
    killed.kill()
    killed.join(PROCESS_TIMEOUT)
    with file_lock(lock, timeout=5), file_lock(lock, timeout=0.1):  # free again; nested in one thread: no deadlock
        vf.set("trj_id2_ti2_20_tf2_27", "wrong")  # takes the same lock once more inside
    assert len(read_validation_rows(path)[1]) == 2
