"""Per-frame class probabilities for the app (hover: top-2 classes of each frame; frames whose top class is not the
tracklet's label are outlined), read from the inference output ``results/probs/<exp>/probs_<m>.h5`` when the app was
given where it is (``probs_dir``: that folder, or ``results/probs`` holding one folder per experiment). Without it,
or for a movie without a file, nothing is shown: the probabilities are a help, never required.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from ..model import AntraxFormatError
from ..io.probabilities import ProbabilitiesFile

log = logging.getLogger(__name__)


class ProbsLookup:
    """Open probabilities files of one experiment's movies (each opened once, reopened when the file changes)."""

    def __init__(self, probs_dir: str | Path | None, expname: str):
        self.dir = Path(probs_dir) if probs_dir else None
        self.expname = expname
        self._lock = threading.Lock()
        self._open: dict[int, tuple[int, ProbabilitiesFile]] = {}

    def path(self, movie: int) -> Path | None:
        """``<probs_dir>/probs_<m>.h5`` or ``<probs_dir>/<expname>/probs_<m>.h5``, whichever exists."""
        if self.dir is None:
            return None
        for p in (self.dir / f"probs_{movie}.h5", self.dir / self.expname / f"probs_{movie}.h5"):
            if p.is_file():
                return p
        return None

    def file(self, movie: int) -> ProbabilitiesFile | None:
        path = self.path(movie)
        if path is None:
            return None
        mtime = path.stat().st_mtime_ns
        with self._lock:
            cached = self._open.get(movie)
            if cached and cached[0] == mtime:
                return cached[1]
            if cached:
                cached[1].close()
                del self._open[movie]
            try:
                pf = ProbabilitiesFile(path)
            except AntraxFormatError as exc:
                log.warning("per-frame probabilities not shown: %s", exc)
                return None
            self._open[movie] = (mtime, pf)
            return pf

    def classifier(self, movie: int) -> str:
        """sha256 of the classifier the movie's probabilities came from ("" when unknown)."""
        pf = self.file(movie)
        return str(pf.attrs.get("classifier_sha256") or "") if pf is not None else ""

    def top2(self, movie: int, tracklet: str, n_images: int) -> list[list[tuple[str, float]]] | None:
        """Per image of the tracklet: its two most probable classes with their probabilities; None when the file is
        absent, lacks the tracklet or has another number of rows than the tracklet has images."""
        pf = self.file(movie)
        if pf is None:
            return None
        with self._lock:
            try:
                y = np.asarray(pf.probabilities(tracklet), dtype=np.float64)
            except KeyError:
                return None
        if y.ndim != 2 or len(y) != n_images or y.shape[1] < 1:
            return None
        order = np.argsort(-y, axis=1, kind="stable")[:, :2]
        return [[(pf.classes[j], round(float(y[i, j]), 4)) for j in order[i]] for i in range(len(y))]

    def close(self) -> None:
        with self._lock:
            for _, pf in self._open.values():
                pf.close()
            self._open.clear()
