"""The data a training run sees: the examples, their split by tracklet, class weights, and the tf.data pipelines.

Pure numpy up to :func:`make_datasets`, which builds the TensorFlow pipelines (TensorFlow is imported there).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.examples import Example, examples_dir_of, list_examples, scan_examples_dir
from ..io.experiment import resolve_classdir
from ..model import MULTI_CLASSES, UNKNOWN, PreprocessSpec, TrainsetError
from ..trainset import load_example_images
from .augment import _make_augmenter
from .options import TrainOptions

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


# --------------------------------------------------------------------------------------------------------------------
# The trainset and its split


def collect_examples(
    classdir: str | os.PathLike, examples: Sequence[Example] | None, say: Callable[[str], None]
) -> tuple[Path, list[Example], list[str]]:
    """(classdir, examples, sorted classes): ``examples`` as given, else the classdir's ``examples/`` (empty label
    dirs and stray files are warned about and ignored). Fewer than 2 labels is a :class:`TrainsetError`."""
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
    return classdir, examples, classes


@dataclass(frozen=True)
class Split:
    """The examples' class indices and tracklet keys, and which examples train / validate."""

    classes: list[str]
    y: np.ndarray
    keys: list[str]
    train: np.ndarray
    val: np.ndarray

    @property
    def has_val(self) -> bool:
        return len(self.val) > 0

    def n_tracklets(self, idx: np.ndarray) -> int:
        return len({self.keys[i] for i in idx})

    def n_train_groups(self) -> int:
        """Training (tracklet, label) groups: what one epoch of tracklet draws visits."""
        return len({(self.keys[i], int(self.y[i])) for i in self.train})


def split_examples(examples: Sequence[Example], classes: list[str], val_fraction: float, seed: int,
                   say: Callable[[str], None]) -> Split:
    """:func:`grouped_split` of the examples, its warnings said."""
    y = np.array([classes.index(ex.label) for ex in examples], dtype=np.int64)
    keys = [ex.tracklet_key for ex in examples]
    tr_idx, va_idx, warnings = grouped_split(examples, val_fraction, seed)
    for w in warnings:
        say(f"warning: {w}")
    return Split(classes, y, keys, tr_idx, va_idx)


# --------------------------------------------------------------------------------------------------------------------
# tf.data pipelines


@dataclass
class Datasets:
    """The training and validation pipelines, the class weights they apply, and the validation images."""

    train: object  # tf.data.Dataset
    val: object | None
    class_weights: dict[int, float]
    x_val: np.ndarray
    y_val: np.ndarray


def _weights_of(y: np.ndarray, split: Split, opts: TrainOptions) -> dict[int, float]:
    return class_weights(y, split.classes, opts.unknown_weight, opts.multi_weight,
                         balanced=opts.class_weighting == "balanced")


def make_datasets(examples: Sequence[Example], split: Split, spec: PreprocessSpec, opts: TrainOptions,
                  hsymmetry: bool, steps: int, say: Callable[[str], None]) -> Datasets:
    """Load the images at ``spec`` and build the augmented training pipeline (tracklet draws or shuffled images) and
    the validation pipeline."""
    import tensorflow as tf

    say(f"loading {len(examples)} images ({len(set(split.keys))} tracklets) at T={spec.target_size}")
    x_all = load_example_images(examples, spec)
    x_tr, y_tr = x_all[split.train], split.y[split.train]
    x_va, y_va = x_all[split.val], split.y[split.val]
    del x_all  # the two copies above are all that is needed (uint8: 29k images at T=64 ≈ 360 MB)
    cw = _weights_of(y_tr, split, opts)
    say(
        f"train: {len(split.train)} images / {split.n_tracklets(split.train)} tracklets; "
        f"validation: {len(split.val)} images / {split.n_tracklets(split.val)} tracklets"
    )
    fill = 255.0 if spec.background == "white" else 0.0
    augment = _make_augmenter(opts.aug_options, spec.target_size, hsymmetry, fill, opts.seed)
    tf_opts = tf.data.Options()
    if opts.threads:
        tf_opts.threading.private_threadpool_size = int(opts.threads)
    n_classes = len(split.classes)

    def train_map(xb, yb, wb):
        return augment(tf.cast(xb, tf.float32)), tf.one_hot(yb, n_classes), wb

    if opts.draws_tracklets:
        ds, cw = _draw_dataset(x_tr, y_tr, split, opts, steps, train_map)
        ds = ds.with_options(tf_opts)
    else:
        w_tr = np.array([cw[int(c)] for c in y_tr], dtype=np.float32)
        ds = tf.data.Dataset.from_tensor_slices((x_tr, y_tr, w_tr)).shuffle(len(x_tr), seed=opts.seed,
                                                                            reshuffle_each_iteration=True)
        if opts.steps_per_epoch:
            ds = ds.repeat()
        ds = ds.batch(opts.batch_size).map(train_map, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
        ds = ds.with_options(tf_opts)
    val_ds = _val_dataset(x_va, y_va, split, opts, cw, n_classes).with_options(tf_opts) if split.has_val else None
    return Datasets(ds, val_ds, cw, x_va, y_va)


def _draw_dataset(x_tr: np.ndarray, y_tr: np.ndarray, split: Split, opts: TrainOptions, steps: int,
                  train_map: Callable):
    """(pipeline, class weights over the draws). Each epoch draws ``frames_per_tracklet`` frames of every training
    tracklet afresh (with replacement only for shorter tracklets): frames of a tracklet are near-duplicates, so this
    weights tracklets, not images, and shows the model different frames every epoch at a fixed, small epoch cost."""
    import tensorflow as tf

    epoch_len = steps * opts.batch_size
    order = _tracklet_draws(split.train, split.keys, split.y, int(opts.frames_per_tracklet), opts.epochs, epoch_len,
                            opts.seed)
    x_const = tf.constant(x_tr)
    pos = {int(g): j for j, g in enumerate(split.train)}
    order = np.array([pos[int(g)] for g in order], dtype=np.int64)
    cw = _weights_of(y_tr[order[:epoch_len]], split, opts)
    w_tr = np.array([cw[int(c)] for c in y_tr], dtype=np.float32)
    y_const, w_const = tf.constant(y_tr), tf.constant(w_tr)

    def draw_map(ib):
        return train_map(tf.gather(x_const, ib), tf.gather(y_const, ib), tf.gather(w_const, ib))

    ds = tf.data.Dataset.from_tensor_slices(order).batch(opts.batch_size).map(draw_map,
                                                                                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(2), cw


def _val_dataset(x_va: np.ndarray, y_va: np.ndarray, split: Split, opts: TrainOptions, cw: dict[int, float],
                 n_classes: int):
    import tensorflow as tf

    w_va = np.array([cw[int(c)] for c in y_va], dtype=np.float32)
    if opts.draws_tracklets:
        # each validation tracklet weighs the same (else one 400-frame tracklet flipping swings the loss)
        keys, y, va_idx = split.keys, split.y, split.val
        n_of: dict[tuple[str, int], int] = {}
        for i in va_idx:
            n_of[(keys[i], int(y[i]))] = n_of.get((keys[i], int(y[i])), 0) + 1
        per = np.array([n_of[(keys[i], int(y[i]))] for i in va_idx], dtype=np.float32)
        w_va = w_va * (len(va_idx) / len(n_of)) / per
    return (
        tf.data.Dataset.from_tensor_slices((x_va, y_va, w_va))
        .batch(256)
        .map(lambda xb, yb, wb: (tf.cast(xb, tf.float32), tf.one_hot(yb, n_classes), wb))
    )
