"""Tracklet aggregation: per-image class probabilities of one tracklet → one autoID row (docs/tracklet-rule.md#the-rule-step-by-step).

The default method ``'antrax'`` reproduces anTraX's ``process_predictions`` step by step and in its order, so that
MATLAB's solve sees the same labels, scores and best frames:

1. every frame's argmax is a non-ant label           → most common label (``mode``), score 0, no best frame
2. (some frame is multi and none is an ant) or more than ``multi_fraction`` of the frames are multi
                                                     → most common multi label
3. every frame is ambiguous, or no frame is an ant   → most common label (may be a non-ant or an ambiguous class)
4. over the *ant frames only* (argmax is an ID), sum each ID's probability; the ID with the largest sum wins
   (ties: lowest class index); score = float32 sum of its probability over the ant frames (length-biased, as in
   anTraX: solve sorts propagation sources by it)
5. ``use_min_conf``: if the largest probability of *any* ID in the ant frames is below ``min_conf`` (0.9), or there are
   fewer than ``short_length`` (5) ant frames and it is below ``min_conf_short`` (0.99)  → ``Unknown``
   (anTraX tests the max over all ID columns, not the chosen ID's column, docs/tracklet-rule.md#known-bugs, item 11 — kept for compatibility)
6. best frame = the ant frame where the chosen ID's probability is highest (first on ties), written 1-based.

``mode`` is Python's ``max(seq, key=seq.count)``: ties go to the label that occurs first (earliest frame).

``method='evidence'`` (not anTraX's): anTraX's rule and gates as above, and then the chosen ID must also carry the
tracklet as a whole: its mean probability over *all* frames (not only the frames whose argmax is an ID) must be
≥ ``min_evidence``, else ``Unknown``. anTraX's rule assigns a long tracklet on a few confident ant frames even when
most frames say ``Unknown``/``NoAnt`` (e.g. 420 of 448 frames ``Unknown`` and 21 frames ≥ 0.9 for one ID); this one
does not. The evidence test is a confidence gate: ``use_min_conf=False`` switches it off with the others.
Default ``min_evidence`` 0.7: chosen on the training runs' grouped validation tracklets (bench/results/
accuracy_notes.md, "Honest Unknowns").

Differences from anTraX, all on inputs where anTraX crashes or misbehaves (docs/tracklet-rule.md#known-bugs, items 8 and 17):

* a tracklet with no image (empty dataset), and with ``usepassed`` a tracklet with no passed frame or absent from
  ``frame_passed_<m>.mat`` → ``Unknown`` (anTraX: crash on ``max()`` of an empty list / ``KeyError``);
* :func:`check_classes` refuses a classifier whose classes are not all in labels.csv (anTraX's step 3 would silently
  write a label that solve does not understand).

Pure numpy: nothing here imports TensorFlow, so aggregation runs in a light process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .io.probabilities import ProbabilitiesFile
from .model import MULTI_CLASSES, UNKNOWN, AutoID, ClassLabelMismatchError, LabelSet, consv_gates

log = logging.getLogger(__name__)

#: Aggregation methods: anTraX's rule (default), anTraX's rule with an evidence gate over all frames, and two simpler
#: alternatives (see :func:`aggregate_tracklet`).
METHODS: tuple[str, ...] = ("antrax", "mean", "vote", "evidence")

#: ``method='evidence'``: the chosen ID's mean probability over all frames must reach this (module docstring).
DEFAULT_MIN_EVIDENCE = 0.7


@dataclass(frozen=True)
class AggregationParams:
    """How per-image predictions become one label per tracklet. Defaults are anTraX's (``consv_factor`` 0.5)."""

    use_min_conf: bool = True
    min_conf: float = 0.9
    min_conf_short: float = 0.99
    short_length: int = 5
    multi_fraction: float = 0.25
    usepassed: bool = False
    method: str = "antrax"
    min_evidence: float = DEFAULT_MIN_EVIDENCE  # used by method 'evidence' only

    def __post_init__(self) -> None:
        for name in ("use_min_conf", "usepassed"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"AggregationParams.{name} must be true/false, got {getattr(self, name)!r}")
        for name in ("min_conf", "min_conf_short", "multi_fraction", "min_evidence"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"AggregationParams.{name} must be a number in [0, 1], got {v!r}")
        n = self.short_length
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"AggregationParams.short_length must be an integer >= 0, got {self.short_length!r}")
        if self.method not in METHODS:
            raise ValueError(f"AggregationParams.method must be one of {', '.join(METHODS)}; got {self.method!r}")

    @classmethod
    def from_consv_factor(cls, consv_factor: float, **kwargs) -> AggregationParams:
        """anTraX's derivation: ``min_conf = 1 - 0.2·c``, ``min_conf_short = 1 - 0.02·c`` (c = 0.5 → 0.9 / 0.99)."""
        if not 0.0 <= consv_factor <= 5.0:
            raise ValueError(f"consv_factor must be in [0, 5] (min_conf = 1 - 0.2*c >= 0), got {consv_factor!r}")
        min_conf, min_conf_short = consv_gates(consv_factor)
        return cls(min_conf=min_conf, min_conf_short=min_conf_short, **kwargs)

    def with_(self, **kwargs) -> AggregationParams:
        return replace(self, **kwargs)


@dataclass(frozen=True)
class ClassRoles:
    """Per class index: is it an ID, a non-ant, an ambiguous ('other') or a multi-ant class. Built once per movie."""

    classes: tuple[str, ...]
    ant: np.ndarray
    noant: np.ndarray
    ambig: np.ndarray
    multi: np.ndarray
    ant_cols: np.ndarray  # indices of ID classes, in class-index order (anTraX's ant_cols)

    @classmethod
    def build(cls, classes: Sequence[str], labels: LabelSet) -> ClassRoles:
        classes = tuple(str(c) for c in classes)
        ant = np.array([c in labels.ant_labels for c in classes], dtype=bool)
        return cls(
            classes=classes,
            ant=ant,
            noant=np.array([c in labels.noant_labels for c in classes], dtype=bool),
            ambig=np.array([c in labels.other_labels for c in classes], dtype=bool),
            multi=np.array([c in MULTI_CLASSES for c in classes], dtype=bool),
            ant_cols=np.flatnonzero(ant),
        )


def check_classes(
    classes: Sequence[str], labels: LabelSet, where: str = "", allow_missing_ids: bool = False
) -> None:
    """Raise :class:`ClassLabelMismatchError` listing every disagreement between classifier classes and labels.csv.

    Checked: duplicate classes; classes in no category of labels.csv (multi-ant names count as known, anTraX
    recognises them by name); ID labels (``ant_labels``) the classifier cannot predict — an ID that can never be
    assigned usually means the wrong classifier or labels.csv (``allow_missing_ids`` accepts it).
    ``where`` names the two files in the message.
    """
    classes = [str(c) for c in classes]
    problems = []
    dups = sorted({c for c in classes if classes.count(c) > 1})
    if dups:
        problems.append(f"duplicate classes in the classifier: {dups}")
    known = set(labels.all_labels) | set(MULTI_CLASSES)
    unlisted = [c for c in classes if c not in known]
    if unlisted:
        tag_only = [c for c in unlisted if c in labels.tagcolors]
        msg = f"classifier classes in no category of labels.csv: {unlisted}"
        if tag_only:
            msg += f" ({tag_only} only as tagcolors, which is not a class category)"
        problems.append(msg + " - they would be written as labels MATLAB solve does not understand")
    missing = [lab for lab in labels.ant_labels if lab not in classes]
    if missing and not allow_missing_ids:
        problems.append(f"ID labels (ant_labels) the classifier cannot predict: {missing}")
    if problems:
        head = "classifier classes and labels.csv disagree" + (f" ({where})" if where else "")
        raise ClassLabelMismatchError(
            head + ":\n  " + "\n  ".join(problems) + f"\n  classifier classes: {classes}"
            f"\n  labels.csv: ant={list(labels.ant_labels)} noant={list(labels.noant_labels)} "
            f"other={list(labels.other_labels)}"
        )


def _mode(idx: np.ndarray, n_classes: int) -> int:
    """Python's ``max(seq, key=seq.count)`` on class indices: most frequent, ties → the one occurring first."""
    counts = np.bincount(idx, minlength=n_classes)
    winners = counts == counts.max()
    return int(idx[np.argmax(winners[idx])])


def _none(tracklet: str, label: str) -> AutoID:
    return AutoID(tracklet, label, 0.0, 0)


def _antrax(y: np.ndarray, roles: ClassRoles, params: AggregationParams) -> tuple[str, float, int]:
    """anTraX's ``process_predictions`` on a non-empty (N, C) array; best frame 0-based into y, -1 = none."""
    classes, n_classes = roles.classes, len(roles.classes)
    idx = y.argmax(axis=1)
    noant, multi, ambig, ant = roles.noant[idx], roles.multi[idx], roles.ambig[idx], roles.ant[idx]
    if noant.all():
        return classes[_mode(idx, n_classes)], 0.0, -1
    if (multi.any() and not ant.any()) or np.mean(multi) > params.multi_fraction:
        return classes[_mode(idx[multi], n_classes)], 0.0, -1
    if ambig.all() or not ant.any():
        return classes[_mode(idx, n_classes)], 0.0, -1
    ant_cols = roles.ant_cols
    y1 = y[ant]
    s = y1[:, ant_cols].sum(axis=0)
    if s.sum() > 0:  # anTraX normalises; kept because the division can merge near-ties (argmax → lowest index)
        s = s / s.sum()
    k = int(ant_cols[s.argmax()])
    frame_score = y1[:, k]
    score = float(frame_score.sum())
    if params.use_min_conf:
        # compared as Python floats (float64), as numpy 1.x did for anTraX: under numpy 2 a float32 compared with a
        # Python float stays float32, and a probability exactly at min_conf would pass the gate
        top = float(y1[:, ant_cols].max())
        if top < params.min_conf:
            return UNKNOWN, 0.0, -1
        if y1.shape[0] < params.short_length and top < params.min_conf_short:
            return UNKNOWN, 0.0, -1
    best = int(np.flatnonzero(ant)[frame_score.argmax()])
    return classes[k], score, best


def _id_decision(
    y: np.ndarray, frames: np.ndarray, k: int, roles: ClassRoles, params: AggregationParams, gate: float
) -> tuple[str, float, int]:
    """Shared tail of the alternative methods: class k is an ID; score/best over ``frames`` (bool mask)."""
    p = y[frames, k]
    if params.use_min_conf:
        if gate < params.min_conf:
            return UNKNOWN, 0.0, -1
        if p.shape[0] < params.short_length and gate < params.min_conf_short:
            return UNKNOWN, 0.0, -1
    return roles.classes[k], float(p.sum()), int(np.flatnonzero(frames)[p.argmax()])


def _mean(y: np.ndarray, roles: ClassRoles, params: AggregationParams) -> tuple[str, float, int]:
    """'mean': the class with the highest mean probability; an ID must have *mean* probability ≥ min_conf
    (≥ min_conf_short for short tracklets). Length-unbiased decision; score still the anTraX-style sum."""
    m = y.astype(np.float64).mean(axis=0)
    k = int(m.argmax())
    if not roles.ant[k]:
        return roles.classes[k], 0.0, -1
    return _id_decision(y, np.ones(len(y), dtype=bool), k, roles, params, float(m[k]))


def _vote(y: np.ndarray, roles: ClassRoles, params: AggregationParams) -> tuple[str, float, int]:
    """'vote': the most common per-frame label (ties → earliest); an ID is gated like anTraX on its voters'
    highest probability; score = summed probability over its voters."""
    idx = y.argmax(axis=1)
    k = _mode(idx, len(roles.classes))
    if not roles.ant[k]:
        return roles.classes[k], 0.0, -1
    voters = idx == k
    return _id_decision(y, voters, k, roles, params, float(y[voters, k].max()))


def evidence_of(y: np.ndarray, k: int) -> float:
    """Mean probability of class ``k`` over all frames of ``y`` (float64): what ``min_evidence`` is compared with."""
    return float(np.asarray(y, dtype=np.float64)[:, k].mean())


def _evidence(y: np.ndarray, roles: ClassRoles, params: AggregationParams) -> tuple[str, float, int]:
    """'evidence': anTraX's rule and gates, then the chosen ID's mean probability over all frames ≥ min_evidence."""
    label, score, best = _antrax(y, roles, params)
    if best < 0 or not params.use_min_conf:  # not an ID (or gated to Unknown already), or gates switched off
        return label, score, best
    if evidence_of(y, roles.classes.index(label)) < params.min_evidence:
        return UNKNOWN, 0.0, -1
    return label, score, best


_METHOD_FUNCS = {"antrax": _antrax, "mean": _mean, "vote": _vote, "evidence": _evidence}


def _aggregate(
    y: np.ndarray,
    roles: ClassRoles,
    params: AggregationParams,
    passed: np.ndarray | None,
    tracklet: str,
) -> AutoID:
    y = np.asarray(y, dtype=np.float32)  # anTraX's softmax rows are float32: the score is a float32 sum
    if y.ndim != 2 or y.shape[1] != len(roles.classes):
        raise ValueError(
            f"tracklet {tracklet!r}: probabilities have shape {y.shape}, expected (n_images, {len(roles.classes)})"
        )
    index = None
    if params.usepassed:
        if passed is None:  # tracklet absent from frame_passed: anTraX crashes (KeyError), we say Unknown
            return _none(tracklet, UNKNOWN)
        passed = np.asarray(passed).reshape(-1).astype(bool)
        if passed.shape[0] != y.shape[0]:
            raise ValueError(
                f"tracklet {tracklet!r}: frame_passed has {passed.shape[0]} frames but the tracklet has "
                f"{y.shape[0]} images"
            )
        index = np.flatnonzero(passed)
        y = y[index]
    if y.shape[0] == 0:
        return _none(tracklet, UNKNOWN)
    label, score, best = _METHOD_FUNCS[params.method](y, roles, params)
    if best < 0:
        return _none(tracklet, label)
    best_frame = int(index[best] if index is not None else best) + 1
    return AutoID(tracklet, label, score, best_frame)


def aggregate_tracklet(
    y: np.ndarray,
    classes: Sequence[str],
    labels: LabelSet,
    params: AggregationParams = AggregationParams(),
    passed: np.ndarray | None = None,
    tracklet: str = "",
) -> AutoID:
    """One tracklet's (N, C) float32 softmax rows (image order) → AutoID(label, score, best_frame 1-based / 0).

    ``passed`` (bool per image) is used only with ``params.usepassed``: frames that did not pass are dropped before
    aggregating and ``best_frame`` still indexes the full image stack. With ``usepassed``, ``passed=None`` (tracklet
    missing from frame_passed) and an all-False mask both give ``Unknown``.
    """
    return _aggregate(y, ClassRoles.build(classes, labels), params, passed, tracklet)


def aggregate_movie(
    probs_file: str | Path,
    labels: LabelSet,
    params: AggregationParams = AggregationParams(),
    frame_passed: Mapping[str, np.ndarray] | None = None,
    check: bool = True,
    allow_missing_ids: bool = False,
) -> list[AutoID]:
    """All tracklets of a per-movie probabilities file (:mod:`antrax_pipe.io.probabilities`) → AutoID rows, in the
    file's tracklet order (= image-file order, parts in order; the order anTraX writes).

    ``frame_passed`` (tracklet → bool mask, parts merged) is required when ``params.usepassed``: unlike anTraX,
    which silently skips the filter when the file is absent, asking for it without giving it is an error.
    ``check`` runs :func:`check_classes` first.
    """
    if params.usepassed and frame_passed is None:
        raise ValueError(f"{probs_file}: usepassed is on but no frame_passed data was given (frame_passed_<m>.mat)")
    rows: list[AutoID] = []
    n_missing = n_nopass = 0
    with ProbabilitiesFile(probs_file) as pf:
        if check:
            clf = pf.attrs.get("classifier_path") or "?"
            check_classes(pf.classes, labels, f"classifier {clf} vs labels.csv; probabilities {probs_file}",
                          allow_missing_ids=allow_missing_ids)
        roles = ClassRoles.build(pf.classes, labels)
        for tracklet, y in pf:
            passed = None
            if params.usepassed:
                passed = frame_passed.get(tracklet)  # type: ignore[union-attr]
                if passed is None:
                    n_missing += 1
                    log.debug("%s: tracklet %s not in frame_passed -> Unknown", probs_file, tracklet)
                elif len(y) and not np.any(passed):
                    n_nopass += 1
            try:
                rows.append(_aggregate(y, roles, params, passed, tracklet))
            except ValueError as exc:
                raise ValueError(f"{probs_file}: {exc}") from exc
    if n_missing or n_nopass:
        log.warning(
            "%s: usepassed: %d tracklet(s) missing from frame_passed and %d with no passed frame -> Unknown",
            probs_file, n_missing, n_nopass,
        )
    return rows


# --------------------------------------------------------------------------------------------------------------------
# The rule without its gate, and the gate on its own (held-out evaluation, review gates, coverage–error curves)
# --------------------------------------------------------------------------------------------------------------------


def tracklet_decision(y: np.ndarray, classes: Sequence[str], labels: LabelSet,
                      params: AggregationParams = AggregationParams()) -> tuple[str, float, int]:
    """(ungated label, gate value, n_gate) of one tracklet's (N, C) probabilities under ``params.method``.

    The gate value is what :mod:`antrax_pipe.aggregation` compares with ``min_conf``: for ``antrax`` the largest
    probability of any ID over the ant frames (anTraX rule step 5), for ``mean`` the chosen ID's mean probability, for
    ``vote`` the chosen ID's largest probability over its voters; ``n_gate`` is the frame count compared with
    ``short_length``. Both are NaN / 0 when the ungated label is not an ID (the gate does not apply). ``evidence``:
    anTraX's gate value when the chosen ID passes ``params.min_evidence`` (fixed: the curve over ``min_conf`` is at
    the configured evidence threshold), else NaN with anTraX's ``n_gate`` — no ``min_conf`` lets it through, and
    without gates (``use_min_conf`` off) it keeps its ID, as in aggregation.
    """
    y = np.asarray(y, dtype=np.float32)
    ungated = params.with_(use_min_conf=False, usepassed=False)
    label = aggregate_tracklet(y, classes, labels, ungated).label
    roles = ClassRoles.build(classes, labels)
    if label not in labels.ant_labels or y.shape[0] == 0:
        return label, math.nan, 0
    k = list(roles.classes).index(label)
    idx = y.argmax(axis=1)
    if params.method in ("antrax", "evidence"):
        ant = roles.ant[idx]
        gate = float(y[ant][:, roles.ant_cols].max())
        if params.method == "evidence" and evidence_of(y, k) < params.min_evidence:
            gate = math.nan
        return label, gate, int(ant.sum())
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
