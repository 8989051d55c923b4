"""Softmax temperature: fitting it on the validation tracklets (classic NLL temperature scaling, or the temperature
under which anTraX's confidence gates assign the most right IDs for the fewest wrong ones) and folding it into the
model's output layer. Off by default (measured: it adds variance; see :mod:`antrax_pipe.training.options`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..aggregation import AggregationParams, ClassRoles, _aggregate
from ..model import (
    ANT_CATEGORY,
    MULTI_CLASSES,
    NOANT_CATEGORY,
    OTHER_CATEGORY,
    UNKNOWN,
    LabelSet,
)
from .options import TrainOptions


def temper_probs(probs: np.ndarray, t: float) -> np.ndarray:
    """Softmax probabilities at temperature t: p^(1/t) renormalised (= softmax(logits / t))."""
    lp = np.log(np.clip(np.asarray(probs, np.float64), 1e-30, 1.0)) / t
    lp -= lp.max(axis=1, keepdims=True)
    e = np.exp(lp)
    return e / e.sum(axis=1, keepdims=True)


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(np.asarray(probs, np.float64)[np.arange(len(y)), y], 1e-30, 1)).mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray, grid: Sequence[float] | None = None) -> float:
    """Temperature scaling (Guo et al. 2017): the t minimising the NLL of held-out (validation) labels. Applied to a
    model's softmax it changes confidences, never the argmax — it calibrates anTraX's confidence gates (min_conf)."""
    if len(y) == 0:
        return 1.0
    grid = grid if grid is not None else np.exp(np.linspace(np.log(0.5), np.log(8.0), 57))
    losses = [_nll(temper_probs(probs, t), y) for t in grid]
    return float(grid[int(np.argmin(losses))])


def gate_labelset(classes: Sequence[str]) -> LabelSet:
    """Label roles for calibrating without labels.csv: ``Unknown`` is 'other', classes named like ``NoAnt`` (any case)
    non-ant, multi classes multi, every other class an ID (anTraX's usual labels.csv)."""
    ids = tuple(c for c in classes if c != UNKNOWN and c not in MULTI_CLASSES and c.lower() != "noant")
    return LabelSet({ANT_CATEGORY: ids, NOANT_CATEGORY: tuple(c for c in classes if c.lower() == "noant"),
                     OTHER_CATEGORY: (UNKNOWN,) if UNKNOWN in classes else ()})


def gate_outcomes(probs: np.ndarray, y: np.ndarray, keys: Sequence[str], classes: Sequence[str],
                  params: AggregationParams | None = None) -> dict:
    """Tracklet outcomes under anTraX's aggregation rule (default gates): ID tracklets given the right / a wrong ID /
    no ID, and non-ID tracklets given an ID (anTraX eLife Table 2)."""
    labels = gate_labelset(classes)
    ids = set(labels.ant_labels)
    roles = ClassRoles.build(classes, labels)
    params = params or AggregationParams()
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (k, c) in enumerate(zip(keys, y)):
        groups.setdefault((k, int(c)), []).append(i)
    out = {"right": 0, "wrong": 0, "none": 0, "non_id": 0, "non_id_given": 0}
    for (k, c), idx in groups.items():
        got = _aggregate(probs[idx], roles, params, None, k).label
        truth = classes[c]
        if truth in ids:
            out["right" if got == truth else ("wrong" if got in ids else "none")] += 1
        else:
            out["non_id"] += 1
            out["non_id_given"] += got in ids
    return out


def fit_gate_temperature(probs: np.ndarray, y: np.ndarray, keys: Sequence[str], classes: Sequence[str],
                         penalty: float = 10.0, grid: Sequence[float] | None = None) -> tuple[float, dict]:
    """The softmax temperature that makes anTraX's confidence gates (min_conf 0.9, 0.99 for short tracklets) work
    best on the validation tracklets: maximise (right IDs) − penalty · (wrong IDs + non-ID tracklets given an ID).
    Ties → the temperature closest to 1. Returns (t, outcomes at t)."""
    grid = grid if grid is not None else np.exp(np.linspace(np.log(0.25), np.log(4.0), 33))
    best = None
    for t in grid:
        o = gate_outcomes(temper_probs(probs, t).astype(np.float32), y, keys, classes)
        score = o["right"] - penalty * (o["wrong"] + o["non_id_given"])
        cand = (score, -abs(np.log(t)))
        if best is None or cand > best[0]:
            best = (cand, float(t), o)
    return best[1], best[2]


def _fold_temperature(model, t: float) -> bool:
    """Divide the logits of the final softmax Dense layer by t (kernel and bias /= t): the saved model then *is*
    the calibrated one and inference needs nothing extra. False when the model does not end in such a layer."""
    import keras

    last = model.layers[-1] if model.layers else None
    if not isinstance(last, keras.layers.Dense) or getattr(last.activation, "__name__", "") != "softmax":
        return False
    last.set_weights([w / t for w in last.get_weights()])
    return True


def calibrate_model(model, p_va: np.ndarray, y_va: np.ndarray, k_va: Sequence[str], classes: Sequence[str],
                    opts: TrainOptions, say: Callable[[str], None]) -> tuple[float, dict]:
    """(temperature, the card's ``metrics.calibration``) for the ``calibrate`` option, given the validation
    probabilities (``opts.calibrate``: 'nll', or true / 'gates'). A temperature ≠ 1 is folded into the model; when
    it is 1, or the model does not end in a softmax Dense layer, nothing is applied and the temperature is 1."""
    if opts.calibrate == "nll":
        temperature = fit_temperature(p_va, y_va)
    else:
        temperature, _ = fit_gate_temperature(p_va, y_va, k_va, classes, penalty=opts.gate_penalty)
    calibration = {"method": "gates" if opts.calibrate != "nll" else "nll", "temperature": temperature,
                   "penalty": opts.gate_penalty if opts.calibrate != "nll" else None,
                   "before": gate_outcomes(p_va, y_va, k_va, classes),
                   "after": gate_outcomes(temper_probs(p_va, temperature).astype(np.float32), y_va, k_va, classes),
                   "nll_before": _nll(p_va, y_va), "nll_after": _nll(temper_probs(p_va, temperature), y_va)}
    if temperature != 1.0 and _fold_temperature(model, temperature):
        say(f"calibrated ({calibration['method']}): softmax temperature {temperature:.3g}, folded into the output "
            f"layer; validation tracklets {calibration['before']} → {calibration['after']}")
    else:
        calibration["applied"] = False  # t = 1, or a model that does not end in a softmax Dense layer
        temperature = 1.0
    return temperature, calibration
