"""What a run produced for one experiment session, as plain tables: autoIDs per movie, tracklet lengths, failed
movies, validation marks, review tables — loaded from the files (:func:`load_session_result`) and summarised per movie
(:func:`summarize_session`). The report draws these; the review stage samples from them. No plotting, no HTML.

Definitions used throughout (also printed on the report):

* **kind** of a label — ID (``ant_labels``), non-ant (``noant_labels``), multi (by name, as anTraX), Unknown, other
  (other ``other_labels``), unlisted (in no labels.csv category: classifier and labels.csv out of sync).
* **frames** of a tracklet — its number of images (``SessionResult.n_images``), falling back to the frame span in its
  name (exact unless the video was downsampled).
* **assignment rate** — frames of tracklets labelled with an ID ÷ frames of all classified tracklets that are *not*
  non-ant (ID + multi + Unknown + other + unlisted): the share of ant-tracklet time the classifier alone identifies,
  before graph propagation. Also given per tracklet. 0/0 (a movie with only non-ant tracklets) is "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .io.atomic import atomic_write_text
from .io.autoids import autoids_classifier, read_autoids
from .io.images import EmptyTrackletError, ImagesFile, find_movie_images
from .io.labels import read_labels
from .io.marks import latest_marks, load_validation_marks, normalise_marks, stale_reason
from .io.review_tables import read_label_next, read_review_plan
from .model import AntraxFormatError, AutoID, Experiment, LabelSet, MovieImages, TrackletName
from .stats import KIND_ID, KIND_MULTI, KIND_NONANT, KIND_OTHER, KIND_UNKNOWN, KIND_UNLISTED, KINDS, label_kind

#: Column-name slug of each kind in the summary table (``tracklets_<slug>``, ``frames_<slug>``).
KIND_SLUG: dict[str, str] = {
    KIND_ID: "id", KIND_NONANT: "nonant", KIND_MULTI: "multi", KIND_UNKNOWN: "unknown", KIND_OTHER: "other",
    KIND_UNLISTED: "unlisted",
}


@dataclass
class SessionResult:
    """Everything the report needs about one classified experiment session (plain data, no file access).

    ``autoids``: movie → rows of ``autoids_<m>.csv``; ``n_images``: movie → tracklet → number of images;
    ``failed_movies``: movie → error text; ``truth``: tracklet → true label; ``validation_marks``: rows of
    ``classifier/validation.csv`` (DataFrame, or mappings/dataclasses with tracklet, autoID, mark, n_frames);
    ``review_plan`` / ``label_next``: ``classifier/review_plan.csv`` and ``classifier/label_next.csv``
    (:mod:`antrax_pipe.io.review_tables`), when they exist; ``classifiers``: movie → sha256 of the classifier that
    produced its autoIDs ("" or absent: unknown), against which marks are judged current or stale; ``images``: movie →
    its images files (for the report's blob thumbnails; empty: no thumbnails); ``expdir``: the experiment directory
    (the report names it in the commands it suggests).
    """

    experiment: str
    session: str
    labels: LabelSet
    autoids: dict[int, list[AutoID]] = field(default_factory=dict)
    n_images: dict[int, dict[str, int]] = field(default_factory=dict)
    failed_movies: dict[int, str] = field(default_factory=dict)
    truth: dict[str, str] | None = None
    validation_marks: pd.DataFrame | Sequence[Any] | None = None
    review_plan: pd.DataFrame | None = None
    label_next: pd.DataFrame | None = None
    classifiers: dict[int, str] = field(default_factory=dict)
    images: dict[int, MovieImages] = field(default_factory=dict)
    expdir: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.experiment}/{self.session}"


# --------------------------------------------------------------------------------------------------------------------
# Tables of numbers
# --------------------------------------------------------------------------------------------------------------------


def _frames_lookup(session: SessionResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for counts in session.n_images.values():
        out.update({t: int(n) for t, n in counts.items()})
    return out


def _tracklet_frames(session: SessionResult, movie: int | None, tracklet: str, lookup: Mapping[str, int]) -> int:
    """Images of a tracklet: from n_images (that movie first), else from its name; a clear error if neither works."""
    if movie is not None and tracklet in session.n_images.get(movie, {}):
        return int(session.n_images[movie][tracklet])
    if tracklet in lookup:
        return lookup[tracklet]
    try:
        return TrackletName.parse(tracklet).n_frames
    except ValueError as exc:
        where = f"{session.name}" + (f", movie {movie}" if movie is not None else "")
        raise AntraxFormatError(
            f"{where}: tracklet {tracklet!r}: no image count given and the name is not an anTraX tracklet name, so its "
            f"number of frames is unknown"
        ) from exc


def tracklet_table(session: SessionResult) -> pd.DataFrame:
    """One row per classified tracklet: movie, tracklet, label, kind, score, frames."""
    lookup = _frames_lookup(session)
    rows = []
    for movie in sorted(session.autoids):
        for a in session.autoids[movie]:
            rows.append((movie, a.tracklet, a.label, label_kind(a.label, session.labels), float(a.score),
                         _tracklet_frames(session, movie, a.tracklet, lookup)))
    df = pd.DataFrame(rows, columns=["movie", "tracklet", "label", "kind", "score", "frames"])
    return df.astype({"movie": "int64", "score": "float64", "frames": "int64"})


def _assignment(id_count: float, nonant_count: float, total: float) -> float:
    denom = total - nonant_count
    return float(id_count / denom) if denom > 0 else math.nan


def summarize_session(session: SessionResult) -> pd.DataFrame:
    """Per movie: status, tracklets and frames per label kind, assignment rate (see the module docstring).

    ``status``: ``ok``; ``empty`` (autoids without rows — anTraX's MATLAB reader stops at such a file); ``failed``
    (listed in ``failed_movies``, ``error`` holds the text); ``missing`` (has images but neither autoids nor an error).
    Counts of movies without autoids are NA; ``assignment_rate`` (frames) and ``assignment_rate_tracklets`` are NaN
    when undefined (no non-non-ant tracklet).
    """
    tt = tracklet_table(session)
    movies = sorted(set(session.autoids) | set(session.failed_movies) | set(session.n_images))
    count_cols = ["tracklets", "frames"] + [f"{u}_{KIND_SLUG[k]}" for k in KINDS for u in ("tracklets", "frames")]
    rows = []
    for m in movies:
        row: dict[str, Any] = {"experiment": session.experiment, "session": session.session, "movie": m}
        if m in session.failed_movies:
            row["status"], row["error"] = "failed", str(session.failed_movies[m])
        elif m not in session.autoids:
            row["status"], row["error"] = "missing", "no autoids and no error reported"
        else:
            row["status"] = "ok" if session.autoids[m] else "empty"
            row["error"] = ""
        if m in session.autoids:
            sub = tt[tt.movie == m]
            row["tracklets"], row["frames"] = len(sub), int(sub.frames.sum())
            for k in KINDS:
                s = sub[sub.kind == k]
                row[f"tracklets_{KIND_SLUG[k]}"], row[f"frames_{KIND_SLUG[k]}"] = len(s), int(s.frames.sum())
            row["assignment_rate"] = _assignment(row["frames_id"], row["frames_nonant"], row["frames"])
            row["assignment_rate_tracklets"] = _assignment(row["tracklets_id"], row["tracklets_nonant"],
                                                           row["tracklets"])
        else:
            row.update({c: pd.NA for c in count_cols})
            row["assignment_rate"] = row["assignment_rate_tracklets"] = math.nan
        rows.append(row)
    columns = ["experiment", "session", "movie", "status", "error", *count_cols, "assignment_rate",
               "assignment_rate_tracklets"]
    df = pd.DataFrame(rows, columns=columns)
    return df.astype({"movie": "int64", **{c: "Int64" for c in count_cols},
                      "assignment_rate": "float64", "assignment_rate_tracklets": "float64"})


def summary_totals(summary: pd.DataFrame) -> dict[str, Any]:
    """Sum of the counts over the movies that have autoids, and the assignment rates of the sums."""
    counts = [c for c in summary.columns if c.startswith(("tracklets", "frames"))]
    tot: dict[str, Any] = {c: int(summary[c].sum(skipna=True)) for c in counts}
    tot["assignment_rate"] = _assignment(tot["frames_id"], tot["frames_nonant"], tot["frames"])
    tot["assignment_rate_tracklets"] = _assignment(tot["tracklets_id"], tot["tracklets_nonant"], tot["tracklets"])
    return tot


def write_summary_tsv(sessions: Iterable[SessionResult], path: str | Path) -> Path:
    """All sessions' per-movie summaries in one TSV (NA for undefined numbers), written atomically."""
    frames = [summarize_session(s) for s in sessions]
    df = pd.concat(frames, ignore_index=True) if frames else summarize_session(
        SessionResult("", "", LabelSet({}))).iloc[0:0]
    return atomic_write_text(path, df.to_csv(sep="\t", index=False, na_rep="NA", lineterminator="\n"))


def marks_table(session: SessionResult) -> pd.DataFrame | None:
    """The session's validation marks, one row per tracklet and annotator (the last wins, as re-marking in the app
    replaces a mark), with what each judged (autoID, classifier); a missing ``n_frames`` comes from the image counts
    or the tracklet name. :func:`mark_status` splits them into current and stale."""
    if session.validation_marks is None:
        return None
    lookup = _frames_lookup(session)
    return normalise_marks(session.validation_marks, f"{session.name} (validation marks)",
                            lambda t: _tracklet_frames(session, None, t, lookup))


@dataclass
class MarkStatus:
    """The session's marks against its current classification (:func:`mark_status`).

    ``current``: one row per tracklet with a current mark (its newest); ``current_rows``: every current mark (all
    annotators, for agreement); ``stale``: one row per marked tracklet without a current mark (its newest mark, with
    ``reason``) — these need a re-check; ``n_stale_marks``: stale marks in all (several annotators may have one)."""

    current: pd.DataFrame
    current_rows: pd.DataFrame
    stale: pd.DataFrame
    n_stale_marks: int


def mark_status(session: SessionResult, marks: pd.DataFrame, tt: pd.DataFrame) -> MarkStatus:
    """Split a :func:`marks_table` into current and stale marks (:func:`antrax_pipe.io.marks.stale_reason`): a mark
    is stale when the tracklet's autoID (``tt``, :func:`tracklet_table`) or the classifier of its movie
    (``session.classifiers``) differs from what the mark judged, or the tracklet is not classified now."""
    label = dict(zip(tt["tracklet"], tt["label"]))
    movie = dict(zip(tt["tracklet"], tt["movie"]))
    reasons = [stale_reason(r, label.get(r["tracklet"]), session.classifiers.get(movie.get(r["tracklet"], -1), ""))
               for r in marks.to_dict("records")]
    is_stale = pd.Series([r is not None for r in reasons], index=marks.index, dtype=bool)
    current_rows = marks[~is_stale].reset_index(drop=True)
    current = latest_marks(current_rows)
    stale = marks[is_stale].assign(reason=[r for r in reasons if r is not None])
    stale = latest_marks(stale[~stale["tracklet"].isin(set(current["tracklet"]))])
    return MarkStatus(current, current_rows, stale, int(is_stale.sum()))


def load_session_result(experiment: Experiment, movies: Iterable[int] | None = None,
                        failed_movies: Mapping[int, str] | None = None, truth: Mapping[str, str] | None = None,
                        count_images: bool = True) -> SessionResult:
    """Collect a :class:`SessionResult` from an experiment's files (labels.csv, ``labels/autoids_<m>.csv``,
    ``classifier/validation.csv`` if present, and — with ``count_images`` — the image count of every tracklet from
    ``images_<m>.mat``, read from HDF5 metadata only).

    ``movies`` defaults to every movie with images, autoids or a failure. A movie without autoids that is not in
    ``failed_movies`` is reported as missing.
    """
    failed = {int(m): str(e) for m, e in (failed_movies or {}).items()}
    images = find_movie_images(experiment.images_dir)
    if movies is None:
        on_disk = {int(p.stem.split("_")[1]) for p in experiment.labels_dir.glob("autoids_*.csv")
                   if p.stem.split("_")[1].isdigit() and len(p.stem.split("_")) == 2}
        movie_list = sorted(set(images) | on_disk | set(failed))
    else:
        movie_list = sorted(set(int(m) for m in movies))
    autoids: dict[int, list[AutoID]] = {}
    n_images: dict[int, dict[str, int]] = {}
    for m in movie_list:
        f = experiment.autoids_file(m)
        if m not in failed and f.is_file():
            autoids[m] = read_autoids(f)
        if count_images and m in images:
            counts: dict[str, int] = {}
            for part in images[m].parts:
                with ImagesFile(part) as imf:
                    for t in imf.tracklets:
                        try:
                            counts[t] = imf.n_images(t)
                        except EmptyTrackletError:
                            counts[t] = 0
            n_images[m] = counts
        elif m not in autoids and m not in failed:
            n_images[m] = {}  # keeps the movie in the summary, as missing
    classifiers = {m: autoids_classifier(experiment.autoids_file(m)) for m in autoids}
    vfile = experiment.classdir / "validation.csv"
    all_counts = {t: n for counts in n_images.values() for t, n in counts.items()}
    plan_file, next_file = experiment.classdir / "review_plan.csv", experiment.classdir / "label_next.csv"
    return SessionResult(
        experiment=experiment.name, session=experiment.session, labels=read_labels(experiment.labels_file),
        autoids=autoids, n_images=n_images, failed_movies=failed, truth=dict(truth) if truth else None,
        validation_marks=load_validation_marks(vfile, all_counts) if vfile.is_file() else None,
        review_plan=read_review_plan(plan_file) if plan_file.is_file() else None,
        label_next=read_label_next(next_file) if next_file.is_file() else None,
        classifiers={m: c for m, c in classifiers.items() if c},
        images={m: images[m] for m in movie_list if m in images and m not in failed},
        expdir=experiment.expdir,
    )
