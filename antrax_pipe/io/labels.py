"""Reader/writer of ``parameters/labels.csv`` (docs/antrax-format.md#labelscsv).

New format: no header, ``label<TAB>category`` per row. Old format (selected, as in anTraX, when
``parameters/labels.mat`` exists next to it): ``category,label1,label2,...`` per row. Like MATLAB's ``load_labels``
(and unlike anTraX's Python, docs/tracklet-rule.md#known-bugs, item 8) missing categories are added and ``NoAnt``/``Unknown`` are always present.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..model import (
    ANT_CATEGORY,
    NOANT_CATEGORY,
    OTHER_CATEGORY,
    TAGCOLOR_CATEGORY,
    UNKNOWN,
    AntraxFormatError,
    LabelSet,
)
from .atomic import atomic_write_text

KNOWN_CATEGORIES = (ANT_CATEGORY, NOANT_CATEGORY, OTHER_CATEGORY, TAGCOLOR_CATEGORY)
_ALIASES = {"nonant_labels": NOANT_CATEGORY}


def parse_labels(text: str, source: str = "labels.csv", old_format: bool = False) -> LabelSet:
    """Parse labels.csv text; ``source`` names the file in error messages."""
    cats: dict[str, list[str]] = {}
    rows = list(csv.reader(io.StringIO(text), delimiter="," if old_format else "\t"))
    for lineno, row in enumerate(rows, start=1):
        row = [c.strip() for c in row]
        if not any(row):
            continue
        if old_format:
            cat, labs = row[0], [c for c in row[1:] if c]
        else:
            if len(row) != 2 or not row[0] or not row[1]:
                raise AntraxFormatError(
                    f"{source}: line {lineno}: expected 'label<TAB>category', got {row!r}"
                    + (" (is this the old comma format? then parameters/labels.mat must exist)" if "," in row[0] else "")
                )
            cat, labs = row[1], [row[0]]
        cat = _ALIASES.get(cat, cat)
        bucket = cats.setdefault(cat, [])
        bucket.extend(lab for lab in labs if lab not in bucket)
    if not cats:
        raise AntraxFormatError(f"{source}: no labels found (empty file?)")
    if not cats.get(ANT_CATEGORY):
        raise AntraxFormatError(f"{source}: no '{ANT_CATEGORY}' rows: an experiment needs at least one individual ID")
    for cat in KNOWN_CATEGORIES:
        cats.setdefault(cat, [])
    # MATLAB load_labels always has NoAnt and Unknown; classification relies on them being categorised.
    if "NoAnt" not in cats[NOANT_CATEGORY]:
        cats[NOANT_CATEGORY].append("NoAnt")
    if UNKNOWN not in cats[OTHER_CATEGORY]:
        cats[OTHER_CATEGORY].append(UNKNOWN)
    _check_disjoint(cats, source)
    return LabelSet({k: tuple(v) for k, v in cats.items()})


def _check_disjoint(cats: dict[str, list[str]], source: str) -> None:
    owner: dict[str, str] = {}
    for cat, labs in cats.items():
        if cat == TAGCOLOR_CATEGORY:
            continue
        for lab in labs:
            if lab in owner and owner[lab] != cat:
                raise AntraxFormatError(f"{source}: label {lab!r} is in two categories: {owner[lab]} and {cat}")
            owner[lab] = cat


def read_labels(path: str | Path) -> LabelSet:
    """Read an experiment's labels.csv (tab format, or the old comma format when labels.mat is beside it)."""
    path = Path(path)
    if not path.is_file():
        raise AntraxFormatError(f"{path}: labels file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AntraxFormatError(f"{path}: not UTF-8 text ({exc})") from exc
    return parse_labels(text, str(path), old_format=(path.parent / "labels.mat").exists())


def format_labels(labels: LabelSet) -> str:
    """The text MATLAB ``save_labels`` writes: ``label<TAB>category`` grouped by category, LF line ends."""
    order = [c for c in KNOWN_CATEGORIES if c in labels.categories]
    order += [c for c in labels.categories if c not in order]
    return "".join(f"{lab}\t{cat}\n" for cat in order for lab in labels.categories[cat])


def write_labels(path: str | Path, labels: LabelSet) -> Path:
    return atomic_write_text(path, format_labels(labels))
