"""The extract-trainset app without HTTP: tracklet pool, images, export to the trainset, validation marks, stats.

What anTraX's MATLAB app ``validate_classifications`` did with its rough edges fixed: autoIDs
are matched by tracklet name (not by row position), marks are saved at once to ``classifier/validation.csv``, the
display and the export use the same white background, 0/0 rates show as n/a, an export never overwrites a different
file nor writes through a symbolic link out of the classifier folder, marks and exports are locked against other
processes (two apps open on one experiment lose nothing), and every request is checked (movie, tracklet, label, frame
indices) before anything is read or written.

Tracklets are read lazily: a movie's index (tracklet names, image counts from HDF5 metadata) is built on first use,
and images are read one tracklet at a time when asked for.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.autoids import read_autoids
from ..io.examples import existing_exports, png_bytes
from ..io.experiment import load_experiment, read_movies_info, select_movies
from ..io.images import EmptyTrackletError, ImagesFile
from ..io.labels import read_labels
from ..io.locking import LockTimeoutError
from ..io.marks import ValidationFile
from ..model import (
    MARKS,
    AntraxFormatError,
    AutoID,
    ExportConflictError,
    LabelSet,
    MovieImages,
    TrackletName,
)
from ..stats import label_kind, validation_stats
from ..trainset import (
    export_frame_numbers,
    export_images,
    export_lock,
    refresh_manifest,
)

log = logging.getLogger(__name__)

#: Marks allowed per kind of autoID, as anTraX enabled its buttons: Correct/Wrong/Should-not-have-an-ID for an ID,
#: Is-an-ant/Not-an-ant for a non-ant label; nothing for Unknown, multi or an unclassified tracklet.
MARKS_FOR_ID: tuple[str, ...] = ("correct", "wrong", "ambig")
MARKS_FOR_NONANT: tuple[str, ...] = ("falseneg", "trueneg")
#: A tracklet name as anTraX writes them (a MATLAB identifier); anything else in a request is refused before lookup.
_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")


class AppError(Exception):
    """A request the app refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class TrackletRef:
    """Where a tracklet lives and how many images it has (``error`` set when it cannot be shown)."""

    movie: int
    name: str
    part: Path
    n_images: int
    error: str | None = None


def check_label_dirname(label: str) -> None:
    """A label becomes a directory name under ``examples/``: refuse anything that could leave it."""
    if (not label or label in (".", "..") or any(c in label for c in "/\\\0") or label.startswith(".")
            or label != label.strip()):
        raise AppError(400, f"label {label!r} cannot be used as a directory name under examples/")


class TrainsetApp:
    """One experiment session opened for trainset extraction and validation.

    ``movlist`` restricts the movies offered; ``seed`` is the default of the random tracklet order (a client passes
    its own to get the same order back after a reload).
    """

    def __init__(self, expdir: str | Path, session: str | None = None, movlist: Iterable[int] | None = None,
                 seed: int | None = None):
        self.experiment = load_experiment(expdir, session)
        self.labels: LabelSet = read_labels(self.experiment.labels_file)
        self.movies: dict[int, MovieImages] = select_movies(self.experiment,
                                                            None if movlist is None else list(movlist))
        if not self.movies:
            raise AntraxFormatError(f"{self.experiment.images_dir}: no images_<m>.mat file"
                                    + ("" if movlist is None else f" for movies {sorted(movlist)}"))
        self.seed = int(seed) if seed is not None else secrets.randbelow(2**31)
        self.classdir = self.experiment.classdir
        self.examples_dir = self.classdir / "examples"
        self.validation = ValidationFile(self.classdir / "validation.csv")
        self.first_frames, self.frame_warning = self._movie_first_frames()
        self._lock = threading.RLock()
        self._index: dict[int, dict[str, TrackletRef]] = {}
        self._autoids: dict[int, tuple[float, dict[str, AutoID]]] = {}

    # ---------------------------------------------------------------------------------------------------------------
    # Experiment-level facts

    def _movie_first_frames(self) -> tuple[dict[int, int], str | None]:
        """Movie → ``fi`` (first absolute frame) from movies_info.txt. Without it, export names use the frame within
        the movie instead and the UI says so (the names stay unique: the tracklet name holds the movie)."""
        path = self.experiment.parameters_dir / "movies_info.txt"
        try:
            df = read_movies_info(path)
            fi = {int(m): int(v) for m, v in zip(df["index"], df["fi"])}
        except (AntraxFormatError, ValueError, TypeError) as exc:
            return {}, (f"{exc}; exported file names use frame numbers within the movie, not absolute experiment "
                        f"frames")
        missing = sorted(set(self.movies) - set(fi))
        if missing:
            return fi, (f"{path}: no row for movie(s) {', '.join(map(str, missing))}; their exported file names use "
                        f"frame numbers within the movie, not absolute experiment frames")
        return fi, None

    def is_classified(self, movie: int) -> bool:
        return self.experiment.autoids_file(movie).is_file()

    def info(self) -> dict:
        """What the page needs at start: experiment, labels (with their category), movies, default seed."""
        cats = {lab: self.labels.category_of(lab) for lab in self.labels.all_labels}
        return {
            "expname": self.experiment.name,
            "expdir": str(self.experiment.expdir),
            "session": self.experiment.session,
            "classdir": str(self.classdir),
            "labels": [{"label": lab, "category": cats[lab]} for lab in self.labels.all_labels],
            "movies": [{"movie": m, "classified": self.is_classified(m), "parted": mi.is_parted}
                       for m, mi in sorted(self.movies.items())],
            "seed": self.seed,
            "frame_warning": self.frame_warning,
            "marks": list(MARKS),
        }

    # ---------------------------------------------------------------------------------------------------------------
    # Lookups (every request goes through these: they are the validation of user input)

    def parse_movie(self, value: object) -> int:
        try:
            movie = int(str(value))
        except (TypeError, ValueError):
            raise AppError(400, f"movie must be a movie number, got {value!r}") from None
        if movie not in self.movies:
            raise AppError(404, f"unknown movie {movie}: this experiment has images for movies "
                                f"{', '.join(map(str, sorted(self.movies)))}")
        return movie

    def movie_index(self, movie: int) -> dict[str, TrackletRef]:
        """Tracklets of a movie (all parts, file order) with their image counts, read from HDF5 metadata once."""
        with self._lock:
            if movie in self._index:
                return self._index[movie]
            out: dict[str, TrackletRef] = {}
            for part in self.movies[movie].parts:
                with ImagesFile(part) as f:
                    for name in f.tracklets:
                        if name in out:
                            log.warning("%s: tracklet %s also in %s; using the first", part, name, out[name].part)
                            continue
                        try:
                            out[name] = TrackletRef(movie, name, part, f.n_images(name))
                        except EmptyTrackletError as exc:
                            out[name] = TrackletRef(movie, name, part, 0, str(exc))
                        except AntraxFormatError as exc:
                            out[name] = TrackletRef(movie, name, part, 0, str(exc))
            self._index[movie] = out
            return out

    def tracklet_ref(self, movie: object, tracklet: object) -> TrackletRef:
        m = self.parse_movie(movie)
        name = str(tracklet or "")
        if not _SAFE_NAME.match(name):
            raise AppError(400, f"{name!r} is not a tracklet name (anTraX names look like trj_id6_ti1_57002_tf1_57060)")
        ref = self.movie_index(m).get(name)
        if ref is None:
            raise AppError(404, f"unknown tracklet {name!r} in movie {m} ({', '.join(p.name for p in self.movies[m].parts)})")
        if ref.error:
            raise AppError(422, ref.error)
        return ref

    def autoids(self, movie: int) -> dict[str, AutoID]:
        """tracklet → autoID row of ``labels/autoids_<m>.csv`` ({} when the movie is not classified); re-read when the
        file changes (a classify run may finish while the app is open)."""
        path = self.experiment.autoids_file(movie)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            cached = self._autoids.get(movie)
            if cached and cached[0] == mtime:
                return cached[1]
            rows = {r.tracklet: r for r in read_autoids(path)}
            self._autoids[movie] = (mtime, rows)
            return rows

    def parse_label(self, label: object) -> str:
        lab = str(label or "")
        if lab not in self.labels.all_labels:
            raise AppError(400, f"label {lab!r} is not in {self.experiment.labels_file} (labels: "
                                f"{', '.join(self.labels.all_labels)})")
        check_label_dirname(lab)
        return lab

    # ---------------------------------------------------------------------------------------------------------------
    # Pool of tracklets

    def pool(self, movie: object = None, autoid: str | None = None, seed: object = None) -> dict:
        """The tracklets of a movie (or ``all``) in a random order fixed by ``seed`` — the order does not depend on
        the filter, so filtering keeps the relative order — optionally only those whose autoID is ``autoid``."""
        if movie in (None, ""):
            movies = [min(self.movies)]
        elif str(movie) == "all":
            movies = sorted(self.movies)
        else:
            movies = [self.parse_movie(movie)]
        try:
            seed = self.seed if seed in (None, "") else int(str(seed))
        except ValueError:
            raise AppError(400, f"seed must be an integer, got {seed!r}") from None
        autoid = autoid or None
        marks = self.validation.marks()
        rows, skipped = [], []
        for m in movies:
            ids = self.autoids(m)
            for ref in self.movie_index(m).values():
                if ref.error:
                    skipped.append({"movie": m, "tracklet": ref.name, "error": ref.error})
                    continue
                a = ids.get(ref.name)
                rows.append({"movie": m, "tracklet": ref.name, "n": ref.n_images,
                             "autoID": a.label if a else "", "score": a.score if a else None,
                             "mark": marks.get(ref.name, {}).get("mark", "")})
        random.Random(f"{seed}:{','.join(map(str, movies))}").shuffle(rows)
        if autoid is not None:
            rows = [r for r in rows if r["autoID"] == autoid]
        classified = [m for m in movies if self.is_classified(m)]
        return {"movies": movies, "classified": bool(classified), "seed": seed, "autoid": autoid,
                "autoids_present": sorted({r["autoID"] for r in rows if r["autoID"]} if autoid is None else [autoid]),
                "tracklets": rows, "skipped": skipped}

    # ---------------------------------------------------------------------------------------------------------------
    # One tracklet

    def frame_numbers(self, ref: TrackletRef) -> tuple[list[int], str]:
        """Frame number of every image for export names: absolute ``fi[m] + mf - 1`` (anTraX), or the frame within
        the movie when movies_info.txt does not know the movie. Returns (numbers, 'absolute'|'movie')."""
        try:
            return export_frame_numbers(ref.name, ref.n_images, self.first_frames.get(ref.movie))
        except ValueError as exc:
            raise AppError(422, f"{ref.part}: {exc}; cannot number its frames for export") from None

    def existing_exports(self, ref: TrackletRef) -> dict[str, int]:
        """label → number of files of this tracklet already in the trainset."""
        return existing_exports(self.examples_dir, self.experiment.name, ref.name)

    def tracklet(self, movie: object, tracklet: object) -> dict:
        """Info on one tracklet: frames, length, autoID and score, its mark, the marks allowed, earlier exports."""
        ref = self.tracklet_ref(movie, tracklet)
        a = self.autoids(ref.movie).get(ref.name)
        mark = self.validation.marks().get(ref.name, {}).get("mark", "")
        out = {"movie": ref.movie, "tracklet": ref.name, "n": ref.n_images, "file": ref.part.name,
               "autoID": a.label if a else "", "score": a.score if a else None,
               "best_frame": a.best_frame if a else None, "classified": self.is_classified(ref.movie),
               "mark": mark, "allowed_marks": list(self.allowed_marks(a.label if a else "")),
               "exported": self.existing_exports(ref)}
        try:
            tn = TrackletName.parse(ref.name)
            out["movie_frames"] = [tn.first_frame, tn.last_frame]
        except ValueError:
            out["movie_frames"] = None
        try:
            nums, mode = self.frame_numbers(ref)
            out["frames"] = [nums[0], nums[-1]]
            out["frame_mode"] = mode
        except AppError:
            out["frames"], out["frame_mode"] = None, None
        return out

    def allowed_marks(self, autoid: str) -> tuple[str, ...]:
        kind = label_kind(autoid, self.labels) if autoid else None
        if kind == "ID":
            return MARKS_FOR_ID
        if kind == "non-ant":
            return MARKS_FOR_NONANT
        return ()

    def read_images(self, ref: TrackletRef) -> np.ndarray:
        """The tracklet's images (N, H, W, 3) RGB with anTraX's white background — as displayed and as exported."""
        try:
            with ImagesFile(ref.part) as f:
                return f.read(ref.name, white_bg=True)
        except AntraxFormatError as exc:
            raise AppError(422, str(exc)) from None

    def frames(self, movie: object, tracklet: object) -> dict:
        """All images of a tracklet as base64 PNGs (one request per tracklet, one read of its dataset)."""
        ref = self.tracklet_ref(movie, tracklet)
        images = self.read_images(ref)
        try:
            nums, mode = self.frame_numbers(ref)
        except AppError:
            nums, mode = list(range(1, len(images) + 1)), "index"
        return {"movie": ref.movie, "tracklet": ref.name, "height": int(images.shape[1]),
                "width": int(images.shape[2]), "frame_mode": mode,
                "frames": [{"i": i, "frame": nums[i] if i < len(nums) else None,
                            "png": base64.b64encode(png_bytes(img)).decode("ascii")} for i, img in enumerate(images)]}

    def image_png(self, movie: object, tracklet: object, index: object) -> bytes:
        ref = self.tracklet_ref(movie, tracklet)
        try:
            i = int(str(index))
        except ValueError:
            raise AppError(400, f"image index must be an integer, got {index!r}") from None
        if not 0 <= i < ref.n_images:
            raise AppError(404, f"tracklet {ref.name} has {ref.n_images} images; index {i} is out of range")
        return png_bytes(self.read_images(ref)[i])

    # ---------------------------------------------------------------------------------------------------------------
    # Export

    def export(self, movie: object, tracklet: object, label: object, frames: object = None) -> dict:
        """Write the tracklet's images (all, or the 0-based ``frames``) to ``examples/<label>/`` as
        ``<expname>.<tracklet>.<frame>.png`` (white background, as read), then refresh the trainset manifest.

        Checked before anything is written: the label is in labels.csv; a file of the same name with *different*
        pixels is never overwritten (the export is refused); the same images already exported under another label
        are refused too (one image in two classes spoils training). Identical existing files are skipped."""
        ref = self.tracklet_ref(movie, tracklet)
        lab = self.parse_label(label)
        if frames is None:
            idx = list(range(ref.n_images))
        else:
            if not isinstance(frames, list) or not frames or not all(isinstance(i, int) and not isinstance(i, bool)
                                                                    for i in frames):
                raise AppError(400, "frames must be a non-empty list of image indices (integers)")
            bad = [i for i in frames if not 0 <= i < ref.n_images]
            if bad:
                raise AppError(400, f"frame index {bad[0]} out of range: tracklet {ref.name} has {ref.n_images} "
                                    f"images (indices 0-{ref.n_images - 1})")
            idx = sorted(set(frames))
        nums, mode = self.frame_numbers(ref)
        images = self.read_images(ref)
        ldir = self.examples_dir / lab
        try:
            # one inter-process lock over the check, the writes and the manifest: another app (another process)
            # exporting this tracklet under another label at the same moment gets the 409, not a second copy
            with export_lock(self.classdir):
                written, skipped = export_images(self.examples_dir, self.experiment.name, ref.name, lab,
                                                 images[idx], [nums[i] for i in idx])
                manifest = refresh_manifest(self.classdir) if written else None
                exported = self.existing_exports(ref)
        except ExportConflictError as exc:
            raise AppError(409, str(exc)) from None
        except LockTimeoutError as exc:
            raise AppError(503, str(exc)) from None
        return {"label": lab, "dir": str(ldir), "written": written, "skipped": skipped,
                "frame_mode": mode, "manifest": manifest, "exported": exported}

    # ---------------------------------------------------------------------------------------------------------------
    # Validation marks and stats

    def mark(self, movie: object, tracklet: object, mark: object) -> dict:
        """Save a validation mark (``correct``/``wrong``/``ambig`` for an ID, ``falseneg``/``trueneg`` for a non-ant
        autoID) at once; ``None`` removes the tracklet's mark."""
        ref = self.tracklet_ref(movie, tracklet)
        a = self.autoids(ref.movie).get(ref.name)
        if mark is None:
            self._set_mark(ref.name, None)
            return {"tracklet": ref.name, "mark": ""}
        if mark not in MARKS:
            raise AppError(400, f"mark must be one of {', '.join(MARKS)} (or null to remove), got {mark!r}")
        if a is None:
            raise AppError(409, f"tracklet {ref.name} has no autoID (movie {ref.movie} is not classified: "
                                f"{self.experiment.autoids_file(ref.movie)} "
                                f"{'has no row for it' if self.is_classified(ref.movie) else 'does not exist'}); "
                                f"there is nothing to validate")
        allowed = self.allowed_marks(a.label)
        if mark not in allowed:
            raise AppError(409, f"mark {mark!r} does not apply to autoID {a.label!r} of {ref.name} (allowed: "
                                f"{', '.join(allowed) or 'none — only IDs and non-ant labels are validated'})")
        row = self._set_mark(ref.name, str(mark), {"movie": ref.movie, "autoID": a.label, "n_frames": ref.n_images})
        return {"tracklet": ref.name, "mark": row["mark"] if row else ""}

    def _set_mark(self, tracklet: str, mark: str | None, fields: dict | None = None) -> dict | None:
        """:meth:`ValidationFile.set` (locked against other processes); a lock held too long is a 503, not a 500."""
        try:
            return self.validation.set(tracklet, mark, fields)
        except LockTimeoutError as exc:
            raise AppError(503, str(exc)) from None

    def stats(self, movie: object = None, autoid: str | None = None) -> dict:
        """anTraX's running counters (spec §12): over all marks of the session (validation.csv), and the assignment
        rate over the current pool (movie + autoID filter)."""
        marks = self.validation.marks()

        def n_frames(r: dict) -> int:
            try:
                return int(r.get("n_frames") or 0)
            except ValueError:
                return 0

        vs = validation_stats((r["mark"], n_frames(r)) for r in marks.values())

        def rate(pair) -> dict:
            return {k: {"value": r.value, "k": r.k, "n": r.n, "text": r.format()}
                    for k, r in zip(("tracklets", "frames"), pair)}

        pool = self.pool(movie, autoid)["tracklets"]
        assigned = [r for r in pool if self.allowed_marks(r["autoID"])]
        n_all = sum(r["n"] for r in pool)
        return {
            "checked": {"tracklets": len(marks), "frames": sum(n_frames(r) for r in marks.values())},
            "counts": vs.counts,
            "wrong_id": rate(vs.wrong_id),
            "false_positive": rate(vs.false_positive),
            "false_negative": rate(vs.false_negative),
            "pool": {"tracklets": len(pool), "frames": n_all,
                     "assigned_tracklets": len(assigned), "assigned_frames": sum(r["n"] for r in assigned)},
            "file": str(self.validation.path),
        }
