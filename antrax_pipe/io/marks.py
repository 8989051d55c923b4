"""``<session>/classifier/validation.csv``: the validation marks people make in the extract-trainset app.

anTraX's validate app kept its Correct/Wrong/... marks in memory only and lost them on close. Here every mark is
written at once. Format: comma CSV, header
``tracklet,movie,autoID,mark,n_frames,timestamp,classifier_sha256,annotator``, one row per tracklet and annotator
(re-marking replaces that annotator's row in place). Each mark records what it judged: the autoID and the sha256 of
the classifier that produced it; after re-classification a mark whose autoID or classifier changed is *stale*
(:func:`stale_reason`) and no longer counts. Files written before these columns existed load unchanged (their marks
have no annotator and no classifier; the new columns are appended after the existing ones when the file is next
written). Several people may judge the same tracklet: statistics use one mark per tracklet, the newest
(:func:`latest_per_tracklet`), and the report compares annotators on the tracklets they both judged. This module is
the one reader (:func:`read_validation_rows`, and :func:`load_validation_marks` on top of it for tables) and the one
writer (:class:`ValidationFile`).

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
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..model import MARKS, AntraxFormatError, TrackletName
from .atomic import atomic_write_text
from .locking import locked_for

#: Columns of the marks table the report and statistics use.
MARK_COLUMNS: tuple[str, ...] = ("tracklet", "autoID", "mark", "n_frames")
#: What a mark records besides (filled with "" for marks written before they existed).
MARK_EXTRA_COLUMNS: tuple[str, ...] = ("classifier_sha256", "annotator", "timestamp")
#: Columns this app writes, in order; other columns of an existing file are kept after them.
VALIDATION_FIELDS: tuple[str, ...] = ("tracklet", "movie", "autoID", "mark", "n_frames", "timestamp",
                                      "classifier_sha256", "annotator")


def mark_key(row: Mapping[str, Any]) -> tuple[str, str]:
    """A mark's identity: (tracklet, annotator); marks written without an annotator have annotator ""."""
    return str(row.get("tracklet") or ""), str(row.get("annotator") or "")


def read_validation_rows(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a validation.csv, rows deduplicated by tracklet and annotator (the last row wins, at the
    position of the first). A missing file is empty; a file without ``tracklet``/``mark`` columns or with an unknown
    mark is an error."""
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
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for lineno, row in enumerate(reader, start=2):
        if None in row:  # more fields than columns
            raise AntraxFormatError(f"{path}: line {lineno}: more fields than the header has columns")
        row = {k: (v or "") for k, v in row.items()}
        mark = row["mark"].strip().lower()
        if mark not in MARKS:
            raise AntraxFormatError(f"{path}: line {lineno}: tracklet {row['tracklet']!r} has mark {row['mark']!r}; "
                                    f"expected one of {', '.join(MARKS)}")
        row["mark"] = mark
        rows[mark_key(row)] = row  # dict keeps the first position, the last value
    return columns, list(rows.values())


def format_validation(columns: list[str], rows: list[dict[str, str]]) -> str:
    cols = list(VALIDATION_FIELDS) + [c for c in columns if c not in VALIDATION_FIELDS]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    return buf.getvalue()


def _when(row: Mapping[str, Any]) -> datetime:
    """A mark's timestamp (ISO 8601); unreadable or missing → the oldest possible (a mark of unknown time loses)."""
    try:
        t = datetime.fromisoformat(str(row.get("timestamp") or ""))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return t if t.tzinfo else t.astimezone()


def latest_per_tracklet(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """tracklet → its newest mark (by timestamp; a tie goes to the later row), in the order tracklets first appear.
    Several annotators may have judged one tracklet; a rate counts each tracklet once."""
    out: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        t = str(row["tracklet"])
        if t not in out or _when(row) >= _when(out[t]):
            out[t] = row
    return out


def stale_reason(row: Mapping[str, Any], autoid: str | None, classifier: str | None = None) -> str | None:
    """Why a mark no longer judges the tracklet's current classification, or None when it still does.

    ``autoid``: the tracklet's current autoID (None: the tracklet is not classified now); ``classifier``: sha256 of
    the classifier that produced it ("" or None: unknown). A field the mark did not record (files written before it
    existed) is not compared."""
    if autoid is None:
        return "the tracklet has no autoID now"
    judged = str(row.get("autoID") or "")
    if judged and judged != autoid:
        return f"autoID is {autoid} now; the mark judged {judged}"
    was = str(row.get("classifier_sha256") or "")
    if was and classifier and was != classifier:
        return f"re-classified by classifier {classifier[:12]} (the mark judged classifier {was[:12]})"
    return None


class ValidationFile:
    """Marks of one experiment session. :meth:`set` is lock → re-read → modify → atomic write → unlock, with an
    inter-process file lock, so concurrent writers (threads or other processes) never lose a mark."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        read_validation_rows(self.path)  # fail at start-up, not at the first mark, if the file is damaged

    def rows(self) -> list[dict[str, str]]:
        """Every mark (one per tracklet and annotator), in file order."""
        with self._lock:
            return read_validation_rows(self.path)[1]

    def marks(self) -> dict[str, dict[str, str]]:
        """tracklet → its newest row (``mark``, ``autoID``, ``n_frames``, ``movie``, ``timestamp``, ``annotator``…)."""
        return dict(latest_per_tracklet(self.rows()))  # type: ignore[arg-type]

    def _modify(self, change) -> Any:
        """Lock, re-read, ``change(rows)`` in place, write atomically; returns what ``change`` returns."""
        with self._lock, locked_for(self.path):
            columns, rows = read_validation_rows(self.path)
            out = change(rows)
            atomic_write_text(self.path, format_validation(columns, rows))
            return out

    def set(self, tracklet: str, mark: str | None, fields: Mapping[str, object] | None = None,
            annotator: str = "") -> dict[str, str] | None:
        """Record ``mark`` for ``tracklet`` by ``annotator`` (replacing that annotator's earlier mark, or an earlier
        mark without an annotator), or remove it when ``mark`` is None. Returns the row written (None when removed)."""
        if mark is not None and mark not in MARKS:
            raise ValueError(f"unknown mark {mark!r}; expected one of {', '.join(MARKS)}")

        def change(rows: list[dict[str, str]]) -> dict[str, str] | None:
            pos = next((i for i, r in enumerate(rows) if mark_key(r) == (tracklet, annotator)), None)
            if pos is None and annotator:  # a mark written without an annotator becomes this annotator's
                pos = next((i for i, r in enumerate(rows) if mark_key(r) == (tracklet, "")), None)
            if mark is None:
                if pos is not None:
                    rows.pop(pos)
                return None
            new = dict(rows[pos]) if pos is not None else {}
            new.update({k: "" if v is None else str(v) for k, v in (fields or {}).items()})
            new.update(tracklet=tracklet, mark=mark, annotator=annotator,
                       timestamp=datetime.now().astimezone().isoformat(timespec="seconds"))
            if pos is None:
                rows.append(new)
            else:
                rows[pos] = new
            return new

        return self._modify(change)

    def restore(self, tracklet: str, annotator: str, row: Mapping[str, str] | None) -> None:
        """Undo: remove the mark of (tracklet, annotator) and put back ``row`` (the mark it replaced, None: none), at
        the position of the mark removed."""
        def change(rows: list[dict[str, str]]) -> None:
            pos = next((i for i, r in enumerate(rows) if mark_key(r) == (tracklet, annotator)), len(rows))
            rows[:] = [r for r in rows if mark_key(r) != (tracklet, annotator)]
            if row is not None:
                rows[:] = [r for r in rows if mark_key(r) != mark_key(row)]
                rows.insert(min(pos, len(rows)), dict(row))

        self._modify(change)


def normalise_marks(raw: pd.DataFrame | Sequence[Any], source: str, frames_of: Any) -> pd.DataFrame:
    """Validation marks → DataFrame (tracklet, autoID, mark, n_frames, classifier_sha256, annotator, timestamp), one
    row per tracklet and annotator (the last wins); ``frames_of(tracklet)`` fills a missing n_frames; the extra
    columns are "" where the marks do not have them; errors name ``source`` and the tracklet."""
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
    for col in MARK_EXTRA_COLUMNS:
        df[col] = df[col].fillna("").astype(str) if col in df.columns else ""
    df = df[list(MARK_COLUMNS + MARK_EXTRA_COLUMNS)].copy()
    df["tracklet"] = df["tracklet"].astype(str)
    df["mark"] = df["mark"].astype(str).str.strip().str.lower()
    bad = df[~df["mark"].isin(MARKS)]
    if len(bad):
        r = bad.iloc[0]
        raise AntraxFormatError(f"{source}: validation mark of tracklet {r.tracklet!r} is {r.mark!r}; expected one "
                                f"of {', '.join(MARKS)}")
    df = df.drop_duplicates(["tracklet", "annotator"], keep="last").reset_index(drop=True)
    n = pd.to_numeric(df["n_frames"], errors="coerce")
    bad_n = df.loc[n.notna() & ((n < 0) | (n != n.round())), "tracklet"]
    if len(bad_n):
        raise AntraxFormatError(f"{source}: validation mark of tracklet {bad_n.iloc[0]!r}: n_frames is not a "
                                f"non-negative integer")
    df["n_frames"] = pd.Series([int(v) if not pd.isna(v) else frames_of(t) for t, v in zip(df["tracklet"], n)],
                               dtype="int64")
    df["autoID"] = df["autoID"].fillna("").astype(str)
    return df


def latest_marks(marks: pd.DataFrame) -> pd.DataFrame:
    """One row per tracklet of a :func:`normalise_marks` table: its newest mark (:func:`latest_per_tracklet`)."""
    if marks.empty:
        return marks.copy()
    keep = latest_per_tracklet(marks.reset_index(drop=True).assign(_row=range(len(marks))).to_dict("records"))
    rows = sorted(int(r["_row"]) for r in keep.values())
    return marks.reset_index(drop=True).iloc[rows].reset_index(drop=True)


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
