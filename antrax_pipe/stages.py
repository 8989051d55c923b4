"""Stage entry points: what each Snakemake rule does, as plain functions of paths and options.

The workflow scripts (``workflow/scripts/*.py``) only unpack the ``snakemake`` object and call one of these; the same
functions are what tests call. This is the one layer that knows every other: each stage reads its inputs (io),
computes (logic, TensorFlow users) and writes its outputs atomically. TensorFlow is imported only inside the stages
that need it (through :mod:`antrax_pipe.inference`, :mod:`antrax_pipe.classifier`, :mod:`antrax_pipe.training`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import pandas as pd

from . import trainset
from ._version import __version__
from .aggregation import AggregationParams, aggregate_movie, check_classes
from .classifier import load_classifier
from .conflicts import find_conflicts, resolve_conflicts
from .coverage import (
    coverage_error_curve,
    validation_operating_point,
    validation_params,
)
from .evaluate import validate_classifier
from .inference import classify_movie, configure_tf
from .io.atomic import atomic_path, atomic_write_text, file_sha256
from .io.autoids import write_autoids
from .io.classifier import read_card
from .io.examples import find_classes, list_examples
from .io.experiment import load_experiment, read_truth
from .io.heldout import STATUS_OK, read_validation, write_validation
from .io.images import ImagesFile, read_frame_passed
from .io.labels import read_labels
from .io.manifest import build_manifest, manifest_hash, manifest_of, write_manifest
from .io.probabilities import ProbabilitiesFile, add_attribute
from .io.review_tables import write_label_next, write_review_plan
from .model import AntraxFormatError, TrainingError, TrainsetError
from .logutil import progress as console_info
from .provenance import (
    JOB_RECORD_FORMAT,
    code_version,
    environment_info,
    file_stamp,
    gpu_allocation,
    now,
    provenance_record,
)
from .results import load_session_result, tracklet_table
from .review import (
    REVIEW_KINDS,
    confused_pairs_of,
    label_next,
    sampling_plan,
    tracklet_gates,
    trainset_tracklets,
)
from .training import train_classifier

log = logging.getLogger("antrax_pipe.stages")


def trainset_stage(
    classdir: Path, sources: list[Path], manifest_out: Path, allow_new_labels: bool = False
) -> Path:
    """Build a classifier's trainset and write its content manifest.

    With sources, ``classdir/examples`` is a product: rebuilt from scratch by merging the sources (so a relabelled or
    removed example disappears too), then swapped in. Without sources the classdir's own examples are the trainset.
    """
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
    manifest = build_manifest(classdir)
    write_manifest(manifest_out, manifest)
    log.info("trainset %s: manifest %s written", classdir, manifest_out)
    return Path(manifest_out)


def _check_same_labels(sources: list[Path]) -> None:
    """Merging trainsets whose label sets differ is refused unless explicitly allowed (anTraX left it to luck)."""
    sets = {str(s): set(find_classes(Path(s) / "examples")) for s in sources}
    union = set().union(*sets.values())
    bad = {s: sorted(union - labs) for s, labs in sets.items() if union - labs}
    if bad:
        lines = "; ".join(f"{s} lacks {', '.join(m)}" for s, m in bad.items())
        raise AntraxFormatError(
            f"trainsets to merge have different label sets: {lines}. Set trainset.allow_new_labels: true to merge "
            f"anyway (labels missing from a trainset then have no examples from that experiment)."
        )


def check_gpu(tf_info: Mapping[str, Any], require: bool = False) -> None:
    """A job the batch system gave a GPU must use it: when TensorFlow sees none, say so loudly (the usual cause is a
    CPU-only TensorFlow: install ``antrax-pipe[gpu]`` or use the GPU environment), or stop with ``require``."""
    given = gpu_allocation()
    if given is None or tf_info.get("gpus"):
        return
    msg = (f"this job was given a GPU ({given}) but TensorFlow sees none: it runs on the CPU, many times slower. "
           f"Install the GPU build (pip install 'antrax-pipe[gpu]', or the workflow's GPU conda env / container)")
    if require:
        raise TrainingError(msg + "; stopping because classify.require_gpu is set")
    log.warning("%s", msg)


_EPOCH = re.compile(r"^epoch (\d+)/(\d+):")


def _epoch_progress(msg: str) -> None:
    """Training progress: every line to the log; to the terminal the first epoch, every 5th and the last (and every
    line that is not an epoch line), so a 30-epoch run does not fill the screen."""
    m = _EPOCH.match(msg)
    if m and int(m.group(1)) not in (1, int(m.group(2))) and int(m.group(1)) % 5:
        log.info("%s", msg)
    else:
        console_info(log, "%s", msg)


def train_stage(manifest: Path, model_out: Path, options: dict, threads: int | None = None) -> Path:
    """Train the classifier of ``manifest``'s classdir into ``model_out`` (incremental unless options say scratch)."""
    classdir = Path(manifest).parent
    model_out = Path(model_out)
    opts = dict(options)
    opts.pop("threads", None)
    require_gpu = bool(opts.pop("require_gpu", False))
    check_gpu(configure_tf(threads), require_gpu)
    card = train_classifier(
        classdir,
        name=model_out.stem,
        threads=threads,
        progress=_epoch_progress,
        **opts,
    )
    if not model_out.is_file():
        raise AntraxFormatError(f"{model_out}: training finished but wrote no classifier file")
    console_info(log, "trained %s: classes %s", model_out, ", ".join(card.classes))
    return model_out


def classify_stage(
    images: list[Path], classifier: Path, labels_file: Path, probs_out: Path, batch_size: int = 256,
    threads: int | None = None, require_gpu: bool = False,
) -> Path:
    """Per-frame probabilities of one movie; stops before any work if the classifier and labels.csv disagree or an
    images file cannot be read (before TensorFlow is even imported, so a broken movie fails in a second).

    The probabilities file also gets a ``job_record`` attribute (JSON: image files, environment incl. GPUs and
    batch-system job ids, code version) that aggregation copies into the provenance file next to the autoids. It is
    added before the file is renamed into place, so the output stays atomic.
    """
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
            raise AntraxFormatError(f"movie images cannot be read: {exc}") from exc
    log.info("%d tracklet(s) in %s", n_tracklets, ", ".join(p.name for p in images))
    tf_info = configure_tf(threads)
    log.info("TensorFlow: %s", tf_info)
    check_gpu(tf_info, require_gpu)
    model, card = load_classifier(classifier)
    record = {
        "format": JOB_RECORD_FORMAT,
        "stage": "classify",
        "created": now(),
        "images": [file_stamp(p) for p in images],
        "threads": threads,
        "environment": environment_info(tf_info),
        "code": code_version(),
    }
    with atomic_path(probs_out) as tmp:
        classify_movie(images, model, card, tmp, batch_size=batch_size, classifier_path=classifier,
                       name=movie_label(probs_out))
        add_attribute(tmp, "job_record", json.dumps(record))
    return Path(probs_out)


def aggregation_params(params: Mapping[str, Any]) -> AggregationParams:
    """The tracklet rule's settings from the workflow's ``aggregate:`` config (other keys, e.g.
    ``resolve_conflicts``, belong to the stages)."""
    names = {f.name for f in dataclasses.fields(AggregationParams)}
    return AggregationParams(**{k: v for k, v in params.items() if k in names})


def _conflicts(rows: list, ids: Sequence[str], resolve: bool, movie: str) -> list:
    """Count the movie's ID conflicts (overlapping tracklets given one ID) and, if asked, resolve them."""
    found = find_conflicts(rows, ids)
    if found and resolve:
        rows, dropped = resolve_conflicts(rows, ids)
        console_info(log, "%s: %d ID conflict(s); %d tracklet(s) with less evidence set to Unknown", movie,
                     len(found), len(dropped))
    elif found:
        log.info("%s: %d ID conflict(s) (overlapping tracklets given one ID; aggregate.resolve_conflicts resolves "
                 "them)", movie, len(found))
    return rows


def keep_other_classifiers_autoids(autoids: Path, provenance: Path, probs: Path) -> Path | None:
    """Before replacing an ``autoids_<m>.csv`` that another classifier (another file, or anTraX, or a person) made,
    copy it to ``labels/antrax-pipe/previous/`` and say so: re-classifying never loses what the user had. A newer
    training of the same classifier file replaces its own earlier autoids (the retrain loop). Returns the copy.
    Messages name the real files (the workflow reaches them through links in its work folder)."""
    autoids, provenance = Path(autoids).resolve(), Path(provenance).resolve()
    if not autoids.is_file():
        return None
    with ProbabilitiesFile(probs) as pf:
        new = str(pf.attrs.get("classifier_sha256") or "")
        new_path = str(Path(pf.attrs["classifier_path"]).resolve()) if pf.attrs.get("classifier_path") else ""
    try:
        doc = json.loads(provenance.read_text(encoding="utf-8"))["classifier"]
        old, old_path = str(doc["sha256"]), str(doc.get("path") or "")
    except (OSError, ValueError, KeyError, TypeError):
        old = old_path = ""
    # the same classifier, or a newer training of the same classifier (the retrain loop; same classdir and file name,
    # wherever the project has moved since; provenance records every version): replace without a copy
    if old and (old == new or (old_path and Path(old_path).parts[-2:] == Path(new_path).parts[-2:])):
        return None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = provenance.parent / "previous" / f"{autoids.stem}.{old[:12] or 'unknown-classifier'}.{stamp}.csv"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(autoids, tmp)
    if provenance.is_file():
        shutil.copyfile(provenance, dest.with_suffix(".json"))
    log.warning("%s was made by %s: kept as %s before writing the new one", autoids,
                f"classifier sha256 {old[:12]}" if old else "another tool or classifier (no provenance)", dest)
    return dest


def movie_label(probs: Path) -> str:
    """"colonyA movie 1" for ``results/probs/colonyA/probs_1.h5``: how log lines name a movie."""
    p = Path(probs)
    m = re.match(r"probs_(\d+)", p.name)
    return f"{p.parent.name} movie {m.group(1)}" if m else p.name


def aggregate_stage(
    probs: Path, labels_file: Path, autoids_out: Path, params: dict, passed_files: list[Path] | None = None,
    provenance_out: Path | None = None,
) -> Path:
    """anTraX's tracklet rule (or another configured aggregator) → ``autoids_<m>.csv``, written atomically.

    ``provenance_out`` (e.g. ``labels/antrax-pipe/autoids_<m>.json``, never matching anTraX's ``autoids_*`` glob)
    records what produced the file: classifier path + sha256, thresholds, image files, the environment of the
    classification and aggregation jobs and the code version.
    """
    p = aggregation_params(params)
    passed = None
    if p.usepassed:
        if not passed_files:
            m = re.match(r"probs_(\d+)", Path(probs).name)
            want = f"frame_passed_{m.group(1)}.mat" if m else "frame_passed_<m>.mat"
            images = Path(labels_file).resolve().parent.parent / "images"  # <session>/parameters/labels.csv
            raise AntraxFormatError(
                f"{movie_label(Path(probs))}: aggregate.usepassed is on but the movie has no {want} in {images}; "
                f"turn usepassed off or run anTraX's frame filter first")
        passed = {}
        for f in passed_files:
            passed.update(read_frame_passed(f))
    labels = read_labels(labels_file)
    rows = aggregate_movie(Path(probs), labels, p, frame_passed=passed)
    rows = _conflicts(rows, labels.ant_labels, bool(params.get("resolve_conflicts")), movie_label(Path(probs)))
    if provenance_out is not None:
        keep_other_classifiers_autoids(Path(autoids_out), Path(provenance_out), Path(probs))
    write_autoids(autoids_out, rows)
    n_id = sum(r.best_frame > 0 for r in rows)
    console_info(log, "%s: %d tracklets, %d given an ID → %s", movie_label(Path(probs)), len(rows), n_id,
                 autoids_out)
    if provenance_out is not None:
        doc = provenance_record(Path(autoids_out), Path(probs), dict(params), n_tracklets=len(rows),
                                n_identified=n_id)
        atomic_write_text(provenance_out, json.dumps(doc, indent=1) + "\n")
        log.info("provenance: %s (classifier sha256 %s)", provenance_out, doc["classifier"]["sha256"][:12])
    return Path(autoids_out)


#: Bump when what validate_classifier computes changes (the package version is part of the key as well).
_VALIDATION_CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class _ValidationCache:
    path: Path
    key: str


def _validation_cache(classifier: str | Path, labels: Any, p: AggregationParams) -> _ValidationCache | None:
    """Where the held-out validation of this classifier is kept between runs (docs/workflow.md#performance-notes).

    ``<classdir>/.antrax-pipe/validation-<sha12>-<key12>.h5``: next to the classifier (and the examples it is
    validated on), so every work folder and every user of that classifier reuses it, and it goes away with it. The
    key is a sha256 over everything the result depends on: the classifier file's own sha256 (a different classifier
    never matches), the examples' manifest (names, labels, content hashes), the label set, the aggregation
    settings, the package version. The full key is stored in the file and checked on reading. A classdir that
    cannot be written to just means no cache (validation runs every time, as before)."""
    classifier = Path(classifier)
    try:
        sha = file_sha256(classifier)
    except OSError:
        return None
    classdir = classifier.parent
    try:
        examples = list_examples(classdir)
        trainset = manifest_hash(manifest_of(examples, classdir))
    except (TrainsetError, OSError):
        trainset = None
    doc = {"cache": _VALIDATION_CACHE_VERSION, "version": __version__, "classifier_sha256": sha,
           "trainset": trainset, "labels": {k: list(getattr(labels, k)) for k in
                                            ("ant_labels", "noant_labels", "other_labels")},
           "aggregate": dataclasses.asdict(p)}
    key = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    return _ValidationCache(classdir / ".antrax-pipe" / f"validation-{sha[:12]}-{key[:12]}.h5", key)


def _read_cached_validation(cache: _ValidationCache):
    """The cached validation, or None (absent, unreadable, or made for another key)."""
    if not cache.path.is_file():
        return None
    try:
        with h5py.File(cache.path, "r") as f:
            if f.attrs.get("cache_key") != cache.key:
                return None
        return read_validation(cache.path)
    except (OSError, ValueError, KeyError, AntraxFormatError) as exc:  # damaged: recomputed, never trusted
        log.info("ignoring the cached validation %s (%s)", cache.path, exc)
        return None


def _write_cached_validation(cache: _ValidationCache, v) -> None:
    """Keep a copy of the result for the next run (atomically; best effort: a read-only classdir is fine)."""
    try:
        cache.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache.path) as tmp:
            write_validation(tmp, v)
            with h5py.File(tmp, "r+") as f:
                f.attrs["cache_key"] = cache.key
    except OSError as exc:
        log.info("could not keep the validation for later runs in %s (%s)", cache.path, exc)


def validate_stage(classifier: str | Path, labels_file: str | Path, out: str | Path,
                   params: Mapping[str, Any], threads: int | None = None) -> Path:
    """Workflow entry point: validate one classifier (labels.csv of an experiment it classifies) → ``out``."""
    p = aggregation_params(params)
    labels = read_labels(labels_file)
    cache = _validation_cache(classifier, labels, p)
    if cache is not None and (v := _read_cached_validation(cache)) is not None:
        v.meta["classifier"] = str(Path(classifier))  # the cached copy may name another path of the same file
        log.info("%s: held-out validation of this classifier (sha256 %s) reused from %s", classifier,
                 cache.key[:12], cache.path)
        for w in v.meta.get("warnings", []):
            log.warning("%s: %s", classifier, w)
        return write_validation(out, v)
    v = validate_classifier(classifier, labels, p, threads=threads)
    if cache is not None:
        _write_cached_validation(cache, v)
    if v.status == STATUS_OK:
        op = validation_operating_point(v)
        log.info("%s: %d held-out tracklets; at min_conf %.3g (min_conf_short %.3g): coverage %s, error %s "
                 "(the report and the coverage_error rule use the configured thresholds)", classifier, len(v.table),
                 p.min_conf, p.min_conf_short, op.coverage.format(), op.error.format())
    for w in v.meta.get("warnings", []):
        log.warning("%s: %s", classifier, w)
    return write_validation(out, v)


def coverage_plot_stage(validation_file: str | Path, out_png: str | Path, params: Mapping[str, Any]) -> Path:
    """Workflow entry point: the coverage–error figure of a ``validation.h5`` as a PNG (for ``snakemake --report``),
    marking the configured ``min_conf``. A classifier without a split gets a figure that says why."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .report import coverage_error_figure

    v = read_validation(validation_file)
    keys = ("use_min_conf", "min_conf", "min_conf_short", "short_length")
    p = validation_params(v).with_(**{k: params[k] for k in keys if k in params})
    fig = None
    if v.status == STATUS_OK:
        curve = coverage_error_curve(v.table, v.ids, p.min_conf_short, p.short_length)
        fig = coverage_error_figure(curve, p.min_conf if p.use_min_conf else None, marks=(0.5, 0.8, 0.9, 0.99))
    if fig is None:
        fig = Figure(figsize=(8, 2), dpi=80)
        FigureCanvasAgg(fig)
        why = v.reason if v.status != STATUS_OK else "no held-out tracklet has an ID as its true label"
        fig.text(0.5, 0.5, "No coverage–error curve:\n" + why, ha="center", va="center", wrap=True, fontsize=10)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return Path(out_png)


def review_stage(session_dir: str | Path, session: str, movies: Sequence[int], probs: Mapping[int, str | Path],
                 plan_out: str | Path, next_out: str | Path, params: Mapping[str, Any], n: int = 200,
                 seed: int = 0, classifier: str | Path | None = None, top: int = 50,
                 experiment_name: str | None = None) -> tuple[Path, Path]:
    """Workflow entry point for one experiment session: the review plan and the label-next list.

    ``session_dir`` = ``<expdir>/<session>`` (a link to it is fine); ``probs`` = movie → probabilities file (for the
    gate values); ``classifier`` = its file (for the confused pairs; optional).
    """
    session_dir = Path(session_dir).resolve()
    exp = load_experiment(session_dir.parent, session)
    p = aggregation_params(params)
    res = load_session_result(exp, movies=movies)
    tt = tracklet_table(res)
    plan = sampling_plan(tt, n, seed, experiment=exp.name)
    write_review_plan(plan_out, plan)
    log.info("%s: review plan of %d tracklets (of %d judgeable), %d strata → %s", exp.name, len(plan),
             int(tt["kind"].isin(REVIEW_KINDS).sum()), plan["stratum"].nunique(), plan_out)
    labels = read_labels(exp.labels_file)
    gates = [tracklet_gates(probs[m], labels, p, int(m)) for m in sorted(probs)]
    gate_df = pd.concat(gates, ignore_index=True) if gates else None
    pairs: list[tuple[str, str]] = []
    if classifier is not None and Path(classifier).is_file():
        pairs = confused_pairs_of(read_card(classifier), labels)
    done = trainset_tracklets(exp.classdir / "examples", experiment_name or exp.name)
    nxt = label_next(tt, gate_df, p, pairs, top=top, exclude=done)
    write_label_next(next_out, nxt)
    log.info("%s: %d tracklets to label next (%s) → %s", exp.name, len(nxt),
             ", ".join(f"{k}: {v}" for k, v in nxt["reason"].str.split("; ").str[0].value_counts().items()),
             next_out)
    return Path(plan_out), Path(next_out)


def report_stage(
    experiments: dict[str, dict], out_html: Path, params: dict | None = None,
    failed: Mapping[str, Mapping[int, str]] | None = None, validation: Mapping[str, str] | None = None,
) -> Path:
    """The validation report of every session of the run (one classifier card: that of the first experiment).

    ``validation``: classifier file → its ``validation.h5`` (the coverage–error curve of that card's classifier).

    ``failed``: experiment → movie → reason; those movies are listed as failed (their images are not read: a
    corrupt file must not stop the report that is meant to show it).
    """
    from .report import build_report

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
