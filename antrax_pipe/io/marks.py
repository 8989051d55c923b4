"""``<session>/classifier/validation.csv``: the validation marks people make in the extract-trainset app.

anTraX's validate app kept its Correct/Wrong/... marks in memory only and lost them on close. Here every mark is
written at once. Format: comma CSV, header ``tracklet,movie,autoID,mark,n_frames,timestamp``, one row per tracklet
(re-marking replaces the row in place). This module is the one reader (:func:`read_validation_rows`, and
:func:`load_validation_marks` on top of it for tables) and the one writer (:class:`ValidationFile`).

Each change takes an inter-process lock (``flock`` on ``.validation.csv.lock`` next to the file,
:mod:`antrax_pipe.io.locking`), re-reads the file under it, changes one row and rewrites the file atomically (temp
file + rename) before unlocking: two apps marking into the same file at once never lose each other's marks, and a
crash never leaves a half file. Readers need no lock (they always see a whole file). A file that cannot be parsed is
never rewritten: the error names it, and the user decides.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ..model import MARKS, AntraxFormatError, TrackletName
from .atomic import atomic_write_text
from .locking import locked_for

#: Columns of the marks table the report and statistics use.
MARK_COLUMNS: tuple[str, ...] = ("tracklet", "autoID", "mark", "n_frames")
#: Columns this app writes, in order; other columns of an existing file are kept after them.
VALIDATION_FIELDS: tuple[str, ...] = ("tracklet", "movie", "autoID", "mark", "n_frames", "timestamp")


def read_validation_rows(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a validation.csv, rows deduplicated by tracklet (the last row wins, at the position of the
    first). A missing file is empty; a file without ``tracklet``/``mark`` columns or with an unknown mark is an error."""
    path = Path(path)
    if not path.is_file():
        return list(VALIDATION_FIELDS), []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AntraxFormatError(f"{path}: cannot be read as UTF-8 text ({exc})") from exc
    if not text.strip():
        return list(VALIDATION_FIELDS), []
    reader = csv.DictReader(io.StringIO(text))
    columns = list(reader.fieldnames or [])
    for col in ("tracklet", "mark"):
        if col not in columns:
            raise AntraxFormatError(f"{path}: validation marks have no {col!r} column (columns: "
                                    f"{', '.join(columns) or 'none'})")
    rows: dict[str, dict[str, str]] = {}
    for lineno, row in enumerate(reader, start=2):
        if None in row:  # more fields than columns
            raise AntraxFormatError(f"{path}: line {lineno}: more fields than the header has columns")
        row = {k: (v or "") for k, v in row.items()}
        mark = row["mark"].strip().lower()
        if mark not in MARKS:
            raise AntraxFormatError(f"{path}: line {lineno}: tracklet {row['tracklet']!r} has mark {row['mark']!r}; "
                                    f"expected one of {', '.join(MARKS)}")
        row["mark"] = mark
        rows[row["tracklet"]] = row  # dict keeps the first position, the last value
    return columns, list(rows.values())


def format_validation(columns: list[str], rows: list[dict[str, str]]) -> str:
    cols = list(VALIDATION_FIELDS) + [c for c in columns if c not in VALIDATION_FIELDS]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    return buf.getvalue()


class ValidationFile:
    """Marks of one experiment session. :meth:`set` is lock → re-read → modify → atomic write → unlock, with an
    inter-process file lock, so concurrent writers (threads or other processes) never lose a mark."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        read_validation_rows(self.path)  # fail at start-up, not at the first mark, if the file is damaged

    def marks(self) -> dict[str, dict[str, str]]:
        """tracklet → its row (``mark``, ``autoID``, ``n_frames``, ``movie``, ``timestamp``…)."""
        with self._lock:
            return {r["tracklet"]: r for r in read_validation_rows(self.path)[1]}

    def set(self, tracklet: str, mark: str | None, fields: Mapping[str, object] | None = None) -> dict[str, str] | None:
        """Record ``mark`` for ``tracklet`` (replacing an earlier one), or remove its mark when ``mark`` is None.
        Returns the row written (None when removed)."""
        if mark is not None and mark not in MARKS:
            raise ValueError(f"unknown mark {mark!r}; expected one of {', '.join(MARKS)}")
        with self._lock, locked_for(self.path):
            columns, rows = read_validation_rows(self.path)
            pos = next((i for i, r in enumerate(rows) if r["tracklet"] == tracklet), None)
            new = None
            if mark is None:
                if pos is not None:
                    rows.pop(pos)
            else:
                new = dict(rows[pos]) if pos is not None else {}
                new.update({k: "" if v is None else str(v) for k, v in (fields or {}).items()})
                new.update(tracklet=tracklet, mark=mark,
                           timestamp=datetime.now().astimezone().isoformat(timespec="seconds"))
                if pos is None:
                    rows.append(new)
                else:
                    rows[pos] = new
            atomic_write_text(self.path, format_validation(columns, rows))
            return new


def normalise_marks(raw: pd.DataFrame | Sequence[Any], source: str, frames_of: Any) -> pd.DataFrame:
    """Validation marks → DataFrame (tracklet, autoID, mark, n_frames); ``frames_of(tracklet)`` fills a missing
    n_frames; errors name ``source`` and the tracklet."""
    if isinstance(raw, pd.DataFrame):
        df = raw.copy()
    else:
        recs = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r) for r in raw]
        df = pd.DataFrame.from_records(recs)
    rename = {c: std for c in df.columns for std in MARK_COLUMNS if str(c).lower() == std.lower()}
    df = df.rename(columns=rename)
    if df.empty and not len(df.columns):
        df = pd.DataFrame(columns=list(MARK_COLUMNS))
    for col in ("tracklet", "mark"):
        if col not in df.columns:
            raise AntraxFormatError(f"{source}: validation marks have no {col!r} column (columns: "
                                    f"{', '.join(map(str, df.columns)) or 'none'})")
    if "autoID" not in df.columns:
        df["autoID"] = ""
    if "n_frames" not in df.columns:
        df["n_frames"] = pd.NA
    df = df[list(MARK_COLUMNS)].copy()
    df["tracklet"] = df["tracklet"].astype(str)
    df["mark"] = df["mark"].astype(str).str.strip().str.lower()
    bad = df[~df["mark"].isin(MARKS)]
    if len(bad):
        r = bad.iloc[0]
        raise AntraxFormatError(f"{source}: validation mark of tracklet {r.tracklet!r} is {r.mark!r}; expected one "
                                f"of {', '.join(MARKS)}")
    df = df.drop_duplicates("tracklet", keep="last").reset_index(drop=True)
    n = pd.to_numeric(df["n_frames"], errors="coerce")
    bad_n = df.loc[n.notna() & ((n < 0) | (n != n.round())), "tracklet"]
    if len(bad_n):
        raise AntraxFormatError(f"{source}: validation mark of tracklet {bad_n.iloc[0]!r}: n_frames is not a "
                                f"non-negative integer")
    df["n_frames"] = pd.Series([int(v) if not pd.isna(v) else frames_of(t) for t, v in zip(df["tracklet"], n)],
                               dtype="int64")
    df["autoID"] = df["autoID"].fillna("").astype(str)
    return df


def load_validation_marks(path: str | Path, n_images: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Read ``classifier/validation.csv`` (comma CSV with a header naming at least tracklet and mark; autoID and
    n_frames optional). An empty ``n_frames`` is taken from ``n_images`` (tracklet → images), else from the name."""
    path = Path(path)
    if not path.is_file():
        raise AntraxFormatError(f"{path}: validation marks file not found")
    columns, rows = read_validation_rows(path)
    df = pd.DataFrame(rows, columns=columns).replace("", pd.NA)
    counts = dict(n_images or {})

    def frames_of(t: str) -> int:
        if t in counts:
            return int(counts[t])
        try:
            return TrackletName.parse(t).n_frames
        except ValueError as exc:
            raise AntraxFormatError(f"{path}: tracklet {t!r}: n_frames is empty and the name is not an anTraX "
                                    f"tracklet name") from exc

    return normalise_marks(df, str(path), frames_of)
