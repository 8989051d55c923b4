"""The review loop's tables in ``<session>/classifier/``: ``review_plan.csv`` (which tracklets to judge, a
stratified random sample) and ``label_next.csv`` (what to label next, with reasons). Both are products of the workflow
(comma CSV, written atomically); a file of that name that antrax-pipe did not write is never replaced, and neither is
the marks file ``validation.csv``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from ..model import AntraxFormatError
from .atomic import atomic_write_text

PLAN_COLUMNS: tuple[str, ...] = ("order", "tracklet", "movie", "autoID", "score", "n_frames", "stratum",
                                 "stratum_size", "stratum_drawn", "weight")
NEXT_COLUMNS: tuple[str, ...] = ("rank", "tracklet", "movie", "autoID", "n_frames", "score", "reason", "priority",
                                 "gate", "candidate", "runner_up", "detail")


def _looks_like(path: Path, column: str) -> bool:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return column in header


def _write_product_csv(path: str | Path, df: pd.DataFrame, marker: str, what: str) -> Path:
    """Write a product CSV atomically; a file of that name that is not one of ours (no ``marker`` column) is never
    replaced, and neither is the marks file."""
    path = Path(path)
    if path.name == "validation.csv":
        raise AntraxFormatError(f"{path}: refusing to write a {what} over the validation marks file")
    if path.exists() and not _looks_like(path, marker):
        raise AntraxFormatError(f"{path}: exists and is not a {what} written by antrax-pipe (no {marker!r} column); "
                                f"move it away first")
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.6g")
    return atomic_write_text(path, buf.getvalue())


def write_review_plan(path: str | Path, plan: pd.DataFrame) -> Path:
    """``review_plan.csv`` (comma CSV, columns :data:`PLAN_COLUMNS`), atomically."""
    return _write_product_csv(path, plan[list(PLAN_COLUMNS)], "stratum", "review plan")


def _read_product_csv(path: str | Path, what: str, text_columns: tuple[str, ...],
                      required: tuple[str, ...]) -> pd.DataFrame:
    """Read one of these tables; errors name the file and what is wrong (missing, not CSV, missing columns)."""
    path = Path(path)
    if not path.is_file():
        raise AntraxFormatError(f"{path}: {what} not found")
    try:
        df = pd.read_csv(path, dtype={c: str for c in text_columns}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AntraxFormatError(f"{path}: cannot be read as a CSV table ({exc})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise AntraxFormatError(f"{path}: not a {what} (missing column(s) {', '.join(missing)})")
    return df


def read_review_plan(path: str | Path) -> pd.DataFrame:
    """Read a ``review_plan.csv``; errors name the file and the missing columns."""
    return _read_product_csv(path, "review plan", ("tracklet", "autoID", "stratum"),
                             ("tracklet", "movie", "autoID", "n_frames", "stratum"))


def write_label_next(path: str | Path, table: pd.DataFrame) -> Path:
    """``label_next.csv`` (columns :data:`NEXT_COLUMNS`), atomically; it holds suggestions only, never a label."""
    return _write_product_csv(path, table[list(NEXT_COLUMNS)], "reason", "label-next list")


def read_label_next(path: str | Path) -> pd.DataFrame:
    """Read a ``label_next.csv``; errors name the file and the missing columns."""
    return _read_product_csv(path, "label-next list", ("tracklet", "autoID", "reason", "detail", "candidate",
                                                       "runner_up"), ("tracklet", "movie", "reason"))
