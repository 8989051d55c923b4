"""Saving and loading a classifier as a Keras model (TensorFlow); the file's metadata lives in
:mod:`antrax_pipe.io.classifier`, readable without TensorFlow.

``model.save`` rewrites the whole file and drops extra datasets, so the metadata is (re)written after every save,
on a temporary file that then replaces the target (atomic).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .io.atomic import atomic_path
from .io.classifier import read_card, read_stored_optimizer, write_metadata
from .model import ClassifierCard, ClassifierFileError, ModelBuildError
from .nets import build_model

log = logging.getLogger(__name__)


def _check_model_matches(model, card: ClassifierCard, where: str) -> None:
    in_shape = tuple(model.input_shape[1:])
    out = model.output_shape[-1]
    if out != len(card.classes):
        raise ClassifierFileError(f"{where}: model has {out} outputs but the card lists {len(card.classes)} classes")
    t = card.target_size
    if in_shape != (t, t, 3):
        raise ClassifierFileError(f"{where}: model input {in_shape} does not match the card's target size {t}")


def save_classifier(path: str | os.PathLike, model, card: ClassifierCard) -> Path:
    """Write model + metadata to ``path`` (``.h5``/``.hdf5``, Keras legacy format) atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        raise ClassifierFileError(f"{path}: classifier files must end in .h5 (Keras legacy HDF5, as anTraX)")
    _check_model_matches(model, card, str(path))
    with atomic_path(path) as tmp:
        model.save(tmp, overwrite=True)
        write_metadata(tmp, card)
    return path


def load_classifier(path: str | os.PathLike, compile: bool = True):
    """(keras.Model, ClassifierCard). Our files load with ``keras.models.load_model``; with ``compile`` the model is
    compiled with the stored optimizer and its state (for incremental training). An anTraX file whose TF1-era
    model config Keras 3 cannot parse is rebuilt from its ``prmtrs``
    (arch, classes, target size, no input normalisation) and its weights are loaded by layer order."""
    path = Path(path)
    card = read_card(path)
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        if card.source != "antrax":
            raise ClassifierFileError(
                f"{path}: the Keras model cannot be loaded ({type(exc).__name__}: {exc})"
            ) from exc
        model = _rebuild_antrax_model(path, card, exc)
    _check_model_matches(model, card, str(path))
    if compile:
        _compile_with_saved_optimizer(model, path)
    return model, card


def _compile_with_saved_optimizer(model, path: Path) -> None:
    """Compile with the stored optimizer (config + state: iteration count, learning rate, Adam moments).

    Keras 3.15's own legacy-H5 path builds the optimizer for ``model._trainable_variables`` — empty for a
    Sequential — so the restored optimizer refuses the model's variables at the first ``fit``. We rebuild it for
    ``model.trainable_variables`` instead. Without a usable stored optimizer, a fresh Adam is used (logged)."""
    import keras

    optimizer = None
    cfg, values = read_stored_optimizer(path)
    if cfg is not None:
        try:
            optimizer = keras.optimizers.deserialize(cfg)
        except Exception as exc:  # TF1-era or foreign optimizer config
            log.warning("%s: stored optimizer config not usable (%s); using a fresh Adam", path, exc)
    if optimizer is None:
        values = None
        optimizer = keras.optimizers.Adam()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    if values:
        optimizer.build(model.trainable_variables)
        shapes = [tuple(v.shape) for v in optimizer.variables]
        if shapes == [tuple(v.shape) for v in values]:
            optimizer.set_weights(values)
        else:
            log.warning("%s: stored optimizer state does not fit the model; using a fresh optimizer state", path)


def _rebuild_antrax_model(path: Path, card: ClassifierCard, cause: Exception):
    log.warning(
        "%s: Keras 3 cannot load the stored model (%s); rebuilding '%s' and loading weights", path, cause, card.arch
    )
    try:
        model = build_model(card.arch, len(card.classes), card.target_size, normalize=False)
        model.load_weights(path)
    except (ModelBuildError, ValueError, KeyError, OSError) as exc:
        raise ClassifierFileError(
            f"{path}: anTraX classifier cannot be loaded: Keras 3 rejects its model ({cause}) and rebuilding "
            f"arch {card.arch!r} failed ({exc})"
        ) from exc
    return model

