"""``<session>/classifier/validation.csv``: the validation marks of the extract-trainset app, kept on disk.

anTraX's validate app kept its Correct/Wrong/... marks in memory only and lost them on close (spec §12, §14.7). Here
every mark is written at once. Format: comma CSV, header ``tracklet,movie,autoID,mark,n_frames,timestamp``, one row
per tracklet (re-marking replaces the row in place), which :func:`antrax_pipe.report.load_validation_marks` reads.

Each change re-reads the file and rewrites it atomically (temp file + rename), so a crash never leaves a half file and
marks written by another process in the meantime are kept. A file that cannot be parsed is never rewritten: the
error names it, and the user decides.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from ..io.atomic import atomic_write_text
from ..model import AntraxFormatError
from ..stats import MARKS

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
            raise AntraxFormatError(f"{path}: not a validation marks file (no {col!r} column; columns: "
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
    """Marks of one experiment session; thread-safe within the process, read-modify-write through the file."""

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
        with self._lock:
            columns, rows = read_validation_rows(self.path)
            rows = [r for r in rows]
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
