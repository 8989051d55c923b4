"""Held-out evaluation of a classifier: how the *tracklet rule* behaves on tracklets training held out.

Training holds out whole tracklets (grouped split). This module reconstructs that split, predicts its images with the
shared preprocessing, aggregates each held-out tracklet with the configured rule **without** the gate and keeps, per
tracklet, the value the gate tests (:func:`antrax_pipe.aggregation.tracklet_decision`), written to
``validation.h5`` (:mod:`antrax_pipe.io.heldout`); :mod:`antrax_pipe.coverage` turns it into the coverage–error
curve. Caveat printed with the numbers: a tracklet's examples are the frames someone exported, often a subset of the
tracklet, so ``n_frames`` here is the number of examples, not the tracklet's length in a movie. TensorFlow is
imported only inside :func:`validate_classifier`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .aggregation import AggregationParams, tracklet_decision
from .classifier import load_classifier
from .io.classifier import read_card
from .io.examples import list_examples
from .io.heldout import (
    STATUS_NO_SPLIT,
    STATUS_OK,
    TABLE_COLUMNS,
    ClassifierValidation,
    empty_table,
)
from .io.manifest import manifest_hash, manifest_of
from .model import LabelSet, TrainsetError
from .training.data import grouped_split
from .trainset import load_example_images

log = logging.getLogger(__name__)


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
    model, card = load_classifier(classifier, compile=False)
    x = load_example_images(held, card.preprocess_spec())
    out = []
    for i in range(0, len(x), batch_size):
        out.append(np.asarray(model.predict_on_batch(x[i : i + batch_size].astype(np.float32))))
    probs = np.concatenate(out).astype(np.float32)
    table, probs, offsets = aggregate_held_out(probs, [e.tracklet_key for e in held], [e.label for e in held],
                                               classes, labels, params)
    meta["n_images"] = int(len(held))
    return ClassifierValidation(STATUS_OK, classes, ids, table, meta=meta, probs=probs, offsets=offsets)
