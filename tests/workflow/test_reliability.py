"""Nothing lost, nothing silent (issue 12): each class of failure a user meets, reproduced with the real CLI.

Real anTraX-format experiments (copies of the committed demo colonies: MAT v7.3 images and frame_passed files of real
blob images), a tiny classifier really trained by ``antrax-pipe train`` (T=32, one epoch), real Snakemake runs under
``antrax-pipe classify``, real processes, signals and a real full disk. Every test asserts what the user sees (exit
status, the one stderr line naming the file or input, never a "Traceback" on the terminal) and that nothing the user
had is lost.

=========================================  ============================================================================
failure class                              test
=========================================  ============================================================================
``#``, space, non-ASCII letter in an       ``test_path_with_hash_space_and_non_ascii_classifies_that_experiment_only``
experiment path
missing classifier; the classifier's       ``test_missing_classifier_is_an_error_and_identity_decides_reclassification``
identity decides re-classification,
from any folder
movie that does not exist; EXPLIST with    ``test_missing_movie_is_named_and_notepad_explist_works``
BOM, CRLF, an indented line
``usepassed`` without frame_passed files   ``test_usepassed_without_frame_passed_fails_naming_the_movie``
Ctrl-C, then ``kill -9`` of the CLI and    ``test_ctrl_c_and_kill_9_then_the_same_command_completes``
Snakemake, during ``classify``
two runs at once in one work folder        ``test_second_run_in_the_same_workdir_is_refused_while_the_first_succeeds``
disk full before and while re-classifying  ``test_disk_full_while_reclassifying_keeps_every_previous_autoids``
a user's own ``review_plan.csv``           ``test_users_own_review_plan_is_never_replaced``
a bug in antrax-pipe itself               ``test_a_bug_is_one_line_with_exit_3_and_its_traceback_goes_to_a_log``
``merge-trainset`` killed half-way, then   ``test_merge_killed_half_way_then_run_again_completes`` in
run again                                  ``tests/test_trainset.py`` (not repeated here)
=========================================  ============================================================================

The web app's failure classes (two apps on one experiment, foreign origins, links out of the classifier folder,
malformed requests) are tested in ``tests/test_marks_locking.py`` and ``tests/app/test_app_safety.py``; see
docs/reliability.md.

One finished run (``first_run``: the ``#`` experiment classified by classifier A) is made once per module; the tests
that need a finished run work on a copy of it (``copy_run``: experiments and work folder, mtimes kept).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "experiments"
SESSION = "antrax"
#: the experiment folder with '#', a space and a non-ASCII letter in its path, and its sibling
HASH_EXP = Path("data") / "colony#2" / "T4 colony ñ"
SIBLING = Path("data") / "colony" / "T4"
#: the experiment's name in the workflow (the CLI makes a path-safe sheet name of the folder name)
HASH_NAME = "T4_colony"
MOVIES = (1, 2)
TIMEOUT = 600


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``antrax-pipe ARGS`` as a user runs it (the console script's module in a subprocess)."""
    return subprocess.run([sys.executable, "-m", "antrax_pipe.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout)


def cli_popen(args: list[str], stderr_file: Path, cwd: Path | None = None, **kw) -> subprocess.Popen:
    """A CLI process running in the background, its terminal output going to ``stderr_file``."""
    with open(stderr_file, "w") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "antrax_pipe.cli", *args], stdout=fh,
                                stderr=subprocess.STDOUT, text=True, cwd=cwd or REPO, **kw)


def classify_args(expdir: Path, classifier: Path, workdir: Path | None, *more: str) -> list[str]:
    args = ["classify", str(expdir), "--classifier", str(classifier), "--cores", "2", "--threads", "1", *more]
    return args + (["--workdir", str(workdir)] if workdir is not None else [])


def no_traceback(res: subprocess.CompletedProcess | str) -> None:
    text = res if isinstance(res, str) else res.stdout + res.stderr
    assert "Traceback" not in text, text[-4000:]


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """The CLI refused before running anything: exit 2, exactly one line on stderr, no traceback."""
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    no_traceback(res)
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content (what "untouched" compares)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def labels_dir(expdir: Path) -> Path:
    return expdir / SESSION / "labels"


def autoids(expdir: Path) -> dict[int, bytes]:
    return {m: (labels_dir(expdir) / f"autoids_{m}.csv").read_bytes() for m in MOVIES}


def provenance(expdir: Path, m: int) -> dict:
    return json.loads((labels_dir(expdir) / "antrax-pipe" / f"autoids_{m}.json").read_text(encoding="utf-8"))


def made_by(expdir: Path) -> set[str]:
    """sha256 of the classifier(s) that made the experiment's autoids, according to their provenance."""
    return {provenance(expdir, m)["classifier"]["sha256"] for m in MOVIES}


def copy_demo_experiment(colony: str, dest: Path) -> Path:
    """A demo colony as anTraX left it after tracking (no autoids, no antrax-pipe outputs)."""
    shutil.copytree(DEMO / colony, dest, ignore=shutil.ignore_patterns("autoids_*", "antrax-pipe", "review_plan.csv",
                                                                       "label_next.csv"))
    return dest


def process_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(d.name))
    return out


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            text = log.read_text() if log else ""
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}:\n{text[-4000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def snakemake_child(proc: subprocess.Popen, timeout: float = 60) -> int:
    """pid of the Snakemake process the CLI started (in its own process group)."""
    import psutil

    def find():
        try:
            kids = psutil.Process(proc.pid).children()
        except psutil.NoSuchProcess:
            return None
        return next((k.pid for k in kids if "snakemake" in " ".join(k.cmdline())), None)

    return wait_for(find, timeout, "Snakemake to start", proc)


def classify_job_started(workdir: Path, exp: str = HASH_NAME):
    """A classify job of this run has started: its job log exists (the copied run's old logs are removed first)."""
    logs = workdir / "results" / "logs" / "classify" / exp
    return lambda: logs.is_dir() and any(logs.glob("*.log"))


# --------------------------------------------------------------------------------------------------------------------
# fixtures: a tiny trained classifier (A) and a different one (B); one finished run
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Classifiers:
    a: Path
    b: Path


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory) -> Classifiers:
    """A: trained by ``antrax-pipe train`` on 6 examples per label of the demo colonyA trainset (T=32, 1 epoch).
    B: a different valid classifier, A with its output bias for PB raised by 30 (it calls every blob PB)."""
    root = tmp_path_factory.mktemp("classifiers")
    src = DEMO / "colonyA" / SESSION / "classifier" / "examples"
    cd = root / "classdir"
    for lab in sorted(p.name for p in src.iterdir()):
        (cd / "examples" / lab).mkdir(parents=True)
        for f in sorted((src / lab).iterdir())[:6]:
            shutil.copy(f, cd / "examples" / lab / f.name)
    res = cli("train", str(cd), "--scratch", "--ne", "1", "--arch", "small", "--target-size", "32", "--seed", "1",
              "--workdir", str(root / "work"), "--cores", "1", "--threads", "2", "--", "--quiet")
    assert res.returncode == 0, res.stderr[-4000:]
    a = root / "A.h5"
    shutil.copy(cd / "classifier.h5", a)
    b = root / "B.h5"
    shutil.copy(a, b)
    with h5py.File(b, "r+") as f:
        classes = [c[0].decode() if isinstance(c[0], bytes) else str(c[0]) for c in f["classes"][()]]
        bias = f["model_weights/output/small/output/bias"]
        v = bias[()]
        v[classes.index("PB")] += 30.0
        bias[...] = v
    assert sha256(a) != sha256(b)
    return Classifiers(a, b)


@dataclass
class FirstRun:
    root: Path  # holds data/ (experiments) and work/ (the work folder)
    result: subprocess.CompletedProcess
    sibling_before: dict[str, bytes]

    @property
    def expdir(self) -> Path:
        return self.root / HASH_EXP

    @property
    def sibling(self) -> Path:
        return self.root / SIBLING

    @property
    def workdir(self) -> Path:
        return self.root / "work"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, classifiers) -> FirstRun:
    """``classify '<root>/data/colony#2/T4 colony ñ' --classifier A``, next to a sibling experiment
    ``<root>/data/colony/T4`` that is not classified (what a '#' read as a comment would have hit)."""
    root = tmp_path_factory.mktemp("first")
    copy_demo_experiment("colonyA", root / HASH_EXP)
    copy_demo_experiment("colonyB", root / SIBLING)
    before = tree(root / SIBLING)
    res = cli(*classify_args(root / HASH_EXP, classifiers.a, root / "work"))
    return FirstRun(root, res, before)


@pytest.fixture
def copy_run(first_run, tmp_path) -> FirstRun:
    """A copy of the finished first run (experiments + work folder, mtimes and links kept; the workflow repoints its
    links to the copied experiments)."""
    assert first_run.result.returncode == 0, first_run.result.stderr[-4000:]
    dst = tmp_path / "run"
    shutil.copytree(first_run.root, dst, symlinks=True)
    return FirstRun(dst, first_run.result, first_run.sibling_before)


# --------------------------------------------------------------------------------------------------------------------
# 1. paths with '#', spaces, non-ASCII letters
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_path_with_hash_space_and_non_ascii_classifies_that_experiment_only(first_run, classifiers):
    res = first_run.result
    assert res.returncode == 0, res.stderr[-4000:]
    no_traceback(res)
    exp = first_run.expdir
    assert sorted(p.name for p in labels_dir(exp).glob("autoids_*")) == [f"autoids_{m}.csv" for m in MOVIES]
    assert made_by(exp) == {sha256(classifiers.a)}
    assert all(Path(i["path"]).is_relative_to(exp) for m in MOVIES for i in provenance(exp, m)["images"])
    # the sibling that "colony#2" cut at '#' would name is untouched: no labels/, not a byte changed
    assert tree(first_run.sibling) == first_run.sibling_before
    assert not labels_dir(first_run.sibling).exists()
    # the terminal says where the results are, with the real path
    assert str(labels_dir(exp)) in res.stderr


# --------------------------------------------------------------------------------------------------------------------
# 2. a missing classifier; the classifier's identity decides re-classification, wherever the command runs
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_missing_classifier_is_an_error_and_identity_decides_reclassification(copy_run, classifiers, tmp_path):
    exp = copy_run.expdir
    old = autoids(exp)
    old_prov = {m: provenance(exp, m) for m in MOVIES}

    # /nope.h5 with autoids already there: exit 2, one line naming it, nothing touched
    res = cli(*classify_args(exp, Path("/nope.h5"), copy_run.workdir))
    assert "/nope.h5" in one_error_line(res)
    assert autoids(exp) == old

    # another valid classifier, from another current folder (its default work folder): classified again
    here2 = tmp_path / "elsewhere"
    here2.mkdir()
    res = cli(*classify_args(exp, classifiers.b, None), cwd=here2)
    assert res.returncode == 0, res.stderr[-4000:]
    no_traceback(res)
    assert (here2 / "antrax-pipe-work" / "results" / "probs" / HASH_NAME / "probs_1.h5").is_file()
    new = autoids(exp)
    assert all(new[m] != old[m] for m in MOVIES)
    assert made_by(exp) == {sha256(classifiers.b)}
    assert all(provenance(exp, m)["autoids_sha256"] == hashlib.sha256(new[m]).hexdigest() for m in MOVIES)
    # ... and A's autoids are kept, with their provenance, and the terminal said so
    prev = labels_dir(exp) / "antrax-pipe" / "previous"
    for m in MOVIES:
        kept = sorted(prev.glob(f"autoids_{m}.{sha256(classifiers.a)[:12]}.*.csv"))
        assert len(kept) == 1 and kept[0].read_bytes() == old[m]
        assert json.loads(kept[0].with_suffix(".json").read_text()) == old_prov[m]
        warning = [ln for ln in res.stderr.splitlines() if f"autoids_{m}.csv was made by" in ln]
        assert len(warning) == 1 and kept[0].name in warning[0]
    assert not list(labels_dir(exp).glob("autoids_*.*.csv"))  # no backup where anTraX globs labels/autoids_*

    # the same classifier again, from a third folder: nothing is classified again, the autoids are not touched
    stamps = {m: (labels_dir(exp) / f"autoids_{m}.csv").stat().st_mtime_ns for m in MOVIES}
    here3 = tmp_path / "third"
    here3.mkdir()
    res = cli(*classify_args(exp, classifiers.b, None), cwd=here3)
    assert res.returncode == 0, res.stderr[-4000:]
    no_traceback(res)
    assert "localrule classify:" not in res.stderr and "rule classify:" not in res.stderr
    assert not (here3 / "antrax-pipe-work" / "results" / "probs").exists()
    assert autoids(exp) == new
    assert {m: (labels_dir(exp) / f"autoids_{m}.csv").stat().st_mtime_ns for m in MOVIES} == stamps
    assert len(list(prev.glob("*.csv"))) == len(MOVIES)


# --------------------------------------------------------------------------------------------------------------------
# 3. a movie that does not exist; an EXPLIST saved by Notepad
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_missing_movie_is_named_and_notepad_explist_works(first_run, classifiers, tmp_path):
    exp = first_run.expdir
    before = tree(exp)
    res = cli(*classify_args(exp, classifiers.a, tmp_path / "w7", "--movlist", "7"))
    line = one_error_line(res)
    assert "movie(s) 7" in line and str(exp / SESSION / "images") in line and "1, 2" in line
    assert not (tmp_path / "w7" / "results").exists()

    # BOM, CRLF, a comment, a blank line and an indented line: both experiments, paths with '#', space and 'ñ'
    explist = tmp_path / "my experiments.txt"
    text = f"# colonies of June\r\n{exp}\r\n\r\n  {first_run.sibling}\r\n"
    explist.write_bytes("\ufeff".encode() + text.encode("utf-8"))
    wd = tmp_path / "wlist"
    res = cli("classify", str(explist), "--classifier", str(classifiers.a), "--workdir", str(wd), "--dry")
    assert res.returncode == 0, res.stderr[-4000:]
    no_traceback(res)
    sheets = list((wd / "cli-runs").rglob("experiments.tsv"))
    assert len(sheets) == 1
    rows = [ln.split("\t") for ln in sheets[0].read_text(encoding="utf-8").splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [(HASH_NAME, str(exp)), ("T4", str(first_run.sibling))]
    assert (wd / "results" / "sessions" / HASH_NAME).resolve() == (exp / SESSION).resolve()
    assert (wd / "results" / "sessions" / "T4").resolve() == (first_run.sibling / SESSION).resolve()
    # the sibling has no autoids yet: its movies are planned; the '#' experiment's are A's already
    out = res.stdout + res.stderr
    assert "results/probs/T4/probs_1.h5" in out and f"results/probs/{HASH_NAME}/probs_1.h5" not in out
    assert tree(exp) == before  # a dry run writes nothing into the experiments
    assert not labels_dir(first_run.sibling).exists()


# --------------------------------------------------------------------------------------------------------------------
# 4. usepassed without frame_passed files
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_usepassed_without_frame_passed_fails_naming_the_movie(copy_run, classifiers):
    exp = copy_run.expdir
    for p in (exp / SESSION / "images").glob("frame_passed_*.mat"):
        p.unlink()
    old = autoids(exp)
    res = cli(*classify_args(exp, classifiers.a, copy_run.workdir, "--usepassed", "--movlist", "1"))
    assert res.returncode == 1, res.stderr[-4000:]  # a job failed
    no_traceback(res)
    lines = [ln for ln in res.stderr.splitlines() if "usepassed" in ln and "frame_passed" in ln]
    assert len(lines) == 1, res.stderr[-4000:]
    assert f"{HASH_NAME} movie 1" in lines[0] and "frame_passed_1.mat" in lines[0]
    assert str(exp / SESSION / "images") in lines[0]
    assert autoids(exp) == old  # nothing was silently made Unknown


# --------------------------------------------------------------------------------------------------------------------
# 5. Ctrl-C and kill -9 during classify
# --------------------------------------------------------------------------------------------------------------------


def start_and_wait_for_classify(args: list[str], wd: Path, term: Path, **kw) -> tuple[subprocess.Popen, int]:
    """Start the CLI; return it and its Snakemake child's pid once a classify job of this run has started (the
    copied run's classify logs are removed first)."""
    shutil.rmtree(wd / "results" / "logs" / "classify", ignore_errors=True)
    proc = cli_popen(args, term, **kw)
    try:
        smk = snakemake_child(proc)
        wait_for(classify_job_started(wd), 120, "a classify job to start", proc, term)
    except BaseException:
        proc.kill()
        raise
    return proc, smk


@pytest.mark.slow
def test_ctrl_c_and_kill_9_then_the_same_command_completes(copy_run, classifiers, tmp_path):
    """Re-classifying both movies with B, three times the same command:

    1. Ctrl-C once a classify job runs: SIGINT to the CLI (what the terminal sends it; Snakemake runs in its own
       process group): exit 130 with the "interrupted" line, no process of Snakemake's group left, A's autoids kept;
    2. the same command starts again without any lock to remove and gets to classifying; it is then killed with
       SIGKILL, the CLI's process group and Snakemake's (a lost session, ``kill -9``);
    3. the same command says it removes the lock the killed run left behind, and completes every autoids."""
    exp, wd = copy_run.expdir, copy_run.workdir
    args = classify_args(exp, classifiers.b, wd)

    # 1. Ctrl-C
    term = tmp_path / "terminal-1.txt"
    proc, smk = start_and_wait_for_classify(args, wd, term)
    try:
        assert len(process_group(smk)) >= 2  # Snakemake and its classify job, in Snakemake's own group
        os.kill(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = term.read_text()
    assert rc == 130, out[-4000:]
    assert out.strip().splitlines()[-1] == ("antrax-pipe: interrupted: finished results are kept; run the same "
                                            "command again to continue")
    no_traceback(out)
    wait_for(lambda: not process_group(smk), 10, "Snakemake's process group to be gone")
    assert made_by(exp) == {sha256(classifiers.a)}  # nothing half-made replaced A's autoids

    # 2. the same command: no stale lock after a clean stop; killed with SIGKILL while it classifies
    term = tmp_path / "terminal-2.txt"
    proc, smk = start_and_wait_for_classify(args, wd, term, start_new_session=True)
    try:
        assert "removing the lock" not in term.read_text()
        wait_for(lambda: any((wd / ".snakemake" / "locks").glob("*")), 10, "Snakemake's lock")
        os.killpg(proc.pid, signal.SIGKILL)
        os.killpg(smk, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_for(lambda: not process_group(smk), 10, "Snakemake's process group to be gone")
    assert made_by(exp) == {sha256(classifiers.a)}

    # 3. the same command: the stale lock is lifted, said once, and every autoids is made by B
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-4000:]
    no_traceback(res)
    assert [ln for ln in res.stderr.splitlines() if "removing the lock" in ln] == [
        f"antrax-pipe: {wd}: removing the lock a stopped run left behind (snakemake --unlock)"]
    assert "LockException" not in res.stderr and "IncompleteFilesException" not in res.stderr
    assert made_by(exp) == {sha256(classifiers.b)}
    assert all(provenance(exp, m)["autoids_sha256"] == hashlib.sha256(autoids(exp)[m]).hexdigest()
               for m in MOVIES)


# --------------------------------------------------------------------------------------------------------------------
# 6. two runs at once in one work folder
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_second_run_in_the_same_workdir_is_refused_while_the_first_succeeds(copy_run, classifiers, tmp_path):
    exp, wd = copy_run.expdir, copy_run.workdir
    args = classify_args(exp, classifiers.a, wd, "--min-conf", "0.5")  # re-aggregates: a real run of a while
    term = tmp_path / "first.txt"
    first = cli_popen(args, term)
    try:
        wait_for(lambda: "antrax-pipe: running" in term.read_text(), 60, "the first run to start", first, term)
        second = cli(*args)
        line = one_error_line(second)
        assert "another antrax-pipe run is active" in line and str(wd) in line and f"pid {first.pid}" in line
        assert first.poll() is None  # the first run goes on
        rc = first.wait(timeout=TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
    out = term.read_text()
    assert rc == 0, out[-4000:]
    no_traceback(out)
    assert all(provenance(exp, m)["aggregation"]["min_conf"] == 0.5 for m in MOVIES)


# --------------------------------------------------------------------------------------------------------------------
# 7. disk full
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 12 MiB tmpfs (root only; skipped with the reason elsewhere)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs filled up, and mounting one needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path) -> Path:
    """Fill a file system to the last byte (unbuffered writes, smaller and smaller)."""
    filler = mnt / f"filler-{time.monotonic_ns()}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
def test_disk_full_while_reclassifying_keeps_every_previous_autoids(first_run, classifiers, small_tmpfs, tmp_path):
    """The '#' experiment with A's autoids (the first run, copied) on a small tmpfs, then re-classified with B:

    1. experiment and work folder on the tmpfs, filled before the command (run once already as a dry run, so its
       run files exist): refused at once, one line naming the work folder; nothing touched;
    2. work folder on the ordinary disk, the tmpfs filled while the classify jobs run: the run gets to the aggregate
       jobs, the moment the previous autoids would be replaced, and fails there, one line per movie naming the
       file; every previous autoids_<m>.csv and its provenance are still there as they were, no temporary file left.
    """
    assert first_run.result.returncode == 0, first_run.result.stderr[-4000:]
    exp = small_tmpfs / HASH_EXP.relative_to("data")
    shutil.copytree(first_run.expdir, exp, symlinks=True)
    old = autoids(exp)
    old_prov = {m: (labels_dir(exp) / "antrax-pipe" / f"autoids_{m}.json").read_bytes() for m in MOVIES}

    def nothing_lost():
        assert autoids(exp) == old
        assert {m: (labels_dir(exp) / "antrax-pipe" / f"autoids_{m}.json").read_bytes() for m in MOVIES} == old_prov
        assert not [p for p in labels_dir(exp).rglob(".*tmp*")]  # no temporary file left behind

    # 1. everything on the full disk
    wd = small_tmpfs / "work"
    shutil.copytree(first_run.workdir, wd, symlinks=True)
    args = classify_args(exp, classifiers.b, wd)
    dry = cli(*args, "--dry")
    assert dry.returncode == 0, dry.stderr[-4000:]
    filler = fill(small_tmpfs)
    res = cli(*args)
    line = one_error_line(res)
    assert "No space left on device" in line and str(wd) in line
    nothing_lost()
    filler.unlink()
    shutil.rmtree(wd)

    # 2. the experiment's disk fills up while the movies are classified
    wd = tmp_path / "work"
    shutil.copytree(first_run.workdir, wd, symlinks=True)
    shutil.rmtree(wd / "results" / "logs" / "classify")
    term = tmp_path / "terminal.txt"
    proc = cli_popen(classify_args(exp, classifiers.b, wd), term)
    try:
        wait_for(classify_job_started(wd), 120, "a classify job to start", proc, term)
        fill(small_tmpfs)
        rc = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = term.read_text()
    assert rc == 1, out[-4000:]
    no_traceback(out)
    assert all((wd / "results" / "probs" / HASH_NAME / f"probs_{m}.h5").is_file() for m in MOVIES)  # classified
    for m in MOVIES:
        lines = [ln for ln in out.splitlines() if "No space left on device" in ln and f"autoids_{m}" in ln]
        assert len(lines) == 1, out[-4000:]
    nothing_lost()


# --------------------------------------------------------------------------------------------------------------------
# 8. a user's own review_plan.csv
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_users_own_review_plan_is_never_replaced(copy_run, classifiers):
    exp, wd = copy_run.expdir, copy_run.workdir
    mine = exp / SESSION / "classifier" / "review_plan.csv"
    mine.write_bytes(b"tracklet,movie,my verdict\r\ntrj_id1_ti1_782_tf1_782,1,ok\r\n")
    before = mine.read_bytes()
    old_stamp = {m: (labels_dir(exp) / f"autoids_{m}.csv").stat().st_mtime_ns for m in MOVIES}
    res = cli(*classify_args(exp, classifiers.a, wd, "--min-conf", "0.5"))  # re-aggregates, so the review runs
    assert res.returncode == 1, res.stderr[-4000:]
    no_traceback(res)
    lines = [ln for ln in res.stderr.splitlines() if "review_plan.csv" in ln and "not a review plan" in ln]
    assert len(lines) == 1, res.stderr[-4000:]
    assert lines[0].startswith(f"{mine}: ")
    assert mine.read_bytes() == before
    # the autoids are still written
    for m in MOVIES:
        assert (labels_dir(exp) / f"autoids_{m}.csv").stat().st_mtime_ns != old_stamp[m]
        assert provenance(exp, m)["aggregation"]["min_conf"] == 0.5


# --------------------------------------------------------------------------------------------------------------------
# a bug: one line, exit 3, the traceback in a log file
# --------------------------------------------------------------------------------------------------------------------


def test_a_bug_is_one_line_with_exit_3_and_its_traceback_goes_to_a_log(tmp_path, monkeypatch, capsys):
    from antrax_pipe import cli as cli_module

    def broken(*_args, **_kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_module, "parse_explist", broken)
    rc = cli_module.main(["classify", str(tmp_path), "--workdir", str(tmp_path / "work")])
    err = capsys.readouterr().err
    log = tmp_path / "work" / "logs" / "antrax-pipe-error.log"
    assert rc == 3
    assert err.strip().splitlines() == [f"antrax-pipe: internal error: boom (details: {log})"]
    assert "Traceback" in log.read_text() and "RuntimeError: boom" in log.read_text()


# --------------------------------------------------------------------------------------------------------------------
# 9. merge-trainset killed half-way, then run again: tests/test_trainset.py::
#    test_merge_killed_half_way_then_run_again_completes (a real SIGKILL of the merging process)
# --------------------------------------------------------------------------------------------------------------------
