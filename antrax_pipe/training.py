"""Training the blob classifier (spec §8), with anTraX's recipe kept for comparison.

Default recipe (``recipe='default'``), and why it differs from anTraX (spec §14.16). Every choice was measured with
``bench/accuracy_eval.py`` (tracklet-grouped held-out sets and leave-one-experiment-out on the shared real trainset,
anTraX's aggregation and gates); the runs are in ``bench/results/accuracy_runs.tsv``:

- a **held-out validation split grouped by tracklet** (frames of one tracklet are near-duplicates; an image-level
  split would measure memorisation). Per label, tracklets are ranked by a seeded hash of their key and the first
  ``val_fraction`` of them are held out, so the split is deterministic and mostly stable when examples are added
  (an incremental run does not validate on tracklets an earlier run trained on). Each validation tracklet weighs
  the same in the validation loss (one 400-frame tracklet flipping would otherwise swing it 3×);
- architecture ``tagnet`` (:mod:`antrax_pipe.models`): conv-BN-ReLU blocks without anTraX's dropout-before-BN, at
  T = 64 unless ``target_size`` is given (anTraX: the first example's size, arbitrary when sizes are mixed);
- **epochs of tracklets, not images** (``frames_per_tracklet``, default 8): every epoch draws 8 fresh frames of each
  training tracklet — frames are near-duplicates, and the few long tracklets would otherwise dominate;
- a cosine learning-rate schedule over ``epochs`` (the validation loss is too noisy early on to steer the rate
  with ReduceLROnPlateau, which halved it within the first epochs), early stopping on the validation loss
  (patience 10) with the best weights restored;
- augmentation: anTraX's geometric set plus per-channel gain (camera white balance, ±10 %) and saturation (±30 %);
  no hue jitter — tags are colours;
- **no temperature calibration by default**, measured: picking a softmax temperature on the ~60 validation
  tracklets (``calibrate='gates'``: the most right IDs minus ``gate_penalty`` × (wrong IDs + non-ID tracklets given
  an ID) under the default gates; ``'nll'``: classic temperature scaling) landed anywhere between t = 0.55 and 1.68
  across seeds and made the held-out results *less* stable (known split, 3 seeds: 63–90 % of ID tracklets assigned
  calibrated vs 82–83 % uncalibrated, 0 wrong IDs either way). The options stay: the chosen temperature is folded
  into the output layer (kernel and bias ÷ t), so the saved model *is* calibrated and inference needs nothing
  else; it is in the card (``training.temperature``, ``metrics.calibration``) and undone before an incremental run
  trains on, then fitted again;
- class weights applied as a dict: balanced (N / (C · n_c), over the tracklet draws), ``Unknown`` ×
  ``unknown_weight`` (default **1** here: anTraX's ×20 was, very likely, never applied by TF 1.15 Keras — it
  ignored a non-dict class_weight — and makes the model prefer ``Unknown``; the ``antrax`` recipe keeps 20), multi
  classes × ``multi_weight`` (incl. lowercase ``multi``);
- BatchNormalization momentum adapted to the epoch length (``1 − 4/steps``, clipped to [0.5, 0.99]): Keras' 0.99
  needs hundreds of steps before the inference-mode statistics settle, and until then a small trainset's validation
  accuracy sits at chance (measured on 4 labels × ~6 tracklets: min accuracy over 4 seeds 0.59 → 0.88);
- input normalisation inside the model (:mod:`antrax_pipe.models`);
- incremental training continues from the saved model **with its optimizer state**; a changed class list is an
  error (:class:`ClassListChangedError`, "use scratch"): we do not extend the output layer, because a class added
  to a trained model would start far behind the others and silently bias it.

``recipe='antrax'``: no validation (unless ``val_fraction`` is given, then it is only reported), no input
normalisation, 1000 steps × 32 random draws per epoch, 5 epochs, fresh Adam each run, early stopping / LR reduction
on the training loss (patience 10 / 5 as anTraX), anTraX's class weights (Unknown × 20, multi × 0.1) applied.

Both recipes read images through :func:`antrax_pipe.trainset.load_example_images` (the shared preprocessing) and
augment with Keras 3 ``Random*`` layers in a tf.data pipeline (anTraX's ImageDataGenerator no longer exists).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .aggregation import AggregationParams, ClassRoles, _aggregate
from .classifier import load_classifier, save_classifier
from .io.classifier import read_card
from .io.examples import Example, examples_dir_of, list_examples, read_example_image, scan_examples_dir
from .io.experiment import resolve_classdir
from .io.manifest import manifest_hash, manifest_of
from .model import (
    ANT_CATEGORY,
    MULTI_CLASSES,
    NOANT_CATEGORY,
    OTHER_CATEGORY,
    UNKNOWN,
    ClassifierCard,
    ClassifierFileError,
    ClassListChangedError,
    LabelSet,
    PreprocessSpec,
    TrainingError,
    TrainsetError,
)
from .trainset import load_example_images

log = logging.getLogger(__name__)

RECIPES: tuple[str, ...] = ("default", "antrax")

# The default recipe (chosen on bench/accuracy_eval.py; runs logged in bench/results/accuracy_runs.tsv).
DEFAULT_ARCH = "tagnet"
DEFAULT_TARGET_SIZE = 64  # anTraX: the first example's size (46–88 px in the shared trainset); 48 → 64: 0.90 → 0.96
DEFAULT_FRAMES_PER_TRACKLET = 8
DEFAULT_LR_SCHEDULE = "cosine"
DEFAULT_PATIENCE = 10
DEFAULT_AUG: dict = {"channel_gain_range": 0.1, "saturation_range": 0.3}
DEFAULT_GATE_PENALTY = 1.5  # chosen on the tracklet-grouped known split (bench/results/accuracy_notes.md)






# --------------------------------------------------------------------------------------------------------------------
# Augmentation options


def _parse_bool(v) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _parse_range(v) -> tuple[float, float]:
    """``(lo, hi)`` / ``[lo, hi]`` / ``"lo:hi"`` / a single r meaning ``(1 - r, 1 + r)``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected two numbers (lo, hi), got {v!r}")
        return float(v[0]), float(v[1])
    if isinstance(v, str) and ":" in v:
        lo, hi = v.split(":", 1)
        return float(lo), float(hi)
    r = float(v)
    return 1.0 - r, 1.0 + r


@dataclass(frozen=True)
class AugOptions:
    """Training-time augmentation. Defaults = anTraX's ImageDataGenerator settings (spec §8.5).

    Shifts are in pixels of the T×T network input when ≥ 1 and fractions of T when < 1 (as ImageDataGenerator);
    shear and rotation in degrees (uniform ±); zoom: each axis scaled by U(1 − z, 1 + z); brightness: pixel values
    multiplied by U(lo, hi); ``horizontal_flip=None`` follows the classifier's ``hsymmetry``.
    Not in anTraX: ``channel_gain_range`` r multiplies each colour channel by its own U(1 − r, 1 + r) (a camera's
    white balance; no hue rotation, which would turn one tag colour into another) and ``contrast_range`` c scales
    pixel deviations from the image mean by U(1 − c, 1 + c); ``saturation_range`` s scales each pixel's deviation from
    its own grey level by U(1 − s, 1 + s) (paint that is fainter or stronger in another experiment; hue is kept).
    """

    width_shift_range: float = 10.0
    height_shift_range: float = 10.0
    shear_range: float = 5.0
    rotation_range: float = 15.0
    zoom_range: float = 0.1
    brightness_range: tuple[float, float] = (0.9, 1.1)
    horizontal_flip: bool | None = None
    vertical_flip: bool = True
    channel_gain_range: float = 0.0
    contrast_range: float = 0.0
    saturation_range: float = 0.0

    _CONVERTERS = {
        "width_shift_range": float,
        "height_shift_range": float,
        "shear_range": float,
        "rotation_range": float,
        "zoom_range": float,
        "brightness_range": _parse_range,
        "horizontal_flip": lambda v: None if v is None or str(v).lower() == "none" else _parse_bool(v),
        "vertical_flip": _parse_bool,
        "channel_gain_range": float,
        "contrast_range": float,
        "saturation_range": float,
    }

    def __post_init__(self) -> None:
        for k in ("width_shift_range", "height_shift_range", "shear_range", "rotation_range", "zoom_range"):
            v = getattr(self, k)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"aug option {k}={v!r}: must be a finite number ≥ 0")
        for k in ("channel_gain_range", "contrast_range", "saturation_range"):
            v = getattr(self, k)
            if not math.isfinite(v) or not 0 <= v < 1:
                raise ValueError(f"aug option {k}={v!r}: must be in [0, 1)")
        if self.rotation_range > 180:
            raise ValueError(f"aug option rotation_range={self.rotation_range}: at most 180 degrees")
        if self.shear_range >= 45:
            raise ValueError(f"aug option shear_range={self.shear_range}: must be < 45 degrees")
        if self.zoom_range >= 1:
            raise ValueError(f"aug option zoom_range={self.zoom_range}: must be < 1")
        lo, hi = self.brightness_range
        if not (0 < lo <= hi) or not math.isfinite(hi):
            raise ValueError(f"aug option brightness_range={self.brightness_range}: need 0 < lo ≤ hi")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def none(cls) -> AugOptions:
        """No augmentation at all."""
        return cls(0, 0, 0, 0, 0, (1.0, 1.0), False, False, 0.0, 0.0, 0.0)

    @classmethod
    def parse(cls, value: AugOptions | Mapping | str | None) -> AugOptions:
        """From an AugOptions, a dict, or anTraX's ``--aug-options`` string ``k=v,k=v`` (``none`` → no augmentation).
        Unknown keys and bad values raise ValueError naming the key and the valid keys."""
        if value is None:
            return cls()
        if isinstance(value, AugOptions):
            return value
        if isinstance(value, str):
            if _aug_off(value):
                return cls.none()
            s = value.strip()
            items: dict = {}
            for part in filter(None, (p.strip() for p in s.split(","))):
                if "=" not in part:
                    raise ValueError(f"aug options {value!r}: {part!r} is not key=value")
                k, v = part.split("=", 1)
                items[k.strip()] = v.strip()
            value = items
        if not isinstance(value, Mapping):
            raise ValueError(f"aug options must be a dict or a 'key=value,...' string, got {type(value).__name__}")
        unknown = sorted(set(value) - set(cls.names()))
        if unknown:
            raise ValueError(
                f"unknown aug option(s): {', '.join(unknown)}; valid options: {', '.join(cls.names())}"
            )
        kwargs = {}
        for k, v in value.items():
            try:
                kwargs[k] = cls._CONVERTERS[k](v)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"aug option {k}={v!r}: {exc}") from exc
        return cls(**kwargs)

    @classmethod
    def parse_keys(cls, value: Mapping | str) -> list[str]:
        """The option names a dict / ``k=v,...`` string sets (unvalidated)."""
        if isinstance(value, str):
            return [p.split("=", 1)[0].strip() for p in value.split(",") if "=" in p]
        return list(value)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["brightness_range"] = list(self.brightness_range)
        return d


def _aug_off(value) -> bool:
    """``--aug-options none`` (or off/false): every augmentation switched off, no recipe defaults merged in."""
    return isinstance(value, str) and value.strip().lower() in ("none", "off", "false")


def _recipe_aug(value: AugOptions | Mapping | str | None, is_antrax: bool) -> AugOptions:
    """The recipe's augmentation with the user's keys on top: anTraX's defaults for ``recipe='antrax'``, those plus
    :data:`DEFAULT_AUG` for the default recipe. ``'none'`` and an :class:`AugOptions` are taken as they are."""
    if is_antrax or isinstance(value, AugOptions) or _aug_off(value):
        return AugOptions.parse(value)
    user = AugOptions.parse(value)  # validates (unknown keys, bad values) before merging
    given = set(AugOptions.parse_keys(value)) if value is not None else set()
    merged = {**DEFAULT_AUG, **{k: v for k, v in user.to_dict().items() if k in given}}
    return AugOptions.parse(merged)


def parse_aug_options(value: AugOptions | Mapping | str | None) -> dict:
    """Validate ``--aug-options`` (string or dict) → a plain dict (JSON/YAML-safe, e.g. for a Snakemake config) that
    :meth:`AugOptions.parse` accepts again. Raises ValueError on unknown keys or bad values. Only the options given
    are kept (``none`` → every option, switched off), so the recipe's defaults still apply to the others."""
    full = AugOptions.parse(value).to_dict()
    if value is None or isinstance(value, AugOptions) or _aug_off(value):
        return full
    given = set(AugOptions.parse_keys(value))
    return {k: v for k, v in full.items() if k in given}


def _make_augmenter(aug: AugOptions, target_size: int, hsymmetry: bool, fill: float, seed: int):
    """A function (B,T,T,3) float32 → augmented batch, built from Keras 3 Random* layers (per-image parameters)."""
    import keras
    import tensorflow as tf

    L = keras.layers
    geo = dict(fill_mode="constant", fill_value=float(fill), interpolation="bilinear")
    t = float(target_size)

    def frac(shift: float) -> float:
        return min(shift / t if shift >= 1 else shift, 0.9)

    layers = []
    if aug.width_shift_range or aug.height_shift_range:
        layers.append(L.RandomTranslation(frac(aug.height_shift_range), frac(aug.width_shift_range), seed=seed, **geo))
    if aug.rotation_range:
        layers.append(L.RandomRotation(aug.rotation_range / 360.0, seed=seed + 1, **geo))
    if aug.shear_range:
        shear = math.tan(math.radians(aug.shear_range))
        layers.append(L.RandomShear(x_factor=shear, y_factor=0.0, seed=seed + 2, **geo))
    if aug.zoom_range:
        z = aug.zoom_range
        layers.append(L.RandomZoom((-z, z), (-z, z), seed=seed + 3, **geo))
    hflip = hsymmetry if aug.horizontal_flip is None else aug.horizontal_flip
    mode = {(True, True): "horizontal_and_vertical", (True, False): "horizontal", (False, True): "vertical"}.get(
        (bool(hflip), bool(aug.vertical_flip))
    )
    if mode:
        layers.append(L.RandomFlip(mode, seed=seed + 4))
    lo, hi = aug.brightness_range

    def augment(x):
        for layer in layers:
            x = layer(x, training=True)
        if (lo, hi) != (1.0, 1.0):
            f = tf.random.uniform((tf.shape(x)[0], 1, 1, 1), lo, hi, seed=seed + 5)
            x = x * f
        if aug.channel_gain_range:
            r = aug.channel_gain_range
            x = x * tf.random.uniform((tf.shape(x)[0], 1, 1, 3), 1 - r, 1 + r, seed=seed + 6)
        if aug.saturation_range:
            s_ = aug.saturation_range
            g = tf.reduce_mean(x, axis=3, keepdims=True)
            x = g + (x - g) * tf.random.uniform((tf.shape(x)[0], 1, 1, 1), 1 - s_, 1 + s_, seed=seed + 8)
        if aug.contrast_range:
            c = aug.contrast_range
            m = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
            x = m + (x - m) * tf.random.uniform((tf.shape(x)[0], 1, 1, 1), 1 - c, 1 + c, seed=seed + 7)
        return tf.clip_by_value(x, 0.0, 255.0)

    return augment


# --------------------------------------------------------------------------------------------------------------------
# Split and weights


def _key_rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def grouped_split(
    examples: Sequence[Example], val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train indices, val indices, warnings): per label, ``round(val_fraction · n_tracklets)`` tracklets (≥1 when
    the label has ≥2 tracklets, never all of them) go to validation, chosen by a seeded hash of the tracklet key.
    A tracklet key that occurs under several labels is assigned once (never split across train and val)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_label: dict[str, list[str]] = {}
    for ex in examples:
        keys = by_label.setdefault(ex.label, [])
        if ex.tracklet_key not in keys:
            keys.append(ex.tracklet_key)
    assigned: dict[str, bool] = {}  # key → is_val
    warnings = []
    if val_fraction > 0:
        for label in sorted(by_label):
            keys = sorted(by_label[label], key=lambda k: _key_rank(seed, k))
            if len(keys) < 2:
                warnings.append(f"label {label!r} has only {len(keys)} tracklet(s): none held out for validation")
                for k in keys:
                    assigned.setdefault(k, False)
                continue
            n_val = min(max(1, round(val_fraction * len(keys))), len(keys) - 1)
            n_have = sum(1 for k in keys if assigned.get(k) is True)
            for k in keys:
                if k in assigned:
                    continue
                assigned[k] = n_have < n_val
                n_have += assigned[k]
    is_val = np.array([assigned.get(ex.tracklet_key, False) for ex in examples], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val), warnings


def class_weights(
    labels: np.ndarray, classes: Sequence[str], unknown_weight: float, multi_weight: float, balanced: bool = True
) -> dict[int, float]:
    """Class index → weight: balanced ``N / (C · n_c)`` (sklearn's formula) times ``Unknown`` × unknown_weight and
    multi classes (``MultiAnt``, ``Multi`` and, unlike anTraX, ``multi``) × multi_weight."""
    counts = np.bincount(labels, minlength=len(classes)).astype(float)
    present = counts > 0
    out = {}
    for i, c in enumerate(classes):
        w = float(counts.sum() / (present.sum() * counts[i])) if (balanced and counts[i] > 0) else 1.0
        if c == UNKNOWN:
            w *= unknown_weight
        if c in MULTI_CLASSES:
            w *= multi_weight
        out[i] = w
    return out


# --------------------------------------------------------------------------------------------------------------------
# TF helpers


def configure_threads(threads: int | None) -> None:
    """Pass the job's thread allocation to TF (intra- and inter-op pools); must run before TF executes anything."""
    if not threads:
        return
    import tensorflow as tf

    threads = int(threads)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        cur = tf.config.threading.get_intra_op_parallelism_threads()
        if cur != threads:
            log.warning("TF is already initialised with %s intra-op threads; cannot change to %s", cur, threads)


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


def _tracklet_draws(idx: np.ndarray, keys: Sequence[str], y: np.ndarray, k: int, epochs: int, epoch_len: int,
                    seed: int) -> np.ndarray:
    """Indices (into the full example list) for ``epochs`` epochs of ``epoch_len`` each: per epoch, k frames of every
    (tracklet, label) group (without replacement where it has ≥ k), topped up / cut to ``epoch_len``, shuffled."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, int], list[int]] = {}
    for i in idx:
        groups.setdefault((keys[int(i)], int(y[int(i)])), []).append(int(i))
    members = [np.array(g) for g in groups.values()]
    out = []
    for _ in range(epochs):
        draw = np.concatenate([rng.choice(g, k, replace=len(g) < k) for g in members])
        rng.shuffle(draw)
        if len(draw) < epoch_len:
            draw = np.concatenate([draw, rng.choice(draw, epoch_len - len(draw))])
        out.append(draw[:epoch_len])
    return np.concatenate(out)


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


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------------------------------------------------
# The training entry point


def default_target_size(examples: Sequence[Example]) -> int:
    """anTraX's rule: the larger side of the first example (sorted label, then file name)."""
    img = read_example_image(examples[0].path)
    return int(max(img.shape[:2]))


def train_classifier(
    classdir: str | os.PathLike,
    name: str = "classifier",
    scratch: bool = False,
    epochs: int | None = None,
    arch: str | None = None,
    target_size: int | None = None,
    hsymmetry: bool = False,
    aug_options: AugOptions | Mapping | str | None = None,
    modelfile: str | os.PathLike | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    batch_size: int = 32,
    progress: Callable[[str], None] | None = None,
    threads: int | None = None,
    *,
    recipe: str = "default",
    output: str | os.PathLike | None = None,
    examples: Sequence[Example] | None = None,
    patience: int | None = None,
    learning_rate: float | None = None,
    steps_per_epoch: int | None = None,
    unknown_weight: float | None = None,
    multi_weight: float = 0.1,
    class_weighting: str = "balanced",
    crop_size: int | None = None,
    background: str = "white",
    bn_momentum: float | None = None,
    label_smoothing: float | None = None,
    frames_per_tracklet: int | None = None,
    calibrate: bool | str | None = None,
    lr_schedule: str | None = None,
    gate_penalty: float | None = None,
) -> ClassifierCard:
    """Train ``<classdir>/<name>.h5`` (or ``output``) on ``<classdir>/examples`` and return the saved card.

    ``classdir`` may be an experiment dir (→ latest session's ``classifier/``). Incremental unless ``scratch`` or no
    model exists yet; when continuing, ``arch``/``target_size``/``hsymmetry``/``crop_size``/``background``/``modelfile``
    come from the stored model (differences are logged). ``examples`` overrides the examples used (e.g. to leave an
    experiment out). ``progress`` receives one line per epoch and per phase (default: this module's logger).
    ``arch``/``epochs``/``val_fraction``/``steps_per_epoch``/``unknown_weight``/``patience``/``frames_per_tracklet``/
    ``lr_schedule``/``aug_options``/``calibrate`` default per recipe (see the module doc; ``arch`` None → ``tagnet``,
    or ``small`` for ``recipe='antrax'``). ``label_smoothing`` (default 0) caps the softmax below anTraX's 0.99 gate
    for short tracklets — measured worse. ``gate_penalty``: cost of a wrong / non-ID assignment, in right
    assignments, when ``calibrate='gates'`` picks the temperature.
    ``learning_rate``: Adam's initial rate for a new model (default 1e-3); a continued model keeps its stored
    optimizer (rate and state) unless a rate is given.
    """
    say = progress or log.info
    if recipe not in RECIPES:
        raise ValueError(f"unknown training recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if class_weighting not in ("balanced", "none"):
        raise ValueError(f"class_weighting must be 'balanced' or 'none', got {class_weighting!r}")
    if background not in ("white", "black"):
        raise ValueError(f"background must be 'white' or 'black', got {background!r}")
    is_antrax = recipe == "antrax"
    epochs = int(epochs if epochs is not None else (5 if is_antrax else 30))
    val_fraction = float(val_fraction if val_fraction is not None else (0.0 if is_antrax else 0.2))
    unknown_weight = float(unknown_weight if unknown_weight is not None else (20.0 if is_antrax else 1.0))
    if steps_per_epoch is None and is_antrax:
        steps_per_epoch = 1000
    label_smoothing = float(label_smoothing if label_smoothing is not None else 0.0)
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    arch = arch or ("small" if is_antrax else DEFAULT_ARCH)
    patience = int(patience if patience is not None else (10 if is_antrax else DEFAULT_PATIENCE))
    if frames_per_tracklet is None and not is_antrax:
        frames_per_tracklet = DEFAULT_FRAMES_PER_TRACKLET
    if frames_per_tracklet is not None and int(frames_per_tracklet) < 1:
        raise ValueError(f"frames_per_tracklet must be ≥ 1, got {frames_per_tracklet}")
    calibrate = calibrate if calibrate is not None else False  # measured: adds variance (module doc)
    gate_penalty = float(gate_penalty if gate_penalty is not None else DEFAULT_GATE_PENALTY)
    if not gate_penalty > 0:
        raise ValueError(f"gate_penalty must be > 0, got {gate_penalty}")
    if calibrate not in (True, False, "gates", "nll"):
        raise ValueError(f"calibrate must be true/false, 'gates' or 'nll', got {calibrate!r}")
    lr_schedule = lr_schedule or ("plateau" if is_antrax else DEFAULT_LR_SCHEDULE)
    if lr_schedule not in ("plateau", "cosine"):
        raise ValueError(f"lr_schedule must be 'plateau' or 'cosine', got {lr_schedule!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be ≥ 1 (got {epochs}, {batch_size})")
    aug = _recipe_aug(aug_options, is_antrax)

    # ---- trainset ------------------------------------------------------------------------------------------------
    classdir = resolve_classdir(classdir)
    if examples is None:
        ex_dir = examples_dir_of(classdir)
        scan = scan_examples_dir(ex_dir)
        for what, items in (("label dir(s) without images", scan.empty_dirs), ("stray file(s)", scan.stray_files)):
            if items:
                say(f"warning: {ex_dir}: ignoring {what}: {', '.join(items)}")
        examples = list_examples(classdir, scan.classes)
    examples = list(examples)
    classes = sorted({ex.label for ex in examples})
    if len(classes) < 2:
        raise TrainsetError(
            f"{classdir}: training needs example images of at least 2 labels, found "
            f"{len(classes)} ({', '.join(classes) or 'no images at all'}) under examples/"
        )
    thash = manifest_hash(manifest_of(examples, classdir))
    model_path = Path(output) if output is not None else Path(classdir) / f"{name}.h5"

    # ---- TF setup ------------------------------------------------------------------------------------------------
    t0 = time.time()
    import keras
    import tensorflow as tf

    configure_threads(threads)
    keras.utils.set_random_seed(seed)

    # ---- split (by tracklet) --------------------------------------------------------------------------------------
    y_all = np.array([classes.index(ex.label) for ex in examples], dtype=np.int64)
    keys_all = [ex.tracklet_key for ex in examples]
    tr_idx, va_idx, split_warn = grouped_split(examples, val_fraction, seed)
    for w in split_warn:
        say(f"warning: {w}")
    if frames_per_tracklet and not is_antrax:
        n_trk = len({(keys_all[i], int(y_all[i])) for i in tr_idx})
        steps_per_epoch = steps_per_epoch or max(1, math.ceil(n_trk * int(frames_per_tracklet) / batch_size))
    steps = steps_per_epoch or math.ceil(len(tr_idx) / batch_size)
    if bn_momentum is None:  # moving-average horizon 1/(1-m) ≈ a quarter of an epoch (Keras' 0.99 needs ≥400 steps)
        bn_momentum = 0.99 if is_antrax else float(np.clip(1 - 4 / max(steps, 1), 0.5, 0.99))

    # ---- model: continue or new ----------------------------------------------------------------------------------
    incremental = model_path.exists() and not scratch
    previous: ClassifierCard | None = None
    if incremental:
        try:
            previous = read_card(model_path)
        except ClassifierFileError as exc:
            if "untrained" not in str(exc):
                raise
            say(f"{model_path} is an untrained classifier; training a new model")
            incremental = False
    if incremental:
        assert previous is not None
        if previous.classes != classes:
            added = [c for c in classes if c not in previous.classes]
            removed = [c for c in previous.classes if c not in classes]
            raise ClassListChangedError(
                f"{model_path}: the labels in {classdir}/examples differ from the classifier's classes "
                f"(new: {', '.join(added) or '-'}; gone: {', '.join(removed) or '-'}"
                f"{'; same labels, different order' if not added and not removed else ''}). "
                f"Use scratch=True (--scratch) to train a new model."
            )
        model, previous = load_classifier(model_path, compile=not is_antrax)
        spec = previous.preprocess_spec()
        for what, given, stored in (
            ("arch", arch, previous.arch),
            ("target_size", target_size, previous.target_size),
            ("hsymmetry", hsymmetry, previous.hsymmetry),
        ):
            if given is not None and given != stored and not (what == "hsymmetry" and given is False):
                say(f"note: continuing {model_path}: {what}={given!r} ignored, the model has {what}={stored!r}")
        arch, hsymmetry = previous.arch, previous.hsymmetry
        normalize = previous.training.get("normalization", "in_model") == "in_model"
        if is_antrax:  # anTraX recompiled before every fit: fresh Adam
            model.compile(optimizer=keras.optimizers.Adam(learning_rate or 1e-3), loss="categorical_crossentropy",
                          metrics=["accuracy"])
        else:
            if learning_rate is not None:
                model.optimizer.learning_rate.assign(learning_rate)
            if label_smoothing:  # the stored compile config has plain cross-entropy; keep the optimizer (and state)
                model.compile(optimizer=model.optimizer,
                              loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                              metrics=["accuracy"])
        prev_t = float(previous.training.get("temperature") or 1.0)
        if prev_t != 1.0:  # train on the uncalibrated logits; calibrated again below
            _fold_temperature(model, 1.0 / prev_t)
        say(f"continuing {model_path} ({arch}, T={spec.target_size}, {len(classes)} classes)")
    else:
        from .nets import build_model

        if not target_size and arch == "custom" and modelfile:  # the user's model decides its input size
            from .nets import custom_model_input_size

            target_size = custom_model_input_size(modelfile)
        t = int(target_size) if target_size else (default_target_size(examples) if is_antrax else DEFAULT_TARGET_SIZE)
        spec = PreprocessSpec(target_size=t, crop_size=crop_size, background=background)
        normalize = not is_antrax
        model = build_model(arch, len(classes), t, modelfile=modelfile, normalize=normalize,
                            bn_momentum=bn_momentum)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate or 1e-3),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                      metrics=["accuracy"])
        say(f"new {arch} model, T={t}, {len(classes)} classes, {model.count_params():,} parameters")

    # ---- data ----------------------------------------------------------------------------------------------------

    say(f"loading {len(examples)} images ({len(set(keys_all))} tracklets) at T={spec.target_size}")
    x_all = load_example_images(examples, spec)
    x_tr, y_tr = x_all[tr_idx], y_all[tr_idx]
    x_va, y_va = x_all[va_idx], y_all[va_idx]
    del x_all  # the two copies above are all that is needed (uint8: 29k images at T=64 ≈ 360 MB)
    has_val = len(va_idx) > 0
    cw = class_weights(y_tr, classes, unknown_weight, multi_weight, balanced=class_weighting == "balanced")
    w_tr = np.array([cw[int(c)] for c in y_tr], dtype=np.float32)
    n_classes = len(classes)
    say(
        f"train: {len(tr_idx)} images / {len({keys_all[i] for i in tr_idx})} tracklets; "
        f"validation: {len(va_idx)} images / {len({keys_all[i] for i in va_idx})} tracklets"
    )

    fill = 255.0 if spec.background == "white" else 0.0
    augment = _make_augmenter(aug, spec.target_size, hsymmetry, fill, seed)
    opts = tf.data.Options()
    if threads:
        opts.threading.private_threadpool_size = int(threads)

    def _train_map(xb, yb, wb):
        return augment(tf.cast(xb, tf.float32)), tf.one_hot(yb, n_classes), wb

    if frames_per_tracklet and not is_antrax:
        # Each epoch draws ``frames_per_tracklet`` frames of every training tracklet afresh (with replacement only
        # for shorter tracklets): frames of a tracklet are near-duplicates, so this weights tracklets, not images,
        # and shows the model different frames every epoch at a fixed, small epoch cost.
        order = _tracklet_draws(tr_idx, keys_all, y_all, int(frames_per_tracklet), epochs, steps * batch_size, seed)
        x_const = tf.constant(x_tr)
        pos = {int(g): j for j, g in enumerate(tr_idx)}
        order = np.array([pos[int(g)] for g in order], dtype=np.int64)
        cw = class_weights(y_tr[order[: steps * batch_size]], classes, unknown_weight, multi_weight,
                           balanced=class_weighting == "balanced")
        w_tr = np.array([cw[int(c)] for c in y_tr], dtype=np.float32)
        y_const, w_const = tf.constant(y_tr), tf.constant(w_tr)

        def _draw_map(ib):
            return _train_map(tf.gather(x_const, ib), tf.gather(y_const, ib), tf.gather(w_const, ib))

        ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(_draw_map,
                                                                               num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.prefetch(2).with_options(opts)
        steps_per_epoch = steps
    else:
        ds = tf.data.Dataset.from_tensor_slices((x_tr, y_tr, w_tr)).shuffle(len(x_tr), seed=seed,
                                                                            reshuffle_each_iteration=True)
        if steps_per_epoch:
            ds = ds.repeat()
        ds = ds.batch(batch_size).map(_train_map, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2).with_options(opts)
    val_ds = None
    if has_val:
        w_va = np.array([cw[int(c)] for c in y_va], dtype=np.float32)
        if frames_per_tracklet and not is_antrax:
            # each validation tracklet weighs the same (else one 400-frame tracklet flipping swings the loss)
            n_of: dict[tuple[str, int], int] = {}
            for i in va_idx:
                n_of[(keys_all[i], int(y_all[i]))] = n_of.get((keys_all[i], int(y_all[i])), 0) + 1
            per = np.array([n_of[(keys_all[i], int(y_all[i]))] for i in va_idx], dtype=np.float32)
            w_va = w_va * (len(va_idx) / len(n_of)) / per
        val_ds = (
            tf.data.Dataset.from_tensor_slices((x_va, y_va, w_va))
            .batch(256)
            .map(lambda xb, yb, wb: (tf.cast(xb, tf.float32), tf.one_hot(yb, n_classes), wb))
            .with_options(opts)
        )

    # ---- fit -----------------------------------------------------------------------------------------------------
    monitor = "val_loss" if (has_val and not is_antrax) else "loss"
    if is_antrax:
        stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=10, min_delta=0.002)
        plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=5, min_lr=1e-4)
    else:
        stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True)
        if lr_schedule == "cosine":  # a fixed schedule: the validation loss is too noisy early on to steer the rate
            # a continued model's optimizer ends at the bottom of its last cosine: restart from that run's peak rate
            lr_start = float(learning_rate or (previous.training.get("learning_rate") if previous else None)
                             or keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            model.optimizer.learning_rate.assign(lr_start)
            plateau = keras.callbacks.LearningRateScheduler(
                lambda e, lr: lr_start * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * e / epochs))))
        else:
            plateau = keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5,
                                                        patience=max(1, patience // 2), min_lr=1e-5)
    history: list[dict] = []
    epoch_t = [time.time()]

    def _on_epoch_begin(epoch, logs=None):
        epoch_t[0] = time.time()

    def _on_epoch_end(epoch, logs=None):
        logs = dict(logs or {})
        lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if k != "learning_rate"},
               "learning_rate": lr, "seconds": round(time.time() - epoch_t[0], 2)}
        history.append(row)
        parts = [f"{k} {_fmt(row[k])}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in row]
        say(f"epoch {epoch + 1}/{epochs}: " + ", ".join(parts) + f", lr {lr:.2g} ({row['seconds']:.1f} s)")

    progress_cb = keras.callbacks.LambdaCallback(on_epoch_begin=_on_epoch_begin, on_epoch_end=_on_epoch_end)
    lr0 = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    fit_t = time.time()
    model.fit(
        ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        callbacks=[stopper, plateau, progress_cb],
        shuffle=False,
        verbose=0,
    )
    fit_seconds = time.time() - fit_t
    best_epoch = int(getattr(stopper, "best_epoch", len(history) - 1)) + 1 if not is_antrax else len(history)
    if not is_antrax:
        say(f"best epoch {best_epoch} ({monitor}); weights of that epoch kept")

    # ---- calibrate -----------------------------------------------------------------------------------------------
    temperature = 1.0
    calibration: dict = {}
    if calibrate and has_val and not is_antrax:
        p_va = _predict(model, x_va)
        k_va = [keys_all[i] for i in va_idx]
        if calibrate == "nll":
            temperature = fit_temperature(p_va, y_va)
        else:
            temperature, _ = fit_gate_temperature(p_va, y_va, k_va, classes, penalty=gate_penalty)
        calibration = {"method": "gates" if calibrate != "nll" else "nll", "temperature": temperature,
                       "penalty": gate_penalty if calibrate != "nll" else None,
                       "before": gate_outcomes(p_va, y_va, k_va, classes),
                       "after": gate_outcomes(temper_probs(p_va, temperature).astype(np.float32), y_va, k_va, classes),
                       "nll_before": _nll(p_va, y_va), "nll_after": _nll(temper_probs(p_va, temperature), y_va)}
        if temperature != 1.0 and _fold_temperature(model, temperature):
            say(f"calibrated ({calibration['method']}): softmax temperature {temperature:.3g}, folded into the output "
                f"layer; validation tracklets {calibration['before']} → {calibration['after']}")
        else:
            calibration["applied"] = False  # t = 1, or a model that does not end in a softmax Dense layer
            temperature = 1.0

    # ---- evaluate ------------------------------------------------------------------------------------------------
    metrics: dict = {}
    if has_val:
        val = evaluate_split(_predict(model, x_va), y_va, [keys_all[i] for i in va_idx], classes)
        val.update({"split": "tracklet", "val_fraction": val_fraction, "seed": seed,
                    "val_tracklets": sorted({keys_all[i] for i in va_idx})})
        metrics["validation"] = val
        if calibration:
            metrics["calibration"] = calibration
        say(
            f"validation (held-out tracklets): image accuracy {_fmt(val['image_accuracy'])}, "
            f"tracklet accuracy {_fmt(val['tracklet_accuracy'])} "
            f"({val['n_tracklets']} tracklets), balanced {_fmt(val['tracklet_balanced_accuracy'])}"
        )

    # ---- card + save ---------------------------------------------------------------------------------------------
    counts = {
        c: {"images": int((y_all == i).sum()), "tracklets": len({keys_all[j] for j in np.flatnonzero(y_all == i)})}
        for i, c in enumerate(classes)
    }
    training = {
        "recipe": recipe,
        "normalization": "in_model" if normalize else "none",
        "incremental": bool(incremental),
        "epochs": epochs,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "monitor": monitor,
        "patience": patience if not is_antrax else 10,
        "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch,
        "bn_momentum": round(bn_momentum, 4) if not incremental else None,
        "label_smoothing": label_smoothing,
        "lr_schedule": lr_schedule if not is_antrax else "plateau(loss)",
        "frames_per_tracklet": int(frames_per_tracklet) if frames_per_tracklet else None,
        "temperature": round(temperature, 6),
        "learning_rate": lr0,
        "seed": seed,
        "val_fraction": val_fraction,
        "class_weighting": class_weighting,
        "class_weights": {classes[i]: round(w, 6) for i, w in cw.items()},
        "unknown_weight": unknown_weight,
        "multi_weight": multi_weight,
        "aug_options": aug.to_dict(),
        "modelfile": str(modelfile) if modelfile and not incremental else (previous.training.get("modelfile")
                                                                            if previous else None),
        "counts": counts,
        "n_train_images": int(len(tr_idx)),
        "n_val_images": int(len(va_idx)),
        "threads": threads,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_seconds, 1),
        "total_seconds": round(time.time() - t0, 1),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    if previous is not None:
        prev = {k: v for k, v in previous.training.items() if k != "previous_runs"}
        prev["trainset_hash"] = previous.trainset_hash
        pv = previous.metrics.get("validation", {})
        prev["validation"] = {k: pv.get(k) for k in ("image_accuracy", "tracklet_accuracy") if k in pv}
        training["previous_runs"] = [*previous.training.get("previous_runs", []), prev]
    card = ClassifierCard(
        classes=list(classes),
        target_size=spec.target_size,
        arch=arch,
        background=spec.background,
        hsymmetry=bool(hsymmetry),
        preprocessing=spec.to_dict(),
        training=training,
        trainset_hash=thash,
        metrics=metrics,
        name=name,
        crop_size=spec.crop_size,
        unknown_weight=unknown_weight,
        multi_weight=multi_weight,
        history=history,
    )
    if previous is not None:  # keep inference settings of the continued classifier
        for f in ("use_min_conf", "consv_factor", "min_conf", "min_conf_short", "scale"):
            setattr(card, f, getattr(previous, f))
    save_classifier(model_path, model, card)
    say(f"saved {model_path}")
    return card
