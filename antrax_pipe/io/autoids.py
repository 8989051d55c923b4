"""Writer/reader of ``labels/autoids_<m>.csv`` (docs/antrax-format.md#autoids), byte-compatible with anTraX.

Header ``tracklet,label,score,best_frame``; one row per image dataset in file order; comma, no quoting, LF.
``score`` is Python's ``str(float)`` of the float32 sum for ID rows and the literal ``0`` otherwise; ``best_frame`` is
1-based into the tracklet's image stack, ``0`` = none. MATLAB's ``readtable`` and the validate app depend on all of it.

Next to each autoids file antrax-pipe writes its provenance, ``labels/antrax-pipe/autoids_<m>.json`` (written by
:mod:`antrax_pipe.provenance`); :func:`autoids_classifier` reads from it which classifier produced the autoIDs.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..model import AntraxFormatError, AutoID
from .atomic import atomic_write_text

HEADER = ("tracklet", "label", "score", "best_frame")
#: Folder (under ``labels/``) of the provenance documents; anTraX's ``autoids_*`` glob never matches inside it.
PROVENANCE_DIR = "antrax-pipe"

log = logging.getLogger(__name__)


def format_score(row: AutoID) -> str:
    """anTraX writes ``str(float(np.float32 sum))`` for an ID and the int ``0`` for everything else."""
    if row.best_frame == 0 and row.score == 0:
        return "0"
    return repr(float(np.float32(row.score)))


def format_autoids(rows: Iterable[AutoID]) -> str:
    out = [",".join(HEADER)]
    for r in rows:
        for field_value in (r.tracklet, r.label):
            if any(c in field_value for c in ',"\n\r'):
                raise ValueError(f"autoids field {field_value!r} contains a comma, quote or newline")
        out.append(f"{r.tracklet},{r.label},{format_score(r)},{int(r.best_frame)}")
    return "\n".join(out) + "\n"


def write_autoids(path: str | Path, rows: Iterable[AutoID]) -> Path:
    """Write atomically (temp + rename), so a killed job never leaves a half file that looks finished."""
    path = Path(path)
    if path.name == "manualids.csv":
        raise ValueError(f"{path}: refusing to write manual IDs (user file)")
    return atomic_write_text(path, format_autoids(rows))


def read_autoids(path: str | Path) -> list[AutoID]:
    path = Path(path)
    if not path.is_file():
        raise AntraxFormatError(f"{path}: autoids file not found")
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    if not rows or tuple(rows[0]) != HEADER:
        raise AntraxFormatError(f"{path}: header must be {','.join(HEADER)!r}, got {','.join(rows[0]) if rows else ''!r}")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != 4:
            raise AntraxFormatError(f"{path}: line {lineno}: expected 4 fields, got {len(row)}")
        try:
            out.append(AutoID(row[0], row[1], float(row[2]), int(row[3])))
        except ValueError as exc:
            raise AntraxFormatError(f"{path}: line {lineno}: {exc}") from exc
    return out


def provenance_path(autoids_path: str | Path) -> Path:
    """``labels/autoids_<m>.csv`` → ``labels/antrax-pipe/autoids_<m>.json``."""
    p = Path(autoids_path)
    return p.parent / PROVENANCE_DIR / f"{p.stem}.json"


def autoids_classifier(autoids_path: str | Path) -> str:
    """sha256 of the classifier that produced an autoids file (``classifier.sha256`` of its provenance document);
    "" when there is no readable document (autoids written by anTraX, or by hand)."""
    path = provenance_path(autoids_path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("%s: unreadable provenance document (%s); the classifier of its autoIDs is unknown", path, exc)
        return ""
    clf = doc.get("classifier") if isinstance(doc, dict) else None
    return str(clf.get("sha256") or "") if isinstance(clf, dict) else ""
