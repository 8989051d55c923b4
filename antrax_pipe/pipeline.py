"""Stage entry points: what each Snakemake rule does, as plain functions of paths and options.

The workflow scripts (``workflow/scripts/*.py``) only unpack the ``snakemake`` object and call these; the same
functions are what tests call. Heavy imports (TensorFlow) happen inside the stages that need them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .io.atomic import atomic_path, atomic_write_text
from .model import AntraxFormatError

log = logging.getLogger("antrax_pipe.pipeline")


def trainset_stage(
    classdir: Path, sources: list[Path], manifest_out: Path, allow_new_labels: bool = False
) -> Path:
    """Build a classifier's trainset and write its content manifest.

    With sources, ``classdir/examples`` is a product: rebuilt from scratch by merging the sources (so a relabelled or
    removed example disappears too), then swapped in. Without sources the classdir's own examples are the trainset.
    """
    from . import trainset

    classdir = Path(classdir)
    if sources:
        classdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=classdir, prefix=".merge-") as tmp:
            staging = Path(tmp) / "classdir"
            (staging / "examples").mkdir(parents=True)
            for src in sources:
                report = trainset.merge_trainset(Path(src), staging, allow_new_labels=True)
                log.info("merged %s: %s", src, report)
            if not allow_new_labels:
                _check_same_labels(sources)
            old = classdir / "examples"
            if old.exists():
                shutil.rmtree(old)
            (staging / "examples").rename(old)
    manifest = trainset.build_manifest(classdir)
    trainset.write_manifest(manifest_out, manifest)
    log.info("trainset %s: manifest %s written", classdir, manifest_out)
    return Path(manifest_out)


def _check_same_labels(sources: list[Path]) -> None:
    """Merging trainsets whose label sets differ is refused unless explicitly allowed (anTraX left it to luck)."""
    from .trainset import find_classes

    sets = {str(s): set(find_classes(Path(s) / "examples")) for s in sources}
    union = set().union(*sets.values())
    bad = {s: sorted(union - labs) for s, labs in sets.items() if union - labs}
    if bad:
        lines = "; ".join(f"{s} lacks {', '.join(m)}" for s, m in bad.items())
        raise AntraxFormatError(
            f"trainsets to merge have different label sets: {lines}. Set trainset.allow_new_labels: true to merge "
            f"anyway (labels missing from a trainset then have no examples from that experiment)."
        )


def train_stage(manifest: Path, model_out: Path, options: dict, threads: int | None = None) -> Path:
    """Train the classifier of ``manifest``'s classdir into ``model_out`` (incremental unless options say scratch)."""
    from .training import train_classifier

    classdir = Path(manifest).parent
    model_out = Path(model_out)
    opts = dict(options)
    opts.pop("threads", None)
    card = train_classifier(
        classdir,
        name=model_out.stem,
        threads=threads,
        progress=lambda msg: log.info("%s", msg),
        **opts,
    )
    if not model_out.is_file():
        raise AntraxFormatError(f"{model_out}: training finished but wrote no classifier file")
    log.info("trained %s: classes %s", model_out, ", ".join(card.classes))
    return model_out


def classify_stage(
    images: list[Path], classifier: Path, labels_file: Path, probs_out: Path, batch_size: int = 256,
    threads: int | None = None,
) -> Path:
    """Per-frame probabilities of one movie; stops before any work if the classifier and labels.csv disagree or an
    images file cannot be read (before TensorFlow is even imported, so a broken movie fails in a second).

    The probabilities file also gets a ``job_record`` attribute (JSON: image files, environment incl. GPUs and
    batch-system job ids, code version) that aggregation copies into the provenance file next to the autoids. It is
    added before the file is renamed into place, so the output stays atomic.
    """
    import h5py

    from .aggregation import check_classes
    from .classifier import read_card
    from .io.images import ImagesFile
    from .io.labels import read_labels

    images = [Path(p) for p in images]
    card = read_card(classifier)
    labels = read_labels(labels_file)
    check_classes(card.classes, labels, where=f"{classifier} vs {labels_file}")
    n_tracklets = 0
    for p in images:
        try:
            with ImagesFile(p) as f:
                n_tracklets += len(f.tracklets)
        except (AntraxFormatError, OSError) as exc:
            log.error("movie images cannot be read: %s", exc)
            raise
    log.info("%d tracklet(s) in %s", n_tracklets, ", ".join(p.name for p in images))
    from .inference import classify_movie, configure_tf

    tf_info = configure_tf(threads)
    log.info("TensorFlow: %s", tf_info)
    from .classifier import load_classifier

    model, card = load_classifier(classifier)
    record = {
        "format": JOB_RECORD_FORMAT,
        "stage": "classify",
        "created": _now(),
        "images": [_file_stamp(p) for p in images],
        "threads": threads,
        "environment": environment_info(tf_info),
        "code": code_version(),
    }
    with atomic_path(probs_out) as tmp:
        classify_movie(images, model, card, tmp, batch_size=batch_size, classifier_path=classifier)
        with h5py.File(tmp, "a") as h5:
            h5.attrs["job_record"] = json.dumps(record)
    return Path(probs_out)


def aggregate_stage(
    probs: Path, labels_file: Path, autoids_out: Path, params: dict, passed_files: list[Path] | None = None,
    provenance_out: Path | None = None,
) -> Path:
    """anTraX's tracklet rule (or another configured aggregator) → ``autoids_<m>.csv``, written atomically.

    ``provenance_out`` (e.g. ``labels/antrax-pipe/autoids_<m>.json``, never matching anTraX's ``autoids_*`` glob)
    records what produced the file: classifier path + sha256, thresholds, image files, the environment of the
    classification and aggregation jobs and the code version.
    """
    from .aggregation import AggregationParams, aggregate_movie
    from .io.autoids import write_autoids
    from .io.images import read_frame_passed
    from .io.labels import read_labels

    p = AggregationParams(**params)
    passed = None
    if p.usepassed:
        passed = {}
        for f in passed_files or []:
            passed.update(read_frame_passed(f))
    rows = aggregate_movie(Path(probs), read_labels(labels_file), p, frame_passed=passed)
    write_autoids(autoids_out, rows)
    n_id = sum(r.best_frame > 0 for r in rows)
    log.info("%s: %d tracklets, %d given an ID", autoids_out, len(rows), n_id)
    if provenance_out is not None:
        doc = provenance_record(Path(autoids_out), Path(probs), dict(params), n_tracklets=len(rows),
                                n_identified=n_id)
        atomic_write_text(provenance_out, json.dumps(doc, indent=1) + "\n")
        log.info("provenance: %s (classifier sha256 %s)", provenance_out, doc["classifier"]["sha256"][:12])
    return Path(autoids_out)


# --------------------------------------------------------------------------------------------------------------------
# Provenance: what produced each autoids file
# --------------------------------------------------------------------------------------------------------------------

PROVENANCE_FORMAT = "antrax-pipe-provenance-1"
JOB_RECORD_FORMAT = "antrax-pipe-job-record-1"
#: environment variables naming the batch-system job and the GPUs it was given
_BATCH_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION", "SLURM_STEP_ID",
               "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "LSB_JOBID", "LSB_QUEUE",
               "CUDA_VISIBLE_DEVICES")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _file_stamp(path: Path) -> dict[str, Any]:
    """Path, size and mtime (not a hash: image files can be many GB; the classifier is hashed instead)."""
    st = Path(path).stat()
    mtime = datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(timespec="seconds")
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime": mtime}


def _package_version(*names: str) -> str | None:
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def environment_info(tf_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Python, library versions, host, GPUs and batch-system job ids of the running job (no TensorFlow import:
    versions come from the installed package metadata; ``tf_info`` is what :func:`configure_tf` found)."""
    import platform
    import socket

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": {
            "tensorflow": _package_version("tensorflow", "tensorflow-cpu", "tensorflow-macos"),
            "keras": _package_version("keras"),
            "numpy": _package_version("numpy"),
            "h5py": _package_version("h5py"),
            "snakemake": _package_version("snakemake"),
        },
        "batch": {k: os.environ[k] for k in _BATCH_VARS if k in os.environ},
    }
    if tf_info is not None:
        env["tensorflow_devices"] = dict(tf_info)
        env["gpu"] = bool(tf_info.get("gpus"))
    return env


def _git_commit(start: Path) -> str | None:
    """HEAD commit of the checkout holding ``start``, read from ``.git`` directly (no git binary needed)."""
    for d in (start, *start.parents):
        g = d / ".git"
        if g.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = g.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            g = (d / text.split(":", 1)[1].strip()).resolve()
        if not g.is_dir():
            continue
        try:
            head = (g / "HEAD").read_text(encoding="utf-8").strip()
            if not head.startswith("ref:"):
                return head or None
            ref = head[4:].strip()
            common = g
            if (g / "commondir").is_file():
                common = (g / (g / "commondir").read_text(encoding="utf-8").strip()).resolve()
            for base in (g, common):
                if (base / ref).is_file():
                    return (base / ref).read_text(encoding="utf-8").strip()
            packed = common / "packed-refs"
            if packed.is_file():
                for line in packed.read_text(encoding="utf-8").splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
        except OSError:
            return None
        return None
    return None


def code_version() -> dict[str, Any]:
    """antrax-pipe version, where it runs from and its git commit (None outside a git checkout)."""
    from . import __version__

    src = Path(__file__).resolve().parent
    return {"antrax_pipe": __version__, "source": str(src), "git_commit": _git_commit(src.parent)}


def provenance_record(autoids: Path, probs: Path, params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The provenance document of one ``autoids_<m>.csv``: classifier path + sha256 (as hashed by the
    classification job, from the probabilities file), thresholds, inputs, environments and code version."""
    from .inference import ProbabilitiesFile, file_sha256

    with ProbabilitiesFile(probs) as pf:
        attrs, classes = dict(pf.attrs), list(pf.classes)
    clf_path = str(Path(attrs["classifier_path"]).resolve()) if attrs.get("classifier_path") else ""
    clf_hash = str(attrs.get("classifier_sha256") or "")
    job = json.loads(attrs["job_record"]) if attrs.get("job_record") else None
    doc: dict[str, Any] = {
        "format": PROVENANCE_FORMAT,
        "created": _now(),
        "autoids": str(Path(autoids).resolve()),  # the real place, not the results/sessions link
        "autoids_sha256": file_sha256(autoids),
        **extra,
        "classifier": {
            "path": clf_path,
            "sha256": clf_hash,
            "classes": classes,
        },
        "aggregation": dict(params),
        "probabilities": {
            "path": str(Path(probs).absolute()),
            "created": attrs.get("created"),
            "n_images": int(attrs["n_images"]) if "n_images" in attrs else None,
            "batch_size": int(attrs["batch_size"]) if "batch_size" in attrs else None,
        },
        "images": (job or {}).get("images") or [{"path": x} for x in json.loads(attrs.get("image_files") or "[]")],
        "classify_job": {"created": job.get("created"), "threads": job.get("threads"),
                         "environment": job.get("environment"), "code": job.get("code")} if job else None,
        "aggregate_job": {"environment": environment_info(), "code": code_version()},
    }
    return doc


def copy_atomic(src: Path, dst: Path) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def read_truth(path: Path) -> dict[str, str]:
    """Ground-truth CSV ``movie,tracklet,label`` → tracklet → label."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str)
    missing = {"tracklet", "label"} - set(df.columns)
    if missing:
        raise AntraxFormatError(f"{path}: ground-truth file lacks column(s) {', '.join(sorted(missing))}")
    return dict(zip(df["tracklet"], df["label"]))


def report_stage(
    experiments: dict[str, dict], out_html: Path, params: dict | None = None,
    failed: Mapping[str, Mapping[int, str]] | None = None, validation: Mapping[str, str] | None = None,
) -> Path:
    """The validation report of every session of the run (one classifier card: that of the first experiment).

    ``validation``: classifier file → its ``validation.h5`` (the coverage–error curve of that card's classifier).

    ``failed``: experiment → movie → reason; those movies are listed as failed (their images are not read: a
    corrupt file must not stop the report that is meant to show it).
    """
    from .classifier import read_card
    from .io.experiment import load_experiment
    from .report import build_report, load_session_result

    failed = failed or {}
    sessions, card, vfile = [], None, None
    for name, e in experiments.items():
        exp = load_experiment(Path(e["session_link"]).resolve().parent, e["session"])
        truth = read_truth(Path(e["truth"])) if e.get("truth") else None
        bad = {int(m): str(r) for m, r in (failed.get(name) or {}).items()}
        s = load_session_result(exp, movies=[m for m in e["movies"] if int(m) not in bad], truth=truth)
        s.failed_movies.update(bad)
        sessions.append(s)
        if card is None and e.get("classifier") and Path(e["classifier"]).is_file():
            try:
                card = read_card(Path(e["classifier"]))
                vfile = (validation or {}).get(e["classifier"])
            except (AntraxFormatError, OSError) as exc:  # e.g. a failed training left no usable model
                log.warning("no model card for the report: %s", exc)
    return build_report(sessions, card, Path(out_html), params=params,
                        validation=Path(vfile) if vfile and Path(vfile).is_file() else None)


# --------------------------------------------------------------------------------------------------------------------
# Failures: which movies have no autoids after a run, and why
# --------------------------------------------------------------------------------------------------------------------

_LOG_LINE = re.compile(r"^\S+ \S+ ([EC]) (antrax_pipe[\w.]*): (.*)$")
NOT_RUN = "not run: an upstream job failed or the run stopped early"


def failure_reason(logs: list[Path]) -> str | None:
    """The clearest error line of a failed job: the first error our stage logged (not the generic "stage failed"),
    else the last line of the traceback; None when no log exists or none shows an error."""
    for log_file in logs:
        if not Path(log_file).is_file():
            continue
        lines = Path(log_file).read_text(encoding="utf-8", errors="replace").splitlines()
        errors = [m.group(3) for m in map(_LOG_LINE.match, lines) if m and m.group(3) != "stage failed"]
        if errors:
            return f"{errors[0]} (log: {log_file})"
        if any("stage failed" in ln or ln.startswith("Traceback") for ln in lines):
            tail = [ln for ln in lines if ln.strip()][-1:]
            return f"{tail[0].strip() if tail else 'failed'} (log: {log_file})"
    return None


def find_failures(experiments: Mapping[str, Mapping[str, Any]], logs_dir: Path) -> dict[str, dict[int, str]]:
    """experiment → movie → reason, for every planned movie whose ``autoids_<m>.csv`` does not exist.

    The reason comes from the movie's classify/aggregate log (the job that failed), else it was never run.
    """
    out: dict[str, dict[int, str]] = {}
    for name, e in experiments.items():
        labels = Path(e["session_link"]) / "labels"
        for m in e["movies"]:
            if (labels / f"autoids_{m}.csv").is_file():
                continue
            logs = [Path(logs_dir) / stage / name / f"{m}.log" for stage in ("classify", "aggregate")]
            out.setdefault(name, {})[int(m)] = failure_reason(logs) or NOT_RUN
    return out


def failure_report(experiments: dict[str, dict], out_html: Path, params: dict | None, logs_dir: Path) -> Path | None:
    """After a failed run (Snakemake's ``onerror``): the report with the movies that have no autoids listed as
    failed, with the reason from their logs. Nothing is written when every movie has its autoids (then the failure
    was elsewhere, e.g. in a partial ``--until`` run, and an existing report stays as it is).

    The report's mtime is set to the epoch so that the next run rebuilds it: a failure report is never up to date.
    """
    failed = find_failures(experiments, logs_dir)
    if not failed:
        return None
    out = report_stage(experiments, Path(out_html), params, failed=failed)
    os.utime(out, (0, 0))
    for name, movies in failed.items():
        for m, reason in sorted(movies.items()):
            log.error("failed movie %s/%s: %s", name, m, reason)
    return out
