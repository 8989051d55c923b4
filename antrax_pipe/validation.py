"""Per-classifier validation stage: how the *tracklet rule* behaves on held-out tracklets, over its thresholds.

Training (``antrax_pipe.training``) holds out whole tracklets (grouped split) and records image- and mean-probability
tracklet accuracy. What a user tunes, though, is the aggregation rule's confidence gate (``min_conf``,
``min_conf_short``): it trades *coverage* (ID tracklets that get an ID) against *error* (IDs that are wrong). This
module reconstructs the held-out split, predicts its images with the shared preprocessing, aggregates each held-out
tracklet with the configured rule **without** the gate, and keeps, per tracklet, the value the gate tests — so the
whole coverage–error curve over ``min_conf`` follows from a small table, without predicting again.

Definitions (over held-out tracklets; a tracklet = the example images of one ``<exp>.<tracklet>`` key and label):

* **given an ID** at thresholds (c, c_short): the ungated label is an ID, ``gate ≥ c``, and (``n_gate ≥
  short_length`` or ``gate ≥ c_short``) — exactly :mod:`antrax_pipe.aggregation`'s gate (tested against it).
* **coverage** = tracklets whose true label is an ID and that are given an ID ÷ tracklets whose true label is an ID.
* **error** = tracklets given an ID that differs from their true label (true label another ID, or not an ID at all)
  ÷ tracklets given an ID.

Caveat printed with the numbers: a tracklet's examples are the frames someone exported, often a subset of the
tracklet, so ``n_frames`` here is the number of examples, not the tracklet's length in a movie.

File (HDF5, ``validation.h5``): datasets ``key``, ``true_label``, ``pred_label`` (ungated), ``gate`` (NaN when the
ungated label is not an ID), ``n_gate``, ``n_frames`` (one row per held-out tracklet), ``probs`` (held-out images ×
classes) with ``offsets``; attributes ``status`` (``ok`` / ``no_split``), ``reason``, ``classes``, ``ids`` and the
split and rule settings as JSON (``meta``). TensorFlow is imported only inside :func:`validate_classifier`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from .aggregation import AggregationParams, ClassRoles, aggregate_tracklet
from .io.atomic import atomic_path
from .model import AntraxFormatError, LabelSet
from .stats import Rate, tracklet_rate

log = logging.getLogger(__name__)

VALIDATION_FORMAT = "antrax-pipe-classifier-validation"
VALIDATION_FORMAT_VERSION = 1
TABLE_COLUMNS: tuple[str, ...] = ("key", "true_label", "pred_label", "gate", "n_gate", "n_frames")
_STR = h5py.string_dtype("utf-8")

STATUS_OK = "ok"
STATUS_NO_SPLIT = "no_split"


# --------------------------------------------------------------------------------------------------------------------
# The rule without its gate, and the gate on its own
# --------------------------------------------------------------------------------------------------------------------


def tracklet_decision(y: np.ndarray, classes: Sequence[str], labels: LabelSet,
                      params: AggregationParams = AggregationParams()) -> tuple[str, float, int]:
    """(ungated label, gate value, n_gate) of one tracklet's (N, C) probabilities under ``params.method``.

    The gate value is what :mod:`antrax_pipe.aggregation` compares with ``min_conf``: for ``antrax`` the largest
    probability of any ID over the ant frames (spec §10 step 5), for ``mean`` the chosen ID's mean probability, for
    ``vote`` the chosen ID's largest probability over its voters; ``n_gate`` is the frame count compared with
    ``short_length``. Both are NaN / 0 when the ungated label is not an ID (the gate does not apply).
    """
    y = np.asarray(y, dtype=np.float32)
    ungated = params.with_(use_min_conf=False, usepassed=False)
    label = aggregate_tracklet(y, classes, labels, ungated).label
    roles = ClassRoles.build(classes, labels)
    if label not in labels.ant_labels or y.shape[0] == 0:
        return label, math.nan, 0
    k = list(roles.classes).index(label)
    idx = y.argmax(axis=1)
    if params.method == "antrax":
        ant = roles.ant[idx]
        return label, float(y[ant][:, roles.ant_cols].max()), int(ant.sum())
    if params.method == "mean":
        return label, float(y.astype(np.float64).mean(axis=0)[k]), int(y.shape[0])
    voters = idx == k
    return label, float(y[voters, k].max()), int(voters.sum())


def given_id(pred_label: Sequence[str], gate: Sequence[float], n_gate: Sequence[int], ids: Iterable[str],
             min_conf: float, min_conf_short: float, short_length: int, use_min_conf: bool = True) -> np.ndarray:
    """Which tracklets keep their (ungated) ID at these thresholds — the aggregation's gate, vectorised."""
    pred = np.asarray(pred_label, dtype=object)
    g = np.asarray(gate, dtype=float)
    n = np.asarray(n_gate, dtype=int)
    is_id = np.isin(pred, list(ids))
    if not use_min_conf:
        return is_id
    with np.errstate(invalid="ignore"):
        passes = (g >= min_conf) & ((n >= short_length) | (g >= min_conf_short))
    return is_id & passes


# --------------------------------------------------------------------------------------------------------------------
# Coverage–error curve
# --------------------------------------------------------------------------------------------------------------------

CURVE_COLUMNS: tuple[str, ...] = ("min_conf", "n_id", "covered", "given", "wrong", "coverage", "error")


def coverage_error_curve(table: pd.DataFrame, ids: Iterable[str], min_conf_short: float, short_length: int,
                         thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Coverage and error of the tracklet rule for each ``min_conf`` in ``thresholds`` (``min_conf_short`` and
    ``short_length`` fixed), from a per-tracklet table (columns ``true_label``, ``pred_label``, ``gate``,
    ``n_gate``). Default thresholds: 0, 0.01, …, 1 plus every distinct gate value (where the curve steps).

    Columns: ``n_id`` (true-ID tracklets), ``covered`` (of those, given an ID), ``given`` (all tracklets given an
    ID), ``wrong`` (given an ID ≠ true label), ``coverage`` = covered/n_id, ``error`` = wrong/given (NaN for 0/0).
    """
    ids = list(ids)
    if thresholds is None:
        gates = table["gate"].to_numpy(dtype=float)
        thresholds = np.unique(np.concatenate([np.round(np.linspace(0, 1, 101), 10), gates[np.isfinite(gates)]]))
    true = table["true_label"].to_numpy(dtype=object)
    pred = table["pred_label"].to_numpy(dtype=object)
    t_id = np.isin(true, ids)
    rows = []
    for c in thresholds:
        g = given_id(pred, table["gate"], table["n_gate"], ids, float(c), min_conf_short, short_length)
        covered = int(np.sum(g & t_id))
        given = int(g.sum())
        wrong = int(np.sum(g & (pred != true)))
        n_id = int(t_id.sum())
        rows.append((float(c), n_id, covered, given, wrong, covered / n_id if n_id else math.nan,
                     wrong / given if given else math.nan))
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


@dataclass(frozen=True)
class OperatingPoint:
    """Coverage and error (tracklets, exact 95 % intervals) at one pair of thresholds."""

    min_conf: float
    min_conf_short: float
    short_length: int
    use_min_conf: bool
    coverage: Rate
    error: Rate


def operating_point(table: pd.DataFrame, ids: Iterable[str], params: AggregationParams) -> OperatingPoint:
    """Coverage and error at the configured thresholds, with Clopper–Pearson intervals and their n."""
    ids = list(ids)
    true = table["true_label"].to_numpy(dtype=object)
    pred = table["pred_label"].to_numpy(dtype=object)
    g = given_id(pred, table["gate"], table["n_gate"], ids, params.min_conf, params.min_conf_short,
                 params.short_length, params.use_min_conf)
    t_id = np.isin(true, ids)
    return OperatingPoint(params.min_conf, params.min_conf_short, params.short_length, params.use_min_conf,
                          coverage=tracklet_rate(int(np.sum(g & t_id)), int(t_id.sum())),
                          error=tracklet_rate(int(np.sum(g & (pred != true))), int(g.sum())))


# --------------------------------------------------------------------------------------------------------------------
# Data and file
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ClassifierValidation:
    """Held-out tracklets of one classifier, aggregated with the rule but not gated (see the module docstring).

    ``status`` is ``no_split`` (with ``reason``) when the classifier has no held-out data to evaluate; ``table``
    is then empty. ``meta`` holds the split and rule settings and any warnings (``meta['warnings']``).
    """

    status: str
    classes: list[str]
    ids: list[str]
    table: pd.DataFrame
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    probs: np.ndarray | None = None
    offsets: np.ndarray | None = None

    @property
    def params(self) -> AggregationParams:
        """The aggregation settings the table was computed with (method, multi_fraction) and the configured gate."""
        p = self.meta.get("aggregate") or {}
        keys = ("use_min_conf", "min_conf", "min_conf_short", "short_length", "multi_fraction", "method")
        return AggregationParams(**{k: p[k] for k in keys if k in p})

    def curve(self, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
        p = self.params
        return coverage_error_curve(self.table, self.ids, p.min_conf_short, p.short_length, thresholds)

    def operating_point(self) -> OperatingPoint:
        return operating_point(self.table, self.ids, self.params)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({"key": pd.Series(dtype=object), "true_label": pd.Series(dtype=object),
                         "pred_label": pd.Series(dtype=object), "gate": pd.Series(dtype="float64"),
                         "n_gate": pd.Series(dtype="int64"), "n_frames": pd.Series(dtype="int64")})


def write_validation(path: str | Path, v: ClassifierValidation) -> Path:
    """Write ``validation.h5`` atomically (small: one row per held-out tracklet plus its image probabilities)."""
    path = Path(path)
    t = v.table
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = VALIDATION_FORMAT
            f.attrs["format_version"] = VALIDATION_FORMAT_VERSION
            f.attrs["status"] = v.status
            f.attrs["reason"] = v.reason
            f.attrs["meta"] = json.dumps(v.meta, default=str, sort_keys=True)
            f.create_dataset("classes", data=np.array(v.classes, dtype=object), dtype=_STR)
            f.create_dataset("ids", data=np.array(v.ids, dtype=object), dtype=_STR)
            for col in ("key", "true_label", "pred_label"):
                f.create_dataset(col, data=np.array(t[col].astype(str).tolist(), dtype=object), dtype=_STR)
            f.create_dataset("gate", data=t["gate"].to_numpy(dtype=np.float64))
            f.create_dataset("n_gate", data=t["n_gate"].to_numpy(dtype=np.int64))
            f.create_dataset("n_frames", data=t["n_frames"].to_numpy(dtype=np.int64))
            probs = v.probs if v.probs is not None else np.zeros((0, len(v.classes)), np.float32)
            offsets = v.offsets if v.offsets is not None else np.zeros(1, np.int64)
            f.create_dataset("probs", data=np.asarray(probs, dtype=np.float32))
            f.create_dataset("offsets", data=np.asarray(offsets, dtype=np.int64))
    return path


def read_validation(path: str | Path) -> ClassifierValidation:
    """Read a ``validation.h5``; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise AntraxFormatError(f"{path}: classifier validation file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise AntraxFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        if f.attrs.get("format") != VALIDATION_FORMAT:
            raise AntraxFormatError(f"{path}: not an antrax-pipe classifier validation file (format attribute)")
        if int(f.attrs.get("format_version", -1)) > VALIDATION_FORMAT_VERSION:
            raise AntraxFormatError(f"{path}: format version {f.attrs['format_version']} is newer than this reader")
        missing = [k for k in (*TABLE_COLUMNS, "classes", "ids", "probs", "offsets") if k not in f]
        if missing:
            raise AntraxFormatError(f"{path}: dataset(s) {', '.join(missing)} missing")
        cols = {c: f[c].asstr()[()].tolist() if c in ("key", "true_label", "pred_label") else f[c][()]
                for c in TABLE_COLUMNS}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise AntraxFormatError(f"{path}: per-tracklet columns have different lengths {sorted(lengths)}")
        table = pd.DataFrame(cols).astype({"gate": "float64", "n_gate": "int64", "n_frames": "int64"})
        if table.empty:
            table = empty_table()
        return ClassifierValidation(
            status=str(f.attrs.get("status", "")), reason=str(f.attrs.get("reason", "")),
            classes=f["classes"].asstr()[()].tolist(), ids=f["ids"].asstr()[()].tolist(), table=table,
            meta=json.loads(f.attrs.get("meta", "{}")), probs=f["probs"][()], offsets=f["offsets"][()],
        )


# --------------------------------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------------------------------


def aggregate_held_out(probs: np.ndarray, keys: Sequence[str], true_labels: Sequence[str], classes: Sequence[str],
                       labels: LabelSet, params: AggregationParams) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Group image probabilities by (tracklet key, true label), in first-seen order → (table, probs, offsets)
    with the images reordered so that each tracklet's rows are contiguous."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (k, lab) in enumerate(zip(keys, true_labels)):
        groups.setdefault((str(k), str(lab)), []).append(i)
    rows, order, offsets = [], [], [0]
    for (k, lab), idx in groups.items():
        y = probs[idx]
        pred, gate, n_gate = tracklet_decision(y, classes, labels, params)
        rows.append((k, lab, pred, gate, n_gate, len(idx)))
        order += idx
        offsets.append(len(order))
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)) if rows else empty_table()
    table = table.astype({"gate": "float64", "n_gate": "int64", "n_frames": "int64"})
    return table, np.asarray(probs)[order].astype(np.float32), np.asarray(offsets, dtype=np.int64)


def _no_split(reason: str, classes: list[str], ids: list[str], meta: dict) -> ClassifierValidation:
    log.warning("no validation split: %s", reason)
    return ClassifierValidation(STATUS_NO_SPLIT, classes, ids, empty_table(), reason=reason, meta=meta)


def validate_classifier(classifier: str | Path, labels: LabelSet, params: AggregationParams | Mapping[str, Any],
                        classdir: str | Path | None = None, threads: int | None = None,
                        batch_size: int = 256) -> ClassifierValidation:
    """Reconstruct the classifier's grouped validation split, predict it and aggregate per tracklet.

    ``classdir`` (default: the classifier file's folder) holds the ``examples/`` the model was trained on. The split
    is :func:`antrax_pipe.training.grouped_split` with the card's ``training.seed`` and ``training.val_fraction``;
    when the card also lists the held-out tracklets (``metrics.validation.val_tracklets``), only those are used (a
    trainset changed since training could otherwise move a trained-on tracklet into the reconstructed split).
    Without a split (anTraX recipe without ``val_fraction``, an anTraX-made classifier, no examples) the result has
    ``status='no_split'`` and says why.
    """
    from .classifier import preprocess_spec, read_card
    from .trainset import TrainsetError, list_examples, load_example_images, manifest_hash, manifest_of
    from .training import grouped_split

    classifier = Path(classifier)
    params = params if isinstance(params, AggregationParams) else AggregationParams(**dict(params))
    card = read_card(classifier)
    classes = list(card.classes)
    ids = [c for c in classes if c in labels.ant_labels]
    training = card.training if isinstance(card.training, Mapping) else {}
    vf = training.get("val_fraction")
    seed = training.get("seed")
    meta: dict[str, Any] = {
        "classifier": str(classifier), "recipe": training.get("recipe"), "seed": seed, "val_fraction": vf,
        "card_trainset_hash": card.trainset_hash,
        "incremental_runs": len(training.get("previous_runs") or []),
        "aggregate": {k: getattr(params, k) for k in ("method", "use_min_conf", "min_conf", "min_conf_short",
                                                     "short_length", "multi_fraction")},
        "warnings": [],
    }
    if card.source == "antrax":
        return _no_split("the classifier was trained by anTraX, which keeps no validation split", classes, ids, meta)
    if not vf or seed is None:
        recipe = training.get("recipe") or "unknown"
        return _no_split(f"the classifier was trained without a validation split (recipe {recipe}, val_fraction "
                         f"{vf!r}): every example was used for training", classes, ids, meta)
    classdir = Path(classdir) if classdir is not None else classifier.parent
    try:
        examples = list_examples(classdir)
    except TrainsetError as exc:
        return _no_split(f"the trainset is not available ({exc})", classes, ids, meta)
    now_hash = manifest_hash(manifest_of(examples, classdir))
    examples = [ex for ex in examples if ex.label in classes]
    _, va_idx, _ = grouped_split(examples, float(vf), int(seed))
    stored = ((card.metrics or {}).get("validation") or {}).get("val_tracklets")
    if stored is not None:
        stored_set = set(stored)
        kept = [i for i in va_idx if examples[i].tracklet_key in stored_set]
        lost = len({examples[i].tracklet_key for i in va_idx} - stored_set)
        if lost:
            meta["warnings"].append(f"{lost} tracklet(s) of the reconstructed split were not held out when the "
                                    f"model was trained (trainset changed since?): left out")
        va_idx = np.asarray(kept, dtype=np.int64)
    meta["trainset_hash"] = now_hash
    if card.trainset_hash and now_hash != card.trainset_hash:
        meta["warnings"].append("the trainset changed since the classifier was trained (hash differs from the card)")
    if meta["incremental_runs"]:
        meta["warnings"].append(f"the classifier continued {meta['incremental_runs']} earlier training run(s); "
                                f"tracklets held out now may have been trained on before if the trainset changed")
    if len(va_idx) == 0:
        return _no_split("the split holds no tracklet (every label has fewer than 2 tracklets?)", classes, ids, meta)
    held = [examples[i] for i in va_idx]
    log.info("%s: %d held-out images in %d tracklets", classifier, len(held), len({e.tracklet_key for e in held}))

    from .inference import configure_tf

    configure_tf(threads)
    from .classifier import load_classifier

    model, card = load_classifier(classifier, compile=False)
    x = load_example_images(held, preprocess_spec(card))
    out = []
    for i in range(0, len(x), batch_size):
        out.append(np.asarray(model.predict_on_batch(x[i : i + batch_size].astype(np.float32))))
    probs = np.concatenate(out).astype(np.float32)
    table, probs, offsets = aggregate_held_out(probs, [e.tracklet_key for e in held], [e.label for e in held],
                                               classes, labels, params)
    meta["n_images"] = int(len(held))
    return ClassifierValidation(STATUS_OK, classes, ids, table, meta=meta, probs=probs, offsets=offsets)


def validate_stage(classifier: str | Path, labels_file: str | Path, out: str | Path,
                   params: Mapping[str, Any], threads: int | None = None) -> Path:
    """Workflow entry point: validate one classifier (labels.csv of an experiment it classifies) → ``out``."""
    from .io.labels import read_labels

    keys = ("method", "use_min_conf", "min_conf", "min_conf_short", "short_length", "multi_fraction")
    p = AggregationParams(**{k: params[k] for k in keys if k in params})
    v = validate_classifier(classifier, read_labels(labels_file), p, threads=threads)
    if v.status == STATUS_OK:
        op = v.operating_point()
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
    p = v.params.with_(**{k: params[k] for k in keys if k in params})
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
