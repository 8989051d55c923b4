"""How well the trained model does on the held-out tracklets: per image and per tracklet (mean probability over the
tracklet's frames), accuracy, balanced accuracy, confusion matrices and per-class recall."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _predict(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        out.append(np.asarray(model.predict_on_batch(x[i : i + batch].astype(np.float32))))
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _balanced_acc(cm: np.ndarray) -> float | None:
    rows = cm.sum(1)
    present = rows > 0
    if not present.any():
        return None
    return float(np.mean(np.diag(cm)[present] / rows[present]))


def evaluate_split(
    probs: np.ndarray, y: np.ndarray, keys: Sequence[str], classes: Sequence[str]
) -> dict:
    """Per-image and per-tracklet (mean probability over the tracklet's frames, then argmax) accuracy, balanced
    accuracy, confusion matrices (rows = true, columns = predicted, in ``classes`` order) and per-class recall."""
    n = len(classes)
    pred = probs.argmax(1)
    cm_img = _confusion(y, pred, n)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (k, lab) in enumerate(zip(keys, y)):
        groups.setdefault((k, int(lab)), []).append(i)
    t_true = np.array([lab for (_, lab) in groups], dtype=np.int64)
    t_pred = np.array([int(probs[idx].mean(0).argmax()) for idx in groups.values()], dtype=np.int64)
    cm_trk = _confusion(t_true, t_pred, n) if len(groups) else np.zeros((n, n), np.int64)
    per_class = {}
    for i, c in enumerate(classes):
        ni, nt = int(cm_img[i].sum()), int(cm_trk[i].sum())
        if ni:
            per_class[c] = {
                "images": ni,
                "tracklets": nt,
                "image_recall": float(cm_img[i, i] / ni),
                "tracklet_recall": float(cm_trk[i, i] / nt) if nt else None,
            }
    return {
        "n_images": int(len(y)),
        "n_tracklets": int(len(groups)),
        "image_accuracy": float((pred == y).mean()) if len(y) else None,
        "image_balanced_accuracy": _balanced_acc(cm_img),
        "tracklet_accuracy": float((t_pred == t_true).mean()) if len(groups) else None,
        "tracklet_balanced_accuracy": _balanced_acc(cm_trk),
        "confusion_images": cm_img.tolist(),
        "confusion_tracklets": cm_trk.tolist(),
        "per_class": per_class,
    }


def validation_metrics(model, x_va: np.ndarray, y_va: np.ndarray, val_keys: Sequence[str], classes: Sequence[str],
                       val_fraction: float, seed: int, say: Callable[[str], None]) -> dict:
    """The card's ``metrics.validation``: :func:`evaluate_split` of the model on the validation images, with how they
    were split off and which tracklets they are."""
    val = evaluate_split(_predict(model, x_va), y_va, val_keys, classes)
    val.update({"split": "tracklet", "val_fraction": val_fraction, "seed": seed,
                "val_tracklets": sorted(set(val_keys))})
    say(
        f"validation (held-out tracklets): image accuracy {_fmt(val['image_accuracy'])}, "
        f"tracklet accuracy {_fmt(val['tracklet_accuracy'])} "
        f"({val['n_tracklets']} tracklets), balanced {_fmt(val['tracklet_balanced_accuracy'])}"
    )
    return val
