"""The classifier card a training run writes next to its model: what was trained on (classes, counts, trainset hash),
how (every resolved setting, the class weights, the augmentation), what came of it (history, validation metrics,
temperature), and the earlier runs a continued classifier went through."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..classifier import save_classifier
from ..model import ClassifierCard
from .data import Split
from .options import TrainOptions
from .start import Start


@dataclass
class RunResult:
    """What the fit (and the calibration after it) produced."""

    history: list[dict]
    best_epoch: int
    monitor: str
    class_weights: dict[int, float]
    learning_rate: float  # the rate the run started with
    temperature: float
    fit_seconds: float
    weight_average: dict | None = None  # average_epochs: what apply_average did


def _counts(split: Split) -> dict:
    y, keys = split.y, split.keys
    return {
        c: {"images": int((y == i).sum()), "tracklets": len({keys[j] for j in np.flatnonzero(y == i)})}
        for i, c in enumerate(split.classes)
    }


def _previous_runs(previous: ClassifierCard) -> list[dict]:
    """The continued classifier's runs, its latest last (its settings, trainset hash and validation accuracy)."""
    prev = {k: v for k, v in previous.training.items() if k != "previous_runs"}
    prev["trainset_hash"] = previous.trainset_hash
    pv = previous.metrics.get("validation", {})
    prev["validation"] = {k: pv.get(k) for k in ("image_accuracy", "tracklet_accuracy") if k in pv}
    return [*previous.training.get("previous_runs", []), prev]


def training_record(opts: TrainOptions, start: Start, split: Split, run: RunResult, t0: float) -> dict:
    """The card's ``training`` section."""
    import keras
    import tensorflow as tf

    antrax, incremental, previous = opts.is_antrax, start.incremental, start.previous
    cw, classes = run.class_weights, split.classes
    training = {
        "recipe": opts.recipe,
        "normalization": "in_model" if start.normalize else "none",
        "incremental": bool(incremental),
        "epochs": opts.epochs,
        "epochs_run": len(run.history),
        "best_epoch": run.best_epoch,
        "monitor": run.monitor,
        "patience": opts.patience if not antrax else 10,
        "batch_size": opts.batch_size,
        "steps_per_epoch": opts.steps_per_epoch,
        "bn_momentum": round(opts.bn_momentum, 4) if not incremental else None,
        "label_smoothing": opts.label_smoothing,
        "lr_schedule": opts.lr_schedule if not antrax else "plateau(loss)",
        "frames_per_tracklet": int(opts.frames_per_tracklet) if opts.frames_per_tracklet else None,
        "temperature": round(run.temperature, 6),
        "learning_rate": run.learning_rate,
        "seed": opts.seed,
        "val_fraction": opts.val_fraction,
        "class_weighting": opts.class_weighting,
        "class_weights": {classes[i]: round(w, 6) for i, w in cw.items()},
        "unknown_weight": opts.unknown_weight,
        "multi_weight": opts.multi_weight,
        "aug_options": opts.aug_options.to_dict(),
        "modelfile": str(opts.modelfile) if opts.modelfile and not incremental else (
            previous.training.get("modelfile") if previous else None),
        "weights": str(opts.weights) if opts.weights and not incremental else (
            previous.training.get("weights") if previous else None),
        "average_epochs": opts.average_epochs,
        "weight_average": run.weight_average,
        "counts": _counts(split),
        "n_train_images": int(len(split.train)),
        "n_val_images": int(len(split.val)),
        "threads": opts.threads,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fit_seconds": round(run.fit_seconds, 1),
        "total_seconds": round(time.time() - t0, 1),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    if previous is not None:
        training["previous_runs"] = _previous_runs(previous)
    return training


def make_card(name: str, opts: TrainOptions, start: Start, split: Split, run: RunResult, metrics: dict,
              trainset_hash: str, t0: float) -> ClassifierCard:
    """The card of the trained classifier; a continued classifier keeps its inference settings."""
    spec = start.spec
    card = ClassifierCard(
        classes=list(split.classes),
        target_size=spec.target_size,
        arch=start.arch,
        background=spec.background,
        hsymmetry=bool(start.hsymmetry),
        preprocessing=spec.to_dict(),
        training=training_record(opts, start, split, run, t0),
        trainset_hash=trainset_hash,
        metrics=metrics,
        name=name,
        crop_size=spec.crop_size,
        unknown_weight=opts.unknown_weight,
        multi_weight=opts.multi_weight,
        history=run.history,
    )
    if start.previous is not None:  # keep inference settings of the continued classifier
        for f in ("use_min_conf", "consv_factor", "min_conf", "min_conf_short", "scale"):
            setattr(card, f, getattr(start.previous, f))
    return card


def save_card(model_path: Path, model, card: ClassifierCard, say: Callable[[str], None]) -> None:
    save_classifier(model_path, model, card)
    say(f"saved {model_path}")
