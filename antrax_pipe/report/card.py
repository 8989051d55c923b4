"""The report's model-card section (the classifier: details, trainset, training curves, validation confusion matrix)
and its coverage section (coverage–error curve of the tracklet rule on held-out tracklets).

The card is read in either layout: the one :mod:`antrax_pipe.training` writes (``training.counts``, a ``history``
list, ``metrics.validation``) and the flat one (``trainset_counts``, ``training.history``, ``metrics.confusion``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..coverage import operating_point, validation_curve, validation_params
from ..io.heldout import STATUS_OK
from ..model import ClassifierCard, LabelSet
from ..stats import KIND_ID, KINDS, fmt_pct, label_kind, most_confused
from .html import fmt_param, is_missing, kv_table, note, table
from .plots import plot_confusion, plot_coverage_error, plot_history, plot_trainset_counts

NA = "not available"
#: min_conf values listed in the coverage–error table (besides the configured one).
CURVE_TABLE_THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


# --------------------------------------------------------------------------------------------------------------------
# Reading the card (either layout)
# --------------------------------------------------------------------------------------------------------------------


def _trainset_counts(card: ClassifierCard) -> Mapping[str, int] | None:
    """Images per label: ``training.counts`` ({label: {images, tracklets}}, what training writes) or a flat
    {label: n} under ``trainset_counts``."""
    for src in (getattr(card, "trainset_counts", None), card.training.get("trainset_counts"),
                card.metrics.get("trainset_counts"), card.training.get("counts")):
        if isinstance(src, Mapping) and src:
            out = {}
            for k, v in src.items():
                if isinstance(v, Mapping):
                    v = v.get("images", 0)
                out[str(k)] = int(v)
            return out
    return None


def _trainset_tracklets(card: ClassifierCard) -> dict[str, int]:
    src = card.training.get("counts") if isinstance(card.training, Mapping) else None
    if not isinstance(src, Mapping):
        return {}
    return {str(k): int(v["tracklets"]) for k, v in src.items() if isinstance(v, Mapping) and "tracklets" in v}


def _history(card: ClassifierCard) -> dict[str, list[float]]:
    """Training curves: ``training.history`` ({metric: [per epoch]}) or the card's ``history`` list of per-epoch
    dicts (what training writes)."""
    h = card.training.get("history") if isinstance(card.training, Mapping) else None
    if isinstance(h, Mapping) and h:
        return {str(k): list(v) for k, v in h.items()}
    rows = card.history if isinstance(card.history, list) else []
    keys = [k for r in rows if isinstance(r, Mapping) for k in r if k not in ("epoch", "seconds")]
    keys = list(dict.fromkeys(keys))
    return {k: [r.get(k) for r in rows if isinstance(r, Mapping)] for k in keys} if rows else {}


def _card_validation(card: ClassifierCard) -> tuple[Any, str, Mapping[str, Any]]:
    """(confusion matrix, what it counts, the validation metrics) in either card layout: ``metrics.confusion`` or
    ``metrics.validation.confusion_images`` / ``confusion_tracklets`` (what training writes)."""
    metrics = card.metrics if isinstance(card.metrics, Mapping) else {}
    val = metrics.get("validation") if isinstance(metrics.get("validation"), Mapping) else {}
    if val.get("confusion_images") is not None:
        return val["confusion_images"], "images", val
    if val.get("confusion_tracklets") is not None:
        return val["confusion_tracklets"], "tracklets", val
    return metrics.get("confusion"), "images", val


def _per_class_columns(metrics: Mapping[str, Any], classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-class numbers in the card's metrics, in either shape: {metric: {class: x}} or {key: {class: {metric: x}}}."""
    cols: dict[str, dict[str, Any]] = {}
    cs = set(classes)
    for key, v in metrics.items():
        if key in ("confusion", "trainset_counts") or not isinstance(v, Mapping) or not v or not set(v) <= cs:
            continue
        for cls_name, x in v.items():
            if isinstance(x, Mapping):
                for m, y in x.items():
                    if isinstance(y, (int, float)) and not isinstance(y, bool):
                        cols.setdefault(str(m), {})[cls_name] = y
            elif isinstance(x, (int, float)) and not isinstance(x, bool):
                cols.setdefault(str(key), {})[cls_name] = x
    return cols


def _metrics(card: ClassifierCard) -> Mapping[str, Any]:
    return card.metrics if isinstance(card.metrics, Mapping) else {}


# --------------------------------------------------------------------------------------------------------------------
# Model-card section
# --------------------------------------------------------------------------------------------------------------------


def card_section(card: ClassifierCard | None, labels: LabelSet | None, validation: Any = None,
                 params: Mapping[str, Any] | None = None) -> str:
    """The model card: details, trainset, training curves, validation confusion matrix, then
    :func:`coverage_section`."""
    if card is None:
        return note("No classifier card was given: model details, trainset counts, training curves and the "
                    "validation confusion matrix are not available.")
    classes = list(card.classes)
    details = _details_part(card, classes)
    n_items = details.count("<tr>") - 1
    folded = (f'<details class="params"><summary>All parameters of the classifier ({n_items})</summary>{details}'
              f"</details>")
    parts = [_short_card(card, classes, labels), folded, _trainset_part(card, classes, labels)]
    parts.append("<h3>Training curves</h3>")
    history = _history(card)
    plot = plot_history(history) if history else None
    parts.append(plot or f"<p>Training history: {NA}.</p>")
    parts.append(_confusion_part(card, classes, labels))
    parts.append(coverage_section(validation, params))
    return "".join(parts)


def _accuracy(card: ClassifierCard) -> tuple[float | None, str]:
    """The card's validation accuracy (images, else tracklets, else the old flat metric, else from the matrix)."""
    metrics = _metrics(card)
    conf, unit, val = _card_validation(card)
    for key, what in (("image_accuracy", "images"), ("tracklet_accuracy", "tracklets"), ("val_accuracy", "images")):
        v = val.get(key) if key in val else metrics.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not is_missing(v):
            return float(v), what
    try:
        cm = np.asarray(conf, dtype=float)
        if cm.ndim == 2 and cm.shape[0] == cm.shape[1] and cm.sum() > 0:
            return float(np.trace(cm) / cm.sum()), unit
    except (TypeError, ValueError):
        pass
    return None, ""


def _short_card(card: ClassifierCard, classes: list[str], labels: LabelSet | None) -> str:
    """The few facts a biologist asks of a classifier, as a short table (the rest is folded away)."""
    ids = [c for c in classes if labels is not None and label_kind(c, labels) == KIND_ID]
    counts = _trainset_counts(card)
    acc, unit = _accuracy(card)
    epochs: Any = len(_history(card).get("loss", []))
    if not epochs and isinstance(card.training, Mapping):
        epochs = card.training.get("epochs")
    items: list[tuple[str, Any]] = [
        ("classes", f"{len(classes)}" + (f" ({len(ids)} individual IDs)" if labels is not None else "")),
        ("network", f"{card.arch}, {card.target_size} × {card.target_size} px input"),
        ("trainset", f"{sum(counts.values())} images of {len(counts)} labels" if counts else NA),
        ("validation accuracy", f"{fmt_pct(acc)} of held-out {unit}" if acc is not None else NA),
        ("epochs trained", epochs if epochs else NA),
        ("trainset hash", (card.trainset_hash or "")[:12] or NA),
    ]
    return kv_table(items)


def _details_part(card: ClassifierCard, classes: list[str]) -> str:
    """Key–value table: architecture, input, preprocessing, training settings, scalar metrics."""
    training = card.training if isinstance(card.training, Mapping) else {}
    metrics = _metrics(card)
    items: list[tuple[str, Any]] = [
        ("classes", f"{len(classes)}: " + ", ".join(classes) if classes else NA),
        ("architecture", card.arch), ("input size", f"{card.target_size} px"), ("background", card.background),
        ("horizontal symmetry", card.hsymmetry),
        ("trainset hash", card.trainset_hash or NA),
        ("preprocessing", json.dumps(card.preprocessing, sort_keys=True, default=str) if card.preprocessing else NA),
    ]
    items += [(f"training: {k}", fmt_param(v)) for k, v in training.items()
              if k not in ("history", "trainset_counts", "previous_runs") and not isinstance(v, Mapping)]
    if training.get("previous_runs"):
        items.append(("training: earlier runs continued", len(training["previous_runs"])))
    items += [(f"metric: {k}", fmt_param(v)) for k, v in metrics.items()
              if k not in ("confusion", "trainset_counts") and not isinstance(v, (Mapping, list, tuple))]
    _, _, val = _card_validation(card)
    items += [(f"validation: {k}", fmt_pct(v) if "accuracy" in k and isinstance(v, (int, float)) else fmt_param(v))
              for k, v in val.items()
              if not k.startswith("confusion") and not isinstance(v, (Mapping, list, tuple))]
    return kv_table(items)


def _trainset_part(card: ClassifierCard, classes: list[str], labels: LabelSet | None) -> str:
    """Images (and tracklets) per label, the imbalance, classes without images, the bar plot."""
    parts = ["<h3>Trainset</h3>"]
    counts = _trainset_counts(card)
    if not counts:
        parts.append(f"<p>Trainset counts per label: {NA}.</p>")
        return "".join(parts)
    vals = np.array(list(counts.values()))
    pos = vals[vals > 0]
    lo_lab = min(counts, key=counts.get)
    hi_lab = max(counts, key=counts.get)
    ratio = f"{vals.max() / pos.min():.1f}" if len(pos) else NA
    parts.append(f"<p>{int(vals.sum())} images in {len(counts)} labels; largest/smallest = {ratio} "
                 f"({html.escape(hi_lab)}: {counts[hi_lab]}, {html.escape(lo_lab)}: {counts[lo_lab]}).</p>")
    trk = _trainset_tracklets(card)
    if trk:
        parts.append(table(["label", "images", "tracklets"], [[k, counts.get(k, 0), trk.get(k)] for k in counts],
                           cls="num"))
    missing = [c for c in classes if c not in counts or counts[c] == 0]
    if missing:
        parts.append(note("classes without training images: " + html.escape(", ".join(missing)), "warn"))
    parts.append(plot_trainset_counts(counts, labels))
    return "".join(parts)


def _confusion_part(card: ClassifierCard, classes: list[str], labels: LabelSet | None) -> str:
    """The validation split, then the confusion matrix (heatmap, by kind, per class, most-confused pairs) when the
    card has one of the right shape, else the per-class numbers it has."""
    conf, conf_unit, val = _card_validation(card)
    metrics = _metrics(card)
    parts = ["<h3>Validation confusion matrix</h3>"]
    if val.get("split") == "tracklet" or val.get("val_tracklets") is not None:
        parts.append(f"<p>Held-out split grouped by tracklet (seed {html.escape(str(val.get('seed', NA)))}, "
                     f"val_fraction {html.escape(str(val.get('val_fraction', NA)))}): frames of one tracklet never "
                     f"appear in both training and validation.</p>")
    cm = None
    if conf is not None:
        try:
            cm = np.asarray(conf, dtype=float)
        except (TypeError, ValueError):
            cm = None
        if cm is None or cm.ndim != 2 or cm.shape != (len(classes), len(classes)):
            shape = "x".join(map(str, cm.shape)) if cm is not None else "unreadable"
            parts.append(note(f"confusion matrix is {shape} but the card has {len(classes)} classes: not shown.",
                              "warn"))
            cm = None
    if cm is None:
        if conf is None:
            parts.append(f"<p>Confusion matrix: {NA}.</p>")
        if extra := {**_per_class_columns(metrics, classes), **_per_class_columns(val, classes)}:
            parts.append(table(["class", *extra], [[c, *(extra[m].get(c) for m in extra)] for c in classes],
                               cls="num"))
    else:
        parts.append(_confusion_tables(cm, classes, labels, conf_unit, metrics, val))
    return "".join(parts)


def _confusion_tables(cm: np.ndarray, classes: list[str], labels: LabelSet | None, conf_unit: str,
                      metrics: Mapping[str, Any], val: Mapping[str, Any]) -> str:
    """Heatmap, counts grouped by label kind, per-class recall/precision (+ the card's per-class numbers), and the
    most-confused ID pairs."""
    kinds = [label_kind(c, labels) for c in classes]
    order = sorted(range(len(classes)), key=lambda i: (KINDS.index(kinds[i]), i))
    total = cm.sum()
    acc = float(np.trace(cm) / total) if total else None
    parts = [f"<p>{int(total)} validation {conf_unit}; accuracy from the matrix: {fmt_pct(acc)}.</p>",
             plot_confusion(cm[np.ix_(order, order)], [classes[i] for i in order], [kinds[i] for i in order])]
    ks = [k for k in KINDS if k in kinds]
    g = {a: {b: 0.0 for b in ks} for a in ks}
    for i, a in enumerate(kinds):
        for j, b in enumerate(kinds):
            g[a][b] += cm[i, j]
    parts.append(f"<p>Grouped by label kind (rows = true, columns = predicted, {conf_unit}):</p>")
    parts.append(table(["true \\ predicted", *ks], [[a, *(int(g[a][b]) for b in ks)] for a in ks], cls="num"))
    rows_sum, cols_sum = cm.sum(axis=1), cm.sum(axis=0)
    extra = {**_per_class_columns(metrics, classes), **_per_class_columns(val, classes)}
    if conf_unit == "images":  # the matrix already gives these
        extra = {k: v for k, v in extra.items() if k not in ("images", "image_recall")}
    extra = {k: ({c: fmt_pct(x) for c, x in v.items()} if "recall" in k or "accuracy" in k else v)
             for k, v in extra.items()}
    prow = []
    for i, c in enumerate(classes):
        rec = cm[i, i] / rows_sum[i] if rows_sum[i] else None
        prec = cm[i, i] / cols_sum[i] if cols_sum[i] else None
        prow.append([c, kinds[i], int(rows_sum[i]), fmt_pct(rec), fmt_pct(prec), *(extra[m].get(c) for m in extra)])
    parts.append(table(["class", "kind", "support", "recall", "precision", *extra], prow, cls="num"))
    ids = [c for c, k in zip(classes, kinds) if k == KIND_ID] if labels else classes
    pairs = most_confused(cm, classes, among=ids)
    parts.append("<p>Most-confused ID pairs (true → predicted):</p>")
    if pairs:
        parts.append(table(["true", "predicted", conf_unit, "of the true class"],
                           [[a, b, n, fmt_pct(f)] for a, b, n, f in pairs], cls="num"))
    else:
        parts.append("<p>none — no ID was confused with another ID.</p>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------------------------
# Coverage section
# --------------------------------------------------------------------------------------------------------------------


def coverage_section(validation: Any, params: Mapping[str, Any] | None) -> str:
    """Coverage–error curve of the tracklet rule over min_conf on held-out tracklets (``validate`` rule output)."""

    parts = ['<h3 id="coverage">Coverage–error curve of the tracklet rule</h3>']
    if validation is None:
        parts.append("<p>Classifier validation (<code>validation.h5</code> of the <code>validate</code> rule): not "
                     "available.</p>")
        return "".join(parts)
    if validation.status != STATUS_OK:
        parts.append(note("No coverage–error curve: " + html.escape(validation.reason or validation.status)
                          + ". Judge a review plan instead (below each session) to measure the error.", "warn"))
        return "".join(parts)
    vp = validation_params(validation)
    cfg = dict(params or {})
    keys = ("use_min_conf", "min_conf", "min_conf_short", "short_length")
    conf_params = vp.with_(**{k: cfg[k] for k in keys if k in cfg and not is_missing(cfg[k])})
    tab = validation.table
    n_id = int(tab.true_label.isin(validation.ids).sum())
    parts.append(f"<p>{len(tab)} held-out tracklets ({n_id} with an ID as true label, "
                 f"{int(tab.n_frames.sum())} example images) of the classifier's grouped validation split, "
                 f"aggregated with the <code>{html.escape(vp.method)}</code> rule; the gate is varied over "
                 f"<code>min_conf</code> with <code>min_conf_short</code> = {conf_params.min_conf_short:g} for "
                 f"tracklets with fewer than {conf_params.short_length} gate frames. Coverage = true-ID tracklets "
                 f"given an ID; error = tracklets given an ID that is not their true label. A tracklet's examples are "
                 f"the frames someone exported, often fewer than the tracklet has.</p>")
    for w in validation.meta.get("warnings", []):
        parts.append(note(html.escape(str(w)), "warn"))
    if cfg.get("method") and cfg["method"] != vp.method:
        parts.append(note(f"the validation was computed with method {html.escape(vp.method)} but the run uses "
                          f"{html.escape(str(cfg['method']))}: rerun the validate rule.", "warn"))
    curve = validation_curve(validation)
    configured = conf_params.min_conf if conf_params.use_min_conf else None
    plot = plot_coverage_error(curve, configured, marks=(0.5, 0.8, 0.9, 0.99))
    if plot:
        parts.append(plot)
    rows, classes = [], []
    for t in sorted(set(CURVE_TABLE_THRESHOLDS) | ({configured} if configured is not None else set())):
        op = operating_point(tab, validation.ids, conf_params.with_(min_conf=float(t), use_min_conf=True))
        rows.append([f"{t:g}" + (" (configured)" if t == configured else ""), op.coverage.format(),
                     op.error.format()])
        classes.append("total" if t == configured else "")
    if not conf_params.use_min_conf:
        op = operating_point(tab, validation.ids, conf_params)
        rows.append(["no gate (use_min_conf off, configured)", op.coverage.format(), op.error.format()])
        classes.append("total")
    parts.append(table(["min_conf", "coverage (n, exact 95 % CI)", "error (n, exact 95 % CI)"], rows,
                       row_classes=classes))
    return "".join(parts)
