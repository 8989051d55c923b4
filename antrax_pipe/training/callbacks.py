"""The Keras callbacks of a training run: early stopping, the learning-rate schedule, and one progress line (and one
history row) per epoch.

Default recipe: early stopping on the validation loss (the training loss without validation) with the best weights
restored, and a cosine schedule (a fixed one: the validation loss is too noisy early on to steer the rate) or, with
``lr_schedule='plateau'``, ReduceLROnPlateau. anTraX's recipe: both on the training loss, with anTraX's settings.
BatchNormalization's momentum is set when the network is built (:func:`~antrax_pipe.training.options.epoch_plan`).

``average_epochs`` k ≥ 2 (not by default): :class:`BestEpochs` keeps the weights of the k epochs with the lowest
monitored loss; after the fit their mean (every variable, BatchNormalization statistics included) replaces the best
epoch's weights (:func:`apply_average`) — always, as stochastic weight averaging does: choosing between the two on
~70 validation tracklets would add the selection noise session 2 measured for calibration. Both validation losses
go into the card.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

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


class BestEpochs:
    """A Keras callback (built by :func:`best_epochs_callback`) keeping the weights of the ``k`` epochs with the
    lowest ``monitor`` value: ``snapshots`` = [(value, epoch 0-based, weights)], best first."""

    def __init__(self, model, k: int, monitor: str):
        self.model, self.k, self.monitor = model, int(k), monitor
        self.snapshots: list[tuple[float, int, list[np.ndarray]]] = []

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get(self.monitor)
        if v is None or not math.isfinite(float(v)):
            return
        self.snapshots.append((float(v), epoch, [np.array(w) for w in self.model.get_weights()]))
        self.snapshots.sort(key=lambda s: (s[0], s[1]))
        del self.snapshots[self.k:]

    def mean(self) -> list[np.ndarray]:
        ws = [s[2] for s in self.snapshots]
        return [np.mean([w[i] for w in ws], axis=0).astype(ws[0][i].dtype) for i in range(len(ws[0]))]


def best_epochs_callback(best: BestEpochs):
    import keras

    return keras.callbacks.LambdaCallback(on_epoch_end=best.on_epoch_end)


def apply_average(model, best: BestEpochs, val_data, say: Callable[[str], None]) -> dict:
    """Replace the model's (best-epoch) weights by the mean of the kept epochs'; returns what was done (card)."""
    if len(best.snapshots) < 2:
        return {}
    best_loss = best.snapshots[0][0]
    model.set_weights(best.mean())
    epochs = sorted(s[1] + 1 for s in best.snapshots)
    out = {"epochs": epochs, "best_val_loss": round(best_loss, 6)}
    if val_data is not None:
        out["val_loss"] = round(float(np.atleast_1d(model.evaluate(val_data, verbose=0))[0]), 6)
    say(f"weights = mean of epochs {epochs} ({best.monitor} {out.get('val_loss', float('nan')):.4f}; "
        f"best single epoch {best_loss:.4f})")
    return out
