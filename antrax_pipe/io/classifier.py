"""The classifier file ``<classdir>/<name>.h5``: a Keras legacy HDF5 model plus metadata datasets (h5py only).

Layout written by :func:`antrax_pipe.classifier.save_classifier` (anTraX-compatible where it can be):

- the Keras model (``model_weights/``, ``optimizer_weights/``, root attrs ``model_config`` …), via ``model.save``;
- ``prmtrs``: scalar string, ``json.dumps`` of anTraX's parameter dict (name, nclasses, modeltype, min_conf, …);
- ``classes``: shape (n, 1), **variable-length UTF-8** strings (anTraX wrote ``S10``, which truncates names longer
  than 10 bytes); anTraX's reader ``[x[0].decode() for x in f['classes'][()]]`` still works on it;
- ``antrax_pipe_card``: scalar string, JSON of our full :class:`~antrax_pipe.model.ClassifierCard` (preprocessing,
  training parameters, trainset hash, history, validation metrics).

``model.save`` rewrites the whole file and drops extra datasets, so the metadata is (re)written after every save,
on a temporary file that then replaces the target (atomic). :func:`read_card` uses h5py only (no TensorFlow), so the
workflow can check a classifier's classes against labels.csv cheaply; it also reads anTraX's own files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zipfile
from typing import Any
from pathlib import Path

import h5py
import numpy as np

from ..model import ClassifierCard, ClassifierFileError, consv_gates

log = logging.getLogger(__name__)

CARD_KEY = "antrax_pipe_card"
CARD_FORMAT_VERSION = 1
_CARD_FIELDS = {f.name for f in dataclasses.fields(ClassifierCard)}


# --------------------------------------------------------------------------------------------------------------------
# Card <-> dict / anTraX prmtrs


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, os.PathLike)):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def card_to_json(card: ClassifierCard) -> str:
    d = dataclasses.asdict(card)
    d["format_version"] = CARD_FORMAT_VERSION
    return json.dumps(d, default=_json_default, ensure_ascii=False, sort_keys=True)


def card_from_dict(d: dict, source: str = "card") -> ClassifierCard:
    """Build a card from its JSON dict; unknown keys (a newer writer) are kept out with a warning, not fatal."""
    d = dict(d)
    d.pop("format_version", None)
    unknown = sorted(set(d) - _CARD_FIELDS)
    if unknown:
        log.warning("%s: ignoring unknown classifier-card field(s): %s", source, ", ".join(unknown))
    missing = {"classes", "target_size"} - set(d)
    if missing:
        raise ClassifierFileError(f"{source}: classifier card lacks {', '.join(sorted(missing))}")
    card = ClassifierCard(**{k: v for k, v in d.items() if k in _CARD_FIELDS})
    card.classes = [str(c) for c in card.classes]
    card.target_size = int(card.target_size)
    return card


def antrax_prmtrs(card: ClassifierCard, modelfile: str | None = None) -> dict:
    """anTraX's ``prmtrs`` dict for this card , so anTraX-era tools reading ``prmtrs`` keep working."""
    return {
        "name": card.name,
        "nclasses": len(card.classes),
        "modeltype": card.arch,
        "json": modelfile or card.training.get("modelfile"),
        "use_min_conf": bool(card.use_min_conf),
        "consv_factor": card.consv_factor,
        "min_conf": card.min_conf,
        "min_conf_short": card.min_conf_short,
        "background": card.background,
        "target_size": int(card.target_size),
        "crop_size": card.crop_size,
        "unknown_weight": card.unknown_weight,
        "multi_weight": card.multi_weight,
        "scale": card.scale,
        "loss": "categorical_crossentropy",
        "optimizer": "adam",
        "metrics": ["accuracy"],
        "hsymmetry": bool(card.hsymmetry),
    }


def card_from_antrax(prmtrs: dict, classes: list[str], source: str) -> ClassifierCard:
    """A card for an anTraX-written classifier, with anTraX's load-time defaults (``hsymmetry`` → True, docs/antrax-format.md#classifier-file)."""
    try:
        target = int(prmtrs["target_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ClassifierFileError(f"{source}: prmtrs has no valid 'target_size' ({exc})") from exc
    n = prmtrs.get("nclasses")
    if n is not None and int(n) != len(classes):
        raise ClassifierFileError(f"{source}: prmtrs nclasses={n} but the file lists {len(classes)} classes")
    consv = float(prmtrs.get("consv_factor", 0.5))
    crop = prmtrs.get("crop_size")
    background = prmtrs.get("background", "white")
    return ClassifierCard(
        classes=list(classes),
        target_size=target,
        arch=str(prmtrs.get("modeltype", "small")),
        background=background,
        hsymmetry=bool(prmtrs.get("hsymmetry", True)),
        preprocessing={"target_size": target, "crop_size": crop, "background": background},
        training={"recipe": "antrax (original)", "normalization": "none (0-255 input)"},
        name=str(prmtrs.get("name", "classifier")),
        crop_size=crop,
        scale=float(prmtrs.get("scale", 1)),
        use_min_conf=bool(prmtrs.get("use_min_conf", True)),
        consv_factor=consv,
        min_conf=float(prmtrs.get("min_conf", consv_gates(consv)[0])),
        min_conf_short=float(prmtrs.get("min_conf_short", consv_gates(consv)[1])),
        unknown_weight=float(prmtrs.get("unknown_weight", 20)),
        multi_weight=float(prmtrs.get("multi_weight", 0.1)),
        source="antrax",
    )


# --------------------------------------------------------------------------------------------------------------------
# Reading metadata (h5py only)


def _decode(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return str(v)


def _read_string(ds, path: Path, key: str) -> str:
    try:
        v = ds[()]
    except Exception as exc:
        raise ClassifierFileError(f"{path}: dataset {key!r} cannot be read ({exc})") from exc
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size == 1 else None
    if v is None:
        raise ClassifierFileError(f"{path}: dataset {key!r} is not a scalar string")
    return _decode(v)


def _read_classes(f: h5py.File, path: Path) -> list[str] | None:
    if "classes" not in f:
        return None
    try:
        raw = np.asarray(f["classes"][()])
    except Exception as exc:
        raise ClassifierFileError(f"{path}: dataset 'classes' cannot be read ({exc})") from exc
    return [_decode(v) for v in raw.reshape(-1)]


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise ClassifierFileError(f"{path}: classifier file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        hint = (
            " (it is a Keras .keras zip archive; antrax-pipe classifiers are legacy Keras .h5 files)"
            if zipfile.is_zipfile(path)
            else " (truncated, still being written, or not a classifier?)"
        )
        raise ClassifierFileError(f"{path}: cannot be opened as an HDF5 classifier file{hint}: {exc}") from exc


def read_card(path: str | os.PathLike) -> ClassifierCard:
    """The card of a classifier file, without TensorFlow. Reads our files (``antrax_pipe_card``) and anTraX's
    (``prmtrs`` + ``classes``, S10 (n,1)). Raises :class:`ClassifierFileError` naming the file when it is missing,
    corrupt, untrained (no ``classes``) or inconsistent."""
    path = Path(path)
    with _open_h5(path) as f:
        classes = _read_classes(f, path)
        card_json = None
        if CARD_KEY in f:
            card_json = _read_string(f[CARD_KEY], path, CARD_KEY)
        elif CARD_KEY in f.attrs:
            card_json = _decode(f.attrs[CARD_KEY])
        prmtrs_json = _read_string(f["prmtrs"], path, "prmtrs") if "prmtrs" in f else None
        has_model = "model_weights" in f or "model_config" in f.attrs
    if card_json is not None:
        try:
            card = card_from_dict(json.loads(card_json), str(path))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ClassifierFileError(f"{path}: {CARD_KEY} is not a valid classifier card ({exc})") from exc
        if classes is not None and classes != card.classes:
            raise ClassifierFileError(
                f"{path}: the 'classes' dataset ({', '.join(classes)}) disagrees with the card "
                f"({', '.join(card.classes)}); the file was edited or is damaged"
            )
    elif prmtrs_json is not None:
        try:
            prmtrs = json.loads(prmtrs_json)
        except json.JSONDecodeError as exc:
            raise ClassifierFileError(f"{path}: 'prmtrs' is not valid JSON ({exc})") from exc
        if classes is None:
            raise ClassifierFileError(
                f"{path}: untrained classifier (no 'classes' dataset; anTraX saves the new model before training). "
                f"Train it first."
            )
        card = card_from_antrax(prmtrs, classes, str(path))
    else:
        what = "a Keras model without classifier metadata" if has_model else "not a classifier file"
        raise ClassifierFileError(f"{path}: {what} (neither '{CARD_KEY}' nor 'prmtrs' found)")
    if len(card.classes) < 2 or len(set(card.classes)) != len(card.classes):
        raise ClassifierFileError(f"{path}: invalid class list {card.classes!r} (need ≥2 distinct classes)")
    if any(c.endswith(" ") or c == "" for c in card.classes):
        raise ClassifierFileError(f"{path}: invalid (empty or space-padded) class name in {card.classes!r}")
    return card


# --------------------------------------------------------------------------------------------------------------------
# Writing


def read_stored_optimizer(path: str | os.PathLike) -> tuple[dict | None, list[np.ndarray] | None]:
    """The optimizer Keras stored with the model: its config (``training_config.optimizer_config``) and state values
    in stored order; (None, None) when absent or unreadable as JSON (a TF1-era file)."""
    with h5py.File(path, "r") as f:
        tc = f.attrs.get("training_config")
        if tc is None:
            return None, None
        try:
            cfg: Any = json.loads(_decode(tc))["optimizer_config"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None, None
        values = None
        if "optimizer_weights" in f:
            g = f["optimizer_weights"]
            names = [_decode(n) for n in g.attrs.get("weight_names", [])]
            values = [np.asarray(g[n][()]) for n in names]
    return cfg, values


def write_metadata(path: str | os.PathLike, card: ClassifierCard) -> None:
    """(Re)write ``prmtrs``, ``classes`` and ``antrax_pipe_card`` into an existing model file, in place.
    Callers that must be atomic write to a temporary file first (as ``save_classifier`` does)."""
    path = Path(path)
    str_dt = h5py.string_dtype("utf-8")
    with h5py.File(path, "a") as f:
        for key in ("prmtrs", "classes", CARD_KEY):
            if key in f:
                del f[key]
        f.create_dataset("prmtrs", data=json.dumps(antrax_prmtrs(card), default=_json_default), dtype=str_dt)
        classes = np.array([[c] for c in card.classes], dtype=object)
        f.create_dataset("classes", data=classes, dtype=str_dt, shape=(len(card.classes), 1))
        f.create_dataset(CARD_KEY, data=card_to_json(card), dtype=str_dt)


