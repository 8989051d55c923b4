"""The held-out evaluation file ``results/classifiers/<clf>/validation.h5`` of one classifier.

HDF5: datasets ``key``, ``true_label``, ``pred_label`` (ungated), ``gate`` (NaN when the ungated label is not an ID),
``n_gate``, ``n_frames`` (one row per held-out tracklet), ``probs`` (held-out images × classes) with ``offsets``;
attributes ``status`` (``ok`` / ``no_split``), ``reason``, ``classes``, ``ids`` and the split and rule settings as
JSON (``meta``). What the columns mean: :mod:`antrax_pipe.coverage`; how they are made: :mod:`antrax_pipe.evaluate`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..model import AntraxFormatError
from .atomic import atomic_path

VALIDATION_FORMAT = "antrax-pipe-classifier-validation"
VALIDATION_FORMAT_VERSION = 1
TABLE_COLUMNS: tuple[str, ...] = ("key", "true_label", "pred_label", "gate", "n_gate", "n_frames")
_STR = h5py.string_dtype("utf-8")

STATUS_OK = "ok"
STATUS_NO_SPLIT = "no_split"


@dataclass
class ClassifierValidation:
    """Held-out tracklets of one classifier, aggregated with the rule but not gated (see the module docstring).

    ``status`` is ``no_split`` (with ``reason``) when the classifier has no held-out data to evaluate; ``table``
    is then empty. ``meta`` holds the split and rule settings and any warnings (``meta['warnings']``).
    """

    status: str
    classes: list[str]
    ids: list[str]
    table: pd.DataFrame
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    probs: np.ndarray | None = None
    offsets: np.ndarray | None = None


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({"key": pd.Series(dtype=object), "true_label": pd.Series(dtype=object),
                         "pred_label": pd.Series(dtype=object), "gate": pd.Series(dtype="float64"),
                         "n_gate": pd.Series(dtype="int64"), "n_frames": pd.Series(dtype="int64")})


def write_validation(path: str | Path, v: ClassifierValidation) -> Path:
    """Write ``validation.h5`` atomically (small: one row per held-out tracklet plus its image probabilities)."""
    path = Path(path)
    t = v.table
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = VALIDATION_FORMAT
            f.attrs["format_version"] = VALIDATION_FORMAT_VERSION
            f.attrs["status"] = v.status
            f.attrs["reason"] = v.reason
            f.attrs["meta"] = json.dumps(v.meta, default=str, sort_keys=True)
            f.create_dataset("classes", data=np.array(v.classes, dtype=object), dtype=_STR)
            f.create_dataset("ids", data=np.array(v.ids, dtype=object), dtype=_STR)
            for col in ("key", "true_label", "pred_label"):
                f.create_dataset(col, data=np.array(t[col].astype(str).tolist(), dtype=object), dtype=_STR)
            f.create_dataset("gate", data=t["gate"].to_numpy(dtype=np.float64))
            f.create_dataset("n_gate", data=t["n_gate"].to_numpy(dtype=np.int64))
            f.create_dataset("n_frames", data=t["n_frames"].to_numpy(dtype=np.int64))
            probs = v.probs if v.probs is not None else np.zeros((0, len(v.classes)), np.float32)
            offsets = v.offsets if v.offsets is not None else np.zeros(1, np.int64)
            f.create_dataset("probs", data=np.asarray(probs, dtype=np.float32))
            f.create_dataset("offsets", data=np.asarray(offsets, dtype=np.int64))
    return path


def read_validation(path: str | Path) -> ClassifierValidation:
    """Read a ``validation.h5``; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise AntraxFormatError(f"{path}: classifier validation file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise AntraxFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        if f.attrs.get("format") != VALIDATION_FORMAT:
            raise AntraxFormatError(f"{path}: not an antrax-pipe classifier validation file (format attribute)")
        if int(f.attrs.get("format_version", -1)) > VALIDATION_FORMAT_VERSION:
            raise AntraxFormatError(f"{path}: format version {f.attrs['format_version']} is newer than this reader")
        missing = [k for k in (*TABLE_COLUMNS, "classes", "ids", "probs", "offsets") if k not in f]
        if missing:
            raise AntraxFormatError(f"{path}: dataset(s) {', '.join(missing)} missing")
        cols = {c: f[c].asstr()[()].tolist() if c in ("key", "true_label", "pred_label") else f[c][()]
                for c in TABLE_COLUMNS}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise AntraxFormatError(f"{path}: per-tracklet columns have different lengths {sorted(lengths)}")
        table = pd.DataFrame(cols).astype({"gate": "float64", "n_gate": "int64", "n_frames": "int64"})
        if table.empty:
            table = empty_table()
        return ClassifierValidation(
            status=str(f.attrs.get("status", "")), reason=str(f.attrs.get("reason", "")),
            classes=f["classes"].asstr()[()].tolist(), ids=f["ids"].asstr()[()].tolist(), table=table,
            meta=json.loads(f.attrs.get("meta", "{}")), probs=f["probs"][()], offsets=f["offsets"][()],
        )
