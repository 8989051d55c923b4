"""A label-free consistency check: one ant cannot be in two places at once.

Two tracklets of one movie whose frame ranges overlap (the ``ti…tf…`` part of anTraX tracklet names) are two blobs
seen at the same time, so they cannot both be the same individual. Counting such *ID conflicts* per movie is a
quality estimate that needs no ground truth (as TRex's uniqueness or idtracker.ai's silhouette score are): a movie
whose autoIDs conflict often is a movie whose classifier is wrong often. anTraX's graph propagation (its "solve")
would have to undo each conflict; catching them here, with the tracklets named, is cheaper.

Optionally (``aggregate.resolve_conflicts``) a conflict is resolved by keeping the ID of the tracklet with more
evidence — the larger score, i.e. the summed probability of the ID over the tracklet's ant frames — and leaving the
other ``Unknown``. Pure Python: no files, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from .model import UNKNOWN, AutoID, TrackletName

CONFLICT_COLUMNS: tuple[str, ...] = ("label", "tracklet", "other", "overlap_frames", "score", "other_score")


@dataclass(frozen=True)
class Conflict:
    """Two tracklets of one movie given the same ID while their frame ranges overlap."""

    label: str
    tracklet: str
    other: str
    overlap_frames: int
    score: float
    other_score: float


def _span(name: str) -> tuple[int, int, int] | None:
    """(movie, first, last frame within the movie) of a tracklet; None for names that are not anTraX's or that
    span two movies."""
    try:
        t = TrackletName.parse(name)
    except ValueError:
        return None
    if t.last_movie != t.movie:
        return None
    return t.movie, t.first_frame, t.last_frame


def find_conflicts(rows: Iterable[AutoID], ids: Sequence[str]) -> list[Conflict]:
    """Every pair of rows with the same ID (a label in ``ids``) whose frame ranges overlap, in order of label, then
    first frame (rows of several movies are checked movie by movie). A sweep over the rows sorted by first frame: O(n log n + conflicts)."""
    ids = set(ids)
    groups: dict[tuple[str, int], list[tuple[int, int, AutoID]]] = {}
    for r in rows:
        span = _span(r.tracklet) if r.label in ids else None
        if span is not None:
            groups.setdefault((r.label, span[0]), []).append((span[1], span[2], r))
    out = []
    for label, _movie in sorted(groups):
        active: list[tuple[int, int, AutoID]] = []
        for first, last, r in sorted(groups[label, _movie], key=lambda x: (x[0], x[1], x[2].tracklet)):
            active = [a for a in active if a[1] >= first]
            for a_first, a_last, a in active:
                out.append(Conflict(label, a.tracklet, r.tracklet, min(a_last, last) - first + 1, a.score, r.score))
            active.append((first, last, r))
    return out


def resolve_conflicts(rows: Sequence[AutoID], ids: Sequence[str]) -> tuple[list[AutoID], list[str]]:
    """Keep, among tracklets given the same ID at overlapping times, those with more evidence: rows are taken in
    descending score (ties: longer tracklet, then name) and a row whose ID overlaps a kept row of that ID becomes
    ``Unknown``. Returns (rows in the original order, tracklets changed to Unknown)."""
    ids = set(ids)
    kept: dict[tuple[str, int], list[tuple[int, int]]] = {}
    dropped: set[str] = set()

    def key(r: AutoID) -> tuple:
        span = _span(r.tracklet) or (0, 0, -1)
        return -r.score, -(span[2] - span[1]), r.tracklet

    for r in sorted((r for r in rows if r.label in ids), key=key):
        span = _span(r.tracklet)
        if span is None:
            continue
        movie, first, last = span
        if any(a <= last and first <= b for a, b in kept.get((r.label, movie), ())):
            dropped.add(r.tracklet)
        else:
            kept.setdefault((r.label, movie), []).append((first, last))
    out = [replace(r, label=UNKNOWN, score=0.0, best_frame=0) if r.tracklet in dropped else r for r in rows]
    return out, sorted(dropped)
