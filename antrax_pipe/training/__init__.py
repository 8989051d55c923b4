"""Training the blob classifier, with anTraX's recipe kept for comparison.

:func:`train_classifier` runs the steps; each lives in its own module:

- :mod:`.options` — the recipes (``default`` and ``antrax``; its docstring says why each default-recipe choice was
  made, and how it was measured), :class:`TrainOptions` and the one place that fills in the recipe's defaults,
  :class:`AugOptions` (what ``--aug-options`` may set);
- :mod:`.data` — the examples, their validation split by tracklet (:func:`grouped_split`), class weights, the epochs
  of tracklet draws and the tf.data pipelines; :mod:`.augment` — the augmentation layers;
- :mod:`.start` — continue the saved model (same class list, else :class:`ClassListChangedError`; an earlier
  calibration undone) or build a new one;
- :mod:`.callbacks` — early stopping, the learning-rate schedule, the per-epoch progress line;
- :mod:`.calibration` — the softmax temperature (NLL or anTraX's gates) and folding it into the model;
- :mod:`.evaluation` — per-image and per-tracklet accuracy on the held-out tracklets;
- :mod:`.record` — the classifier card written with the model;
- :mod:`.fit` — :func:`train_classifier` itself.
"""

from __future__ import annotations

from ..model import ClassListChangedError, TrainingError
from .calibration import (
    fit_gate_temperature,
    fit_temperature,
    gate_labelset,
    gate_outcomes,
    temper_probs,
)
from .data import class_weights, grouped_split
from .evaluation import evaluate_split
from .fit import configure_threads, train_classifier
from .options import (
    DEFAULT_ARCH,
    DEFAULT_AUG,
    DEFAULT_FRAMES_PER_TRACKLET,
    DEFAULT_GATE_PENALTY,
    DEFAULT_LR_SCHEDULE,
    DEFAULT_PATIENCE,
    DEFAULT_TARGET_SIZE,
    RECIPES,
    AugOptions,
    TrainOptions,
    parse_aug_options,
    resolve_options,
)
from .start import default_target_size

__all__ = [
    "DEFAULT_ARCH",
    "DEFAULT_AUG",
    "DEFAULT_FRAMES_PER_TRACKLET",
    "DEFAULT_GATE_PENALTY",
    "DEFAULT_LR_SCHEDULE",
    "DEFAULT_PATIENCE",
    "DEFAULT_TARGET_SIZE",
    "RECIPES",
    "AugOptions",
    "ClassListChangedError",
    "TrainOptions",
    "TrainingError",
    "class_weights",
    "configure_threads",
    "default_target_size",
    "evaluate_split",
    "fit_gate_temperature",
    "fit_temperature",
    "gate_labelset",
    "gate_outcomes",
    "grouped_split",
    "parse_aug_options",
    "resolve_options",
    "temper_probs",
    "train_classifier",
]
