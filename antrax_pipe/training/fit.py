"""The training entry point: :func:`train_classifier`, one run from the examples to a saved, carded classifier."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path

from ..io.examples import Example
from ..io.manifest import manifest_hash, manifest_of
from ..model import ClassifierCard
from .calibration import calibrate_model
from .callbacks import BestEpochs, apply_average, best_epochs_callback, monitor_of, progress_callback, \
    stopping_and_schedule
from .data import Datasets, Split, collect_examples, make_datasets, split_examples
from .evaluation import _predict, validation_metrics
from .options import AugOptions, TrainOptions, epoch_plan
from .record import RunResult, make_card, save_card
from .start import Start, start_model

log = logging.getLogger("antrax_pipe.training")

#: train_classifier's parameters that are training settings (the others say where the examples and the model are)
OPTION_NAMES = frozenset(f.name for f in fields(TrainOptions))


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
    weights: str | os.PathLike | None = None,
    average_epochs: int = 0,
) -> ClassifierCard:
    """Train ``<classdir>/<name>.h5`` (or ``output``) on ``<classdir>/examples`` and return the saved card.

    ``classdir`` may be an experiment dir (→ latest session's ``classifier/``). Incremental unless ``scratch`` or no
    model exists yet; when continuing, ``arch``/``target_size``/``hsymmetry``/``crop_size``/``background``/``modelfile``
    come from the stored model (differences are logged). ``examples`` overrides the examples used (e.g. to leave an
    experiment out). ``progress`` receives one line per epoch and per phase (default: this module's logger).
    ``arch``/``epochs``/``val_fraction``/``steps_per_epoch``/``unknown_weight``/``patience``/``frames_per_tracklet``/
    ``lr_schedule``/``aug_options``/``calibrate`` default per recipe (see :mod:`antrax_pipe.training.options`;
    ``arch`` None → ``tagnet``, or ``small`` for ``recipe='antrax'``). ``label_smoothing`` (default 0) caps the softmax
    below anTraX's 0.99 gate for short tracklets — measured worse. ``gate_penalty``: cost of a wrong / non-ID
    assignment, in right assignments, when ``calibrate='gates'`` picks the temperature. ``weights`` (MobileNetV2
    only, new models only): ``'imagenet'`` (default; Keras downloads them on a connected machine), a local weights
    file, or ``'none'`` (random initialisation) — :func:`antrax_pipe.training.options.resolve_weights`.
    ``average_epochs`` k ≥ 2: the mean weights of the k epochs with the lowest validation loss replace the best
    epoch's (:mod:`antrax_pipe.training.callbacks`; default 0 = off).
    ``learning_rate``: Adam's initial rate for a new model (default 1e-3); a continued model keeps its stored
    optimizer (rate and state) unless a rate is given.
    """
    opts = TrainOptions(**{k: v for k, v in locals().items() if k in OPTION_NAMES}).resolved()
    say = progress or log.info
    # 1. the trainset
    classdir, examples, classes = collect_examples(classdir, examples, say)
    thash = manifest_hash(manifest_of(examples, classdir))
    model_path = Path(output) if output is not None else Path(classdir) / f"{name}.h5"
    # 2. TensorFlow: threads and seeds, before anything runs
    t0 = time.time()
    import keras

    configure_threads(opts.threads)
    keras.utils.set_random_seed(opts.seed)
    # 3. the split by tracklet, and the epoch's length (which sets BatchNormalization's momentum)
    split = split_examples(examples, classes, opts.val_fraction, opts.seed, say)
    opts, steps = epoch_plan(opts, split.n_train_groups(), len(split.train))
    # 4. the model: continued or new; 5. the data pipelines; 6. fit
    start = start_model(model_path, classdir, classes, examples, opts, say)
    data = make_datasets(examples, split, start.spec, opts, start.hsymmetry, steps, say)
    run = _fit(start, data, split, opts, say)
    # 7. calibrate (when asked) and evaluate on the held-out tracklets; 8. the card, saved with the model
    metrics = _assess(start, data, split, opts, run, say)
    card = make_card(name, opts, start, split, run, metrics, thash, t0)
    save_card(model_path, start.model, card, say)
    return card


def _assess(start: Start, data: Datasets, split: Split, opts: TrainOptions, run: RunResult,
            say: Callable[[str], None]) -> dict:
    """The card's metrics: the validation results after calibrating (when asked; sets ``run.temperature``)."""
    val_keys = [split.keys[i] for i in split.val]
    calibration: dict = {}
    if opts.calibrate and split.has_val and not opts.is_antrax:
        run.temperature, calibration = calibrate_model(start.model, _predict(start.model, data.x_val), data.y_val,
                                                       val_keys, split.classes, opts, say)
    metrics: dict = {}
    if split.has_val:
        metrics["validation"] = validation_metrics(start.model, data.x_val, data.y_val, val_keys, split.classes,
                                                   opts.val_fraction, opts.seed, say)
        if calibration:
            metrics["calibration"] = calibration
    return metrics


def _fit(start: Start, data: Datasets, split: Split, opts: TrainOptions, say: Callable[[str], None]) -> RunResult:
    """Fit the model (early stopping restores the best epoch's weights, except anTraX's recipe)."""
    import keras

    model = start.model
    monitor = monitor_of(opts, split.has_val)
    stopper, schedule = stopping_and_schedule(model, opts, monitor, start.previous)
    history: list[dict] = []
    progress_cb = progress_callback(model, opts.epochs, history, say)
    callbacks = [stopper, schedule, progress_cb]
    best = BestEpochs(model, opts.average_epochs, monitor) if opts.average_epochs and split.has_val else None
    if best is not None:
        callbacks.append(best_epochs_callback(best))
    lr0 = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    fit_t = time.time()
    model.fit(
        data.train,
        epochs=opts.epochs,
        steps_per_epoch=opts.steps_per_epoch,
        validation_data=data.val,
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )
    fit_seconds = time.time() - fit_t
    if opts.is_antrax:
        best_epoch = len(history)
    else:
        best_epoch = int(getattr(stopper, "best_epoch", len(history) - 1)) + 1
        say(f"best epoch {best_epoch} ({monitor}); weights of that epoch kept")
    run = RunResult(history, best_epoch, monitor, data.class_weights, lr0, 1.0, fit_seconds)
    if best is not None:
        run.weight_average = apply_average(model, best, data.val, say)
    return run
