"""The per-movie probabilities file ``results/probs/<exp>/probs_<m>.h5`` (antrax-pipe's own format, HDF5).

Written by inference (:class:`ProbabilitiesWriter`, batch by batch), read by aggregation, review, provenance and the
report (:class:`ProbabilitiesFile`), none of which need TensorFlow. Format ``antrax-pipe-probabilities`` version 1::

    probs      (n_images, C) float32   softmax rows, tracklets concatenated in file order, chunked (+ gzip optional)
    offsets    (n_tracklets + 1,) int64  rows of tracklet i = probs[offsets[i]:offsets[i+1]] (empty tracklet: 0 rows)
    tracklets  (n_tracklets,) vlen utf-8  dataset names in images-file order (parts in order) = autoids row order
    part       (n_tracklets,) int32      index into the ``image_files`` attribute
    classes    (C,) vlen utf-8           classifier class names, index order
    attrs: format, format_version, classifier_path, classifier_sha256, image_files (JSON), preprocessing (JSON),
           batch_size, n_images, n_tracklets, empty_tracklets (JSON), elapsed_s, images_per_s, created, antrax_pipe,
           job_record (JSON, added by the classify stage)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from ..model import AntraxFormatError

PROBS_FORMAT = "antrax-pipe-probabilities"
PROBS_FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")


class ProbabilitiesWriter:
    """Appends probability rows to an open (temporary) file; :meth:`finish` writes the tracklet index and attributes.

    The caller owns atomicity (it writes into a temporary path that is renamed when complete), so a killed job never
    leaves a file that looks finished.
    """

    def __init__(self, h5: h5py.File, classes: Sequence[str], compression: str | None = None):
        self.h5 = h5
        self.classes = [str(c) for c in classes]
        n = len(self.classes)
        self.rows = 0
        self._probs = h5.create_dataset(
            "probs", shape=(0, n), maxshape=(None, n), dtype=np.float32,
            chunks=(max(1, min(4096, (1 << 20) // (4 * n))), n), compression=compression,
        )

    def append(self, y: np.ndarray) -> None:
        n = y.shape[0]
        self._probs.resize(self.rows + n, axis=0)
        self._probs[self.rows : self.rows + n] = y
        self.rows += n

    def finish(self, names: Sequence[str], parts: Sequence[int], ends: Sequence[int],
               attrs: Mapping[str, Any]) -> None:
        """Tracklet names, their image-file part and cumulative row ends, then the attributes (``format`` etc. are
        set here; ``attrs`` adds the rest)."""
        h5 = self.h5
        h5.create_dataset("offsets", data=np.array([0, *ends], dtype=np.int64))
        h5.create_dataset("tracklets", data=np.array(list(names), dtype=object), dtype=_STR)
        h5.create_dataset("part", data=np.array(list(parts), dtype=np.int32))
        h5.create_dataset("classes", data=np.array(self.classes, dtype=object), dtype=_STR)
        a = h5.attrs
        a["format"] = PROBS_FORMAT
        a["format_version"] = PROBS_FORMAT_VERSION
        for k, v in attrs.items():
            a[k] = v
        a["n_images"] = self.rows
        a["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        a["antrax_pipe"] = __version__


def add_attribute(path: str | Path, key: str, value: Any) -> None:
    """Set one attribute on a (not yet renamed) probabilities file, e.g. the classify job's record."""
    with h5py.File(path, "a") as h5:
        h5.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value


class ProbabilitiesFile:
    """An open per-movie probabilities file; iterating yields (tracklet, (n_i, C) float32) in file order.

    Rows are read in blocks of about ``block_rows`` (whole tracklets), so memory stays bounded for any movie.
    """

    def __init__(self, path: str | Path, block_rows: int = 65536):
        self.path = Path(path)
        self.block_rows = block_rows
        if not self.path.is_file():
            raise AntraxFormatError(f"{self.path}: probabilities file not found")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise AntraxFormatError(f"{self.path}: not a readable HDF5 probabilities file ({exc})") from exc
        try:
            self._load_index()
        except BaseException:
            self._f.close()
            raise

    def _load_index(self) -> None:
        f, where = self._f, str(self.path)
        if f.attrs.get("format") != PROBS_FORMAT:
            raise AntraxFormatError(f"{where}: not an antrax-pipe probabilities file (format attribute missing)")
        if int(f.attrs.get("format_version", -1)) > PROBS_FORMAT_VERSION:
            raise AntraxFormatError(f"{where}: format version {f.attrs['format_version']} is newer than this reader")
        for key in ("probs", "offsets", "tracklets", "part", "classes"):
            if key not in f:
                raise AntraxFormatError(f"{where}: dataset {key!r} missing (incomplete file?)")
        self.classes: list[str] = list(f["classes"].asstr()[()])
        self.tracklets: list[str] = list(f["tracklets"].asstr()[()])
        self.parts: np.ndarray = f["part"][()]
        self.offsets: np.ndarray = f["offsets"][()].astype(np.int64)
        self._probs = f["probs"]
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        o = self.offsets
        ok = (
            o.ndim == 1 and len(o) == len(self.tracklets) + 1 and len(self.parts) == len(self.tracklets)
            and o[0] == 0 and bool(np.all(np.diff(o) >= 0)) and o[-1] == self._probs.shape[0]
            and self._probs.ndim == 2 and self._probs.shape[1] == len(self.classes)
        )
        if not ok:
            raise AntraxFormatError(
                f"{where}: inconsistent probabilities file (probs {self._probs.shape}, {len(self.classes)} classes, "
                f"{len(self.tracklets)} tracklets, {len(o)} offsets ending at {o[-1] if len(o) else None})"
            )

    def __enter__(self) -> ProbabilitiesFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def __len__(self) -> int:
        return len(self.tracklets)

    @property
    def n_images(self) -> int:
        return int(self.offsets[-1])

    def probabilities(self, tracklet: str) -> np.ndarray:
        """One tracklet's rows (random access)."""
        try:
            i = self.tracklets.index(tracklet)
        except ValueError:
            raise KeyError(f"{self.path}: no tracklet {tracklet!r}") from None
        return self._probs[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        o, n = self.offsets, len(self.tracklets)
        i = 0
        while i < n:
            start = o[i]
            j = max(i + 1, int(np.searchsorted(o, start + self.block_rows, side="right")) - 1)
            j = min(j, n)
            block = self._probs[start : o[j]]
            for k in range(i, j):
                yield self.tracklets[k], block[o[k] - start : o[k + 1] - start]
            i = j


def read_probabilities(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Iterate (tracklet, (n_i, C) float32 probabilities) of a probabilities file, in file order."""
    with ProbabilitiesFile(path) as pf:
        yield from pf
