"""Stage entry points: what each Snakemake rule does, as plain functions of paths and options.

The workflow scripts (``workflow/scripts/*.py``) only unpack the ``snakemake`` object and call these; the same
functions are what tests call. Heavy imports (TensorFlow) happen inside the stages that need them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from .io.atomic import atomic_path
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
    """Per-frame probabilities of one movie; stops before any work if the classifier and labels.csv disagree."""
    from .aggregation import check_classes
    from .classifier import read_card
    from .io.labels import read_labels

    card = read_card(classifier)
    labels = read_labels(labels_file)
    check_classes(card.classes, labels, where=f"{classifier} vs {labels_file}")
    from .inference import classify_movie, configure_tf

    configure_tf(threads)
    from .classifier import load_classifier

    model, card = load_classifier(classifier)
    return classify_movie([Path(p) for p in images], model, card, Path(probs_out), batch_size=batch_size)


def aggregate_stage(
    probs: Path, labels_file: Path, autoids_out: Path, params: dict, passed_files: list[Path] | None = None
) -> Path:
    """anTraX's tracklet rule (or another configured aggregator) → ``autoids_<m>.csv``, written atomically."""
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
    return Path(autoids_out)


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


def report_stage(experiments: dict[str, dict], out_html: Path, params: dict | None = None) -> Path:
    """The validation report of every session of the run (one classifier card: that of the first experiment)."""
    from .classifier import read_card
    from .io.experiment import load_experiment
    from .report import build_report, load_session_result

    sessions, card = [], None
    for name, e in experiments.items():
        exp = load_experiment(Path(e["session_link"]).resolve().parent, e["session"])
        truth = read_truth(Path(e["truth"])) if e.get("truth") else None
        sessions.append(load_session_result(exp, movies=e["movies"], truth=truth))
        if card is None and e.get("classifier") and Path(e["classifier"]).is_file():
            card = read_card(Path(e["classifier"]))
    return build_report(sessions, card, Path(out_html), params=params)
