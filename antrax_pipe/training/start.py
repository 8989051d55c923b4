"""Start or continue: the model a training run trains on.

An existing (trained) classifier is continued unless ``scratch``: it keeps its architecture, input size, flips and
preprocessing, and, for the default recipe, its optimizer state; a softmax temperature folded into it by an earlier
calibration is undone first. Its class list must equal the examples' labels (else
:class:`~antrax_pipe.model.ClassListChangedError`: a class added to a trained model would start far behind the
others). Otherwise a new network is built by :func:`antrax_pipe.nets.build_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..classifier import load_classifier
from ..io.classifier import read_card
from ..io.examples import Example, read_example_image
from ..model import (
    ClassifierCard,
    ClassifierFileError,
    ClassListChangedError,
    PreprocessSpec,
)
from ..nets import build_model, custom_model_input_size
from .calibration import _fold_temperature
from .options import DEFAULT_TARGET_SIZE, TrainOptions


def default_target_size(examples: Sequence[Example]) -> int:
    """anTraX's rule: the larger side of the first example (sorted label, then file name)."""
    img = read_example_image(examples[0].path)
    return int(max(img.shape[:2]))


@dataclass
class Start:
    """The model to train, and what it fixes: preprocessing, architecture, flips, input normalisation; ``previous``
    is the continued classifier's card (None for a new model)."""

    model: object  # keras.Model
    spec: PreprocessSpec
    arch: str
    hsymmetry: bool
    normalize: bool
    previous: ClassifierCard | None = None

    @property
    def incremental(self) -> bool:
        return self.previous is not None


def _previous_card(model_path: Path, scratch: bool, say: Callable[[str], None]) -> ClassifierCard | None:
    """The card of the classifier to continue: None when ``scratch``, when there is none, or when it is untrained."""
    if not model_path.exists() or scratch:
        return None
    try:
        return read_card(model_path)
    except ClassifierFileError as exc:
        if "untrained" not in str(exc):
            raise
        say(f"{model_path} is an untrained classifier; training a new model")
        return None


def start_model(model_path: Path, classdir: Path, classes: list[str], examples: Sequence[Example],
                opts: TrainOptions, say: Callable[[str], None]) -> Start:
    """Continue ``model_path`` (see the module doc) or build a new model; either way compiled, ready to fit."""
    previous = _previous_card(model_path, opts.scratch, say)
    if previous is None:
        return _new_model(classes, examples, opts, say)
    if previous.classes != classes:
        added = [c for c in classes if c not in previous.classes]
        removed = [c for c in previous.classes if c not in classes]
        raise ClassListChangedError(
            f"{model_path}: the labels in {classdir}/examples differ from the classifier's classes "
            f"(new: {', '.join(added) or '-'}; gone: {', '.join(removed) or '-'}"
            f"{'; same labels, different order' if not added and not removed else ''}). "
            f"Use scratch=True (--scratch) to train a new model."
        )
    return _continue_model(model_path, previous, opts, say)


def _continue_model(model_path: Path, previous: ClassifierCard, opts: TrainOptions,
                    say: Callable[[str], None]) -> Start:
    import keras

    model, previous = load_classifier(model_path, compile=not opts.is_antrax)
    spec = previous.preprocess_spec()
    for what, given, stored in (
        ("arch", opts.arch, previous.arch),
        ("target_size", opts.target_size, previous.target_size),
        ("hsymmetry", opts.hsymmetry, previous.hsymmetry),
    ):
        if given is not None and given != stored and not (what == "hsymmetry" and given is False):
            say(f"note: continuing {model_path}: {what}={given!r} ignored, the model has {what}={stored!r}")
    normalize = previous.training.get("normalization", "in_model") == "in_model"
    if opts.is_antrax:  # anTraX recompiled before every fit: fresh Adam
        model.compile(optimizer=keras.optimizers.Adam(opts.learning_rate or 1e-3),
                      loss="categorical_crossentropy", metrics=["accuracy"])
    else:
        if opts.learning_rate is not None:
            model.optimizer.learning_rate.assign(opts.learning_rate)
        if opts.label_smoothing:  # the stored compile config has plain cross-entropy; keep the optimizer (and state)
            model.compile(optimizer=model.optimizer,
                          loss=keras.losses.CategoricalCrossentropy(label_smoothing=opts.label_smoothing),
                          metrics=["accuracy"])
    prev_t = float(previous.training.get("temperature") or 1.0)
    if prev_t != 1.0:  # train on the uncalibrated logits; calibrated again after this run
        _fold_temperature(model, 1.0 / prev_t)
    say(f"continuing {model_path} ({previous.arch}, T={spec.target_size}, {len(previous.classes)} classes)")
    return Start(model, spec, previous.arch, previous.hsymmetry, normalize, previous)


def _new_model(classes: list[str], examples: Sequence[Example], opts: TrainOptions,
               say: Callable[[str], None]) -> Start:
    """A new network; T = ``target_size``, else a custom model's own input size, else the recipe's (anTraX: the first
    example's size, :func:`default_target_size`)."""
    import keras

    target_size = opts.target_size
    if not target_size and opts.arch == "custom" and opts.modelfile:  # the user's model decides its input size
        target_size = custom_model_input_size(opts.modelfile)
    t = int(target_size) if target_size else (default_target_size(examples) if opts.is_antrax
                                              else DEFAULT_TARGET_SIZE)
    spec = PreprocessSpec(target_size=t, crop_size=opts.crop_size, background=opts.background)
    normalize = not opts.is_antrax
    model = build_model(opts.arch, len(classes), t, modelfile=opts.modelfile, normalize=normalize,
                        bn_momentum=opts.bn_momentum, weights=opts.weights)
    model.compile(optimizer=keras.optimizers.Adam(opts.learning_rate or 1e-3),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=opts.label_smoothing),
                  metrics=["accuracy"])
    say(f"new {opts.arch} model, T={t}, {len(classes)} classes, {model.count_params():,} parameters")
    return Start(model, spec, opts.arch, opts.hsymmetry, normalize)
