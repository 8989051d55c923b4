"""The Keras callbacks of a training run: early stopping, the learning-rate schedule, and one progress line (and one
history row) per epoch.

Default recipe: early stopping on the validation loss (the training loss without validation) with the best weights
restored, and a cosine schedule (a fixed one: the validation loss is too noisy early on to steer the rate) or, with
``lr_schedule='plateau'``, ReduceLROnPlateau. anTraX's recipe: both on the training loss, with anTraX's settings.
BatchNormalization's momentum is set when the network is built (:func:`~antrax_pipe.training.options.epoch_plan`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..model import ClassifierCard
from .evaluation import _fmt
from .options import TrainOptions


def monitor_of(opts: TrainOptions, has_val: bool) -> str:
    """The quantity early stopping (and the plateau schedule) watch."""
    return "val_loss" if (has_val and not opts.is_antrax) else "loss"


def stopping_and_schedule(model, opts: TrainOptions, monitor: str, previous: ClassifierCard | None) -> tuple:
    """(EarlyStopping, learning-rate callback). The cosine schedule sets the model's rate to its start value now."""
    import keras

    if opts.is_antrax:
        stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=10, min_delta=0.002)
        plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=5, min_lr=1e-4)
        return stopper, plateau
    stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=opts.patience, restore_best_weights=True)
    if opts.lr_schedule == "cosine":
        # a continued model's optimizer ends at the bottom of its last cosine: restart from that run's peak rate
        lr_start = float(opts.learning_rate or (previous.training.get("learning_rate") if previous else None)
                         or keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        model.optimizer.learning_rate.assign(lr_start)
        epochs = opts.epochs
        schedule = keras.callbacks.LearningRateScheduler(
            lambda e, lr: lr_start * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * e / epochs))))
    else:
        schedule = keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5,
                                                     patience=max(1, opts.patience // 2), min_lr=1e-5)
    return stopper, schedule


def progress_callback(model, epochs: int, history: list[dict], say: Callable[[str], None]):
    """A callback that appends one row per epoch to ``history`` (Keras' logs, the learning rate, the epoch's seconds)
    and says it as one line."""
    import keras

    epoch_t = [time.time()]

    def on_epoch_begin(epoch, logs=None):
        epoch_t[0] = time.time()

    def on_epoch_end(epoch, logs=None):
        logs = dict(logs or {})
        lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if k != "learning_rate"},
               "learning_rate": lr, "seconds": round(time.time() - epoch_t[0], 2)}
        history.append(row)
        parts = [f"{k} {_fmt(row[k])}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in row]
        say(f"epoch {epoch + 1}/{epochs}: " + ", ".join(parts) + f", lr {lr:.2g} ({row['seconds']:.1f} s)")

    return keras.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end)
