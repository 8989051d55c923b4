"""The cluster profiles as users run them: SLURM on a real (local, one-node) cluster, LSF through stub commands,
plus the workflow's static checks (``snakemake --lint``, ``snakefmt --check``).

* SLURM: ``../shared/tools/slurm-local/start-slurm.sh`` starts a private Slurm 22.05 cluster on localhost with a
  fake-GPU gres (needs root and Debian's slurm packages, which it installs). The test runs the demo through
  ``profiles/slurm`` with its placeholders filled in, one corrupt movie added, and checks that every movie was its
  own SLURM job holding a GPU, that the corrupt movie failed alone (retried, clear log line, listed in the report),
  and that the autoids equal those of a local run with the same classifier. The documented alternative to grouping,
  SLURM job arrays, is run too (same autoids).
* LSF cannot run here. Stub ``bsub``/``bjobs``/``badmin``/``lsclusters`` scripts on PATH record the
  submissions the LSF executor makes (nothing is executed) and the test checks those ``bsub`` command lines.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_workflow import REPO, SNAKEFILE, make_workdir, snakemake

SLURM_TOOLS = Path(os.environ.get("ANTRAX_SLURM_LOCAL_TOOLS", REPO.parent / "shared" / "tools" / "slurm-local"))
#: node size of the local cluster (more than the machine has: SLURM allows it here): train asks for 8 GB, a movie's
#: group job for 2 CPUs, 1 GPU and 3 GB (6 GB on a retry); 4 movies at once save rounds of the plugin's status polling
SLURM_ENV = {"SLURM_LOCAL_MEM_MB": "16000", "SLURM_LOCAL_CPUS": "8", "SLURM_LOCAL_GPUS": "4"}
LOCK = Path("/tmp/antrax-pipe-slurm-test.lock")
#: run from the repository root, Snakemake applies profiles/default on top of any --profile: the tests do the same
WORKFLOW_PROFILE = REPO / "profiles" / "default"


def filled_profile(name: str, dest: Path, values: dict[str, str]) -> Path:
    """A copy of ``profiles/<name>`` with its ``<...>`` placeholders replaced, as a user would fill them in."""
    text = (REPO / "profiles" / name / "config.yaml").read_text()
    for key, value in values.items():
        assert f"<{key}>" in text, f"profiles/{name} has no <{key}> placeholder"
        text = text.replace(f"<{key}>", value)
    assert not re.search(r'"<[a-z-]+>"', text), "placeholders left unfilled"
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(text)
    return dest


def test_profiles_are_documented_and_consistent():
    cfgs = {n: yaml.safe_load((REPO / "profiles" / n / "config.yaml").read_text()) for n in ("default", "slurm", "lsf")}
    assert cfgs["default"].get("executor") is None and cfgs["default"]["scheduler"] == "greedy"
    for n in ("slurm", "lsf"):
        c = cfgs[n]
        assert c["executor"] == n and c["scheduler"] == "greedy" and c["retries"] >= 1
        assert c["groups"] == {"classify": "movie", "aggregate": "movie"} and c["group-components"]["movie"] >= 1
        assert c["set-resource-scopes"] == {"gpu": "local"} and c["resources"] == {"gpu": 1}
    # profiles/default is applied over the cluster profile (key by key) when snakemake runs in the repository root:
    # it must not undo anything of theirs
    for n in ("slurm", "lsf"):
        for key, value in cfgs["default"].items():
            assert cfgs[n].get(key, value) == value, (n, key)
    slurm = cfgs["slurm"]
    assert slurm["slurm-status-command"] == "squeue"
    for rule, res in slurm["set-resources"].items():  # GPUs only through gpu/gres/gpu_model, never slurm_extra
        assert "--gres" not in str(res.get("slurm_extra", "")) and "--gpus" not in str(res.get("slurm_extra", ""))
    lsf = cfgs["lsf"]["set-resources"]
    assert "-gpu num=1" in lsf["classify"]["lsf_extra"] and "-gpu num=1" in lsf["train"]["lsf_extra"]
    readme = (REPO / "profiles" / "README.md").read_text()
    for word in ("profiles/slurm", "profiles/lsf", "squeue", "group-components", "slurm-array-jobs", "retries",
                 "SNAKEMAKE_LSF_MEMFMT", "-gpu num=1"):
        assert word in readme, word


def test_lint_and_snakefmt_are_clean(tmp_path):
    wd = make_workdir(tmp_path)
    res = snakemake(wd, "--lint", check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out[-3000:]
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", str(REPO / "workflow")], capture_output=True,
                         text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# --------------------------------------------------------------------------------------------------------------------
# LSF: stub commands record the bsub lines
# --------------------------------------------------------------------------------------------------------------------

STUBS = {
    "bsub": """#!/bin/bash
# stub: record the submission (one line), never run it
n=$(( $(cat "$STUB_DIR/counter" 2>/dev/null || echo 100) + 1 )); echo $n > "$STUB_DIR/counter"
printf '%s\\n' "bsub $*" >> "$STUB_DIR/bsub.log"
echo "Job <$n> is submitted to queue <stub>."
""",
    "bjobs": """#!/bin/bash
for ((i=101; i<=$(cat "$STUB_DIR/counter" 2>/dev/null || echo 100); i++)); do echo "$i PEND"; done
""",
    "bhist": "#!/bin/bash\nexit 0\n",
    "badmin": """#!/bin/bash
echo "MBD configuration at $(date)"
echo "LSB_SHAREDIR = $STUB_DIR/share"
echo "LSF_CONFDIR = $STUB_DIR/conf"
echo "LSF_UNIT_FOR_LIMITS = MB"
""",
    "lsclusters": """#!/bin/bash
echo "CLUSTER_NAME   STATUS   MASTER_HOST   ADMIN   HOSTS  SERVERS"
echo "stubcluster    ok       localhost     root    1      1"
""",
}


def lsf_submissions(workdir: Path, profile: Path, stub: Path, expect: int, *args: str) -> list[str]:
    """Run the workflow with the LSF executor against the stubs until ``expect`` bsub calls were made, then kill
    Snakemake (a Ctrl-C would wait for the plugin's first status check, 20 s) and unlock the working directory.
    Returns the recorded bsub lines."""
    log = stub / "bsub.log"
    log.unlink(missing_ok=True)
    env = dict(os.environ, PATH=f"{stub / 'bin'}:{os.environ['PATH']}", STUB_DIR=str(stub), PYTHONWARNINGS="ignore")
    env.pop("SNAKEMAKE_LSF_MEMFMT", None)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--profile", str(profile), "--workflow-profile", str(WORKFLOW_PROFILE), *args]
    with open(stub / "snakemake.out", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if log.is_file() and len(log.read_text().splitlines()) >= expect:
                    time.sleep(1)  # would a further job be submitted?
                    break
                time.sleep(0.2)
        finally:
            proc.kill()
            proc.wait()
    snakemake(workdir, "--unlock")
    lines = log.read_text().splitlines() if log.is_file() else []
    assert len(lines) == expect, (lines, (stub / "snakemake.out").read_text()[-4000:])
    return lines


def test_lsf_profile_submits_gpu_jobs_with_memory_per_job(tmp_path):
    """LSF cannot run here: stubs on PATH record the bsub lines the LSF executor would run; no job executes."""
    stub = tmp_path / "lsf-stub"
    (stub / "bin").mkdir(parents=True)
    for name, text in STUBS.items():
        (stub / "bin" / name).write_text(text)
        (stub / "bin" / name).chmod(0o755)
    params = stub / "conf" / "lsbatch" / "stubcluster" / "configdir" / "lsb.params"
    params.parent.mkdir(parents=True)
    params.write_text("Begin Parameters\nDEFAULT_QUEUE = normal\nEnd Parameters\n")
    profile = filled_profile("lsf", tmp_path / "profile", {"cpu-queue": "short", "gpu-queue": "gpuq",
                                                           "project": "antlab"})
    wd = make_workdir(tmp_path / "wd")
    snakemake(wd, "--until", "trainset")  # the merge runs here; training is the next job to submit

    (train,) = lsf_submissions(wd, profile, stub, 1)
    assert "--target-jobs 'train:clf=general,model=classifier'" in train
    assert re.search(r" -P antlab -q gpuq -W 480 -n 2 -R rusage\[mem=8000(\.0)?\] -R span\[hosts=1\] -gpu num=1 ",
                     train), train

    # as if training had finished: one bsub for all 4 movies (group-components: movie=10), one GPU, one movie after
    # another, memory per job (classify's 3000 MB), runtime 4 x 60 min + aggregation (2 cores: 2 x 10 min)
    model = wd / "results" / "classifiers" / "general" / "classifier.h5"
    model.write_bytes(b"")
    # forget the killed training job (marked incomplete); it has no metadata record, hence check=False
    snakemake(wd, "--cleanup-metadata", str(model.relative_to(wd)), check=False)
    # ... and the new classifier's held-out validation, a GPU job of its own
    validate, group = sorted(lsf_submissions(wd, profile, stub, 2), key=lambda line: "'classify:" in line)
    assert "--target-jobs 'validate:clf=general'" in validate and "-q gpuq" in validate and "-gpu num=1" in validate
    targets = re.search(r"--target-jobs ((?:'[^']+' ?)+)", group).group(1).split()
    assert sorted(targets) == sorted(f"'{r}:exp={e},movie={m}'" for r in ("classify", "aggregate")
                                     for e in ("colonyA", "colonyB") for m in (1, 2))
    assert re.search(r" -P antlab -q gpuq -W 260 -n 2 -R rusage\[mem=3000(\.0)?\] -R span\[hosts=1\] -gpu num=1 ",
                     group), group
    assert "--retries 0" in group  # retries are the main process's business: it resubmits

    # per movie, one job each (what the SLURM test runs): 4 bsub lines, 60 + 10 min each
    lines = lsf_submissions(wd, profile, stub, 5, "--group-components", "movie=1")
    lines = [line for line in lines if "'validate:" not in line]
    assert len(lines) == 4
    for line in lines:
        assert re.search(r" -q gpuq -W 70 -n 2 -R rusage\[mem=3000(\.0)?\] -R span\[hosts=1\] -gpu num=1 ", line), line


def test_cluster_profiles_dry_run_without_a_cluster(tmp_path):
    wd = make_workdir(tmp_path)
    for name in ("slurm", "lsf"):
        res = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
                              str(wd), "--profile", str(REPO / "profiles" / name), "--workflow-profile",
                              str(WORKFLOW_PROFILE), "-n", "--quiet", "rules"],
                             capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        assert "classify" in res.stdout and "train" in res.stdout


# --------------------------------------------------------------------------------------------------------------------
# SLURM: a real local cluster
# --------------------------------------------------------------------------------------------------------------------


def _node_too_small() -> bool:
    """Whether a running cluster is smaller than SLURM_ENV (then it is restarted with that size)."""
    out = subprocess.run(["scontrol", "show", "node", "localhost"], capture_output=True, text=True, timeout=30).stdout
    have = {k: re.search(pattern, out) for k, pattern in (("SLURM_LOCAL_MEM_MB", r"RealMemory=(\d+)"),
                                                           ("SLURM_LOCAL_CPUS", r"CPUTot=(\d+)"),
                                                           ("SLURM_LOCAL_GPUS", r"Gres=gpu:(\d+)"))}
    return any(m is None or int(m.group(1)) < int(SLURM_ENV[k]) for k, m in have.items())


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running local SLURM cluster for this module (started here unless one is up; stopped again if started here).

    Skips with the reason when this machine cannot run one: not root, no slurm-local tools, or the start script
    failed (e.g. Debian's slurm packages cannot be installed). ``ANTRAX_TEST_SLURM=0`` skips on purpose.
    """
    if os.environ.get("ANTRAX_TEST_SLURM") == "0":
        pytest.skip("ANTRAX_TEST_SLURM=0")
    if os.geteuid() != 0:
        pytest.skip("needs root to start a local SLURM cluster (start-slurm.sh)")
    start, stop = SLURM_TOOLS / "start-slurm.sh", SLURM_TOOLS / "stop-slurm.sh"
    if not start.is_file():
        pytest.skip(f"no local SLURM tools at {SLURM_TOOLS} (set ANTRAX_SLURM_LOCAL_TOOLS)")
    with open(LOCK, "w") as lock:  # one cluster per machine: concurrent test sessions take turns
        fcntl.flock(lock, fcntl.LOCK_EX)
        was_up = shutil.which("squeue") is not None and subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30).stdout.strip() in (
            "idle", "mix", "alloc")
        env = dict(os.environ, **SLURM_ENV)
        if was_up and _node_too_small():
            subprocess.run(["bash", str(stop), "--quiet"], env=env, timeout=120)
            was_up = False
        if not was_up:
            res = subprocess.run(["bash", str(start)], env=env, capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                pytest.skip(f"could not start the local SLURM cluster: {(res.stdout + res.stderr)[-1500:]}")
        try:
            yield
        finally:
            if not was_up:
                subprocess.run(["bash", str(stop), "--quiet"], env=env, timeout=120)


def copy_corrupt_movie(session: Path, src: int, dst: int) -> Path:
    """A truncated copy of a movie's images file as a new movie (a copy that was cut short)."""
    target = session / "images" / f"images_{dst}.mat"
    data = (session / "images" / f"images_{src}.mat").read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def slurm_command(workdir: Path, profile: Path, *args: str) -> list[str]:
    # the plugin's first status check 1 s after a submission (default 20 s in the profile)
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
            "--profile", str(profile), "--workflow-profile", str(WORKFLOW_PROFILE),
            "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5", *args]


def autoids_bytes(wd: Path) -> dict[tuple[str, int], bytes]:
    return {(exp, m): (wd / "demo" / "experiments" / exp / "antrax" / "labels" / f"autoids_{m}.csv").read_bytes()
            for exp in ("colonyA", "colonyB") for m in (1, 2)}


def classify_batch_env(wd: Path) -> dict[tuple[str, int], dict[str, str]]:
    """Batch-system variables each movie's classification job saw (from the provenance files)."""
    out = {}
    for exp in ("colonyA", "colonyB"):
        for m in (1, 2):
            prov = json.loads((wd / "results" / "sessions" / exp / "labels" / "antrax-pipe" / f"autoids_{m}.json")
                              .read_text())
            out[exp, m] = prov["classify_job"]["environment"]["batch"]
            out[exp, m]["aggregate_job_id"] = prov["aggregate_job"]["environment"]["batch"].get("SLURM_JOB_ID", "")
    return out


def assert_gpu_jobs_completed(job_ids) -> None:
    for job_id in job_ids:
        info = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        assert "gres:gpu:1" in info and "JobState=COMPLETED" in info, info


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, slurm_cluster):
    """The demo plus a truncated movie (colonyB/3), run through profiles/slurm: every step a SLURM job, each movie
    (classify + aggregate) its own job (``--group-components movie=1``), ``--keep-going``."""
    tmp = tmp_path_factory.mktemp("slurm")
    wd = make_workdir(tmp / "wd", epochs=2)
    copy_corrupt_movie(wd / "demo" / "experiments" / "colonyB" / "antrax", 1, 3)
    profile = filled_profile("slurm", tmp / "profile", {"cpu-partition": "debug", "gpu-partition": "debug",
                                                        "account": "testacct"})
    t0 = time.monotonic()
    res = subprocess.run(slurm_command(wd, profile, "--keep-going", "--group-components", "movie=1"),
                         capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    print(f"SLURM run (groups): {time.monotonic() - t0:.0f} s")
    return wd, res


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_profile_on_a_real_cluster_equals_local_run(slurm_run, tmp_path):
    wd, res = slurm_run
    out = res.stdout + res.stderr
    assert res.returncode != 0, "the corrupt movie should make the run fail"

    # every good movie: autoids + provenance written by a SLURM job that held one (fake) GPU, one job per movie,
    # aggregation in the same job
    env = classify_batch_env(wd)
    for key, batch in env.items():
        assert re.fullmatch(r"\d", batch["CUDA_VISIBLE_DEVICES"]) and batch["SLURM_GPUS_ON_NODE"] == "1", batch
        assert batch["aggregate_job_id"] == batch["SLURM_JOB_ID"], key
    assert len({b["SLURM_JOB_ID"] for b in env.values()}) == 4, env
    assert_gpu_jobs_completed({b["SLURM_JOB_ID"] for b in env.values()})
    # training, validation and the merge were SLURM jobs too; report and review lists ran in the main process
    submitted = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", out)
    # trainset, train, validate, 4 movies, the corrupt one twice (retries: 1)
    assert len(submitted) == 3 + 4 + 2, out[-6000:]

    # the corrupt movie failed alone, was retried once, its log says why, and the report lists it
    log = (wd / "results" / "logs" / "classify" / "colonyB" / "3.log").read_text()
    assert "movie images cannot be read" in log and "images_3.mat" in log and "truncated" in log, log
    assert "Trying to restart job" in out
    assert not (wd / "results" / "sessions" / "colonyB" / "labels" / "autoids_3.csv").exists()
    report = wd / "results" / "report" / "report.html"
    html = report.read_text()
    assert "failed" in html and "images_3.mat" in html and "movie images cannot be read" in html
    assert report.stat().st_mtime == 0  # a failure report is always rebuilt by the next run

    # the same classifier, run locally: byte-identical autoids
    local = make_workdir(tmp_path / "local")
    cfg_file = local / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["classifiers"] = {"general": {"file": str(wd / "results" / "classifiers" / "general" / "classifier.h5")}}
    cfg_file.write_text(yaml.safe_dump(cfg))
    snakemake(local)
    assert autoids_bytes(local) == autoids_bytes(wd)


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_job_arrays_instead_of_groups(slurm_run, tmp_path):
    """The profile's documented alternative: no groups, ``slurm-array-jobs: classify,aggregate``: the movies'
    classifications are one array job, each task holding a GPU; same autoids as the grouped run."""
    grouped, _ = slurm_run
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    text = re.sub(r"(?ms)^groups:\n.*?^group-components:\n  movie: \d+\n", "", text)
    text = text.replace("# slurm-array-jobs: classify,aggregate", "slurm-array-jobs: classify,aggregate")
    assert "groups:" not in text and "\nslurm-array-jobs: classify,aggregate" in text
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(
        text.replace("<cpu-partition>", "debug").replace("<gpu-partition>", "debug").replace("<account>", "testacct"))
    wd = make_workdir(tmp_path / "wd")
    cfg_file = wd / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["classifiers"] = {"general": {"file": str(grouped / "results" / "classifiers" / "general" / "classifier.h5")}}
    cfg_file.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    res = subprocess.run(slurm_command(wd, tmp_path / "profile"), capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
    print(f"SLURM run (arrays): {time.monotonic() - t0:.0f} s")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert len(re.findall(r"Submitted array job with Snakemake IDs \S+ and SLURM job ID \d+", out)) == 2, out[-4000:]
    env = classify_batch_env(wd)
    assert len({b["SLURM_ARRAY_JOB_ID"] for b in env.values()}) == 1, env  # one array job
    assert sorted(b["SLURM_ARRAY_TASK_ID"] for b in env.values()) == ["1", "2", "3", "4"]
    assert all(re.fullmatch(r"\d", b["CUDA_VISIBLE_DEVICES"]) for b in env.values()), env
    assert_gpu_jobs_completed({b["SLURM_JOB_ID"] for b in env.values()})
    assert autoids_bytes(wd) == autoids_bytes(grouped)
