"""The extract-trainset app without HTTP: tracklet pool, images, export to the trainset, validation marks, stats.

What anTraX's MATLAB app ``validate_classifications`` did with its rough edges fixed: autoIDs
are matched by tracklet name (not by row position), marks are saved at once to ``classifier/validation.csv``, the
display and the export use the same white background, 0/0 rates show as n/a, an export never overwrites a different
file nor writes through a symbolic link out of the classifier folder, marks and exports are locked against other
processes (two apps open on one experiment lose nothing), and every request is checked (movie, tracklet, label, frame
indices) before anything is read or written.

Tracklets are read lazily: a movie's index (tracklet names, image counts from HDF5 metadata) is built on first use,
and images are read one tracklet at a time when asked for (a long tracklet as every k-th image first, the rest on
demand).

Every mark records who made it (``annotator``), the autoID it judged and the classifier that produced that autoID;
a mark whose autoID or classifier changed since is *stale*: shown as such, listed for a re-check, never counted.
Review lists (the workflow's review plan and label-next list, and the re-check list) and the statistics over
current marks are :mod:`antrax_pipe.app.review`; per-frame probabilities :mod:`antrax_pipe.app.probs`.
"""

from __future__ import annotations

import base64
import getpass
import logging
import random
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.autoids import autoids_classifier, provenance_path, read_autoids
from ..io.examples import existing_exports, png_bytes
from ..io.experiment import load_experiment, read_movies_info, select_movies
from ..io.images import EmptyTrackletError, ImagesFile
from ..io.labels import read_labels
from ..io.marks import ValidationFile, stale_reason
from ..model import MARKS, AntraxFormatError, AutoID, LabelSet, MovieImages, TrackletName
from ..stats import label_kind
from ..trainset import export_frame_numbers
from .errors import AppError
from .labelling import LabellingMixin
from .probs import ProbsLookup
from .review import LIST_FILES, SOURCES, mark_state, marks_summary, read_list

log = logging.getLogger(__name__)

#: Marks allowed per kind of autoID, as anTraX enabled its buttons: Correct/Wrong/Should-not-have-an-ID for an ID,
#: Is-an-ant/Not-an-ant for a non-ant label; nothing for Unknown, multi or an unclassified tracklet.
MARKS_FOR_ID: tuple[str, ...] = ("correct", "wrong", "ambig")
MARKS_FOR_NONANT: tuple[str, ...] = ("falseneg", "trueneg")
#: A tracklet name as anTraX writes them (a MATLAB identifier); anything else in a request is refused before lookup.
_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
#: Most images a tracklet shows at first: a longer one is shown as every k-th image (the rest loaded on demand).
MAX_FRAMES_SHOWN = 120


def default_annotator() -> str:
    """The OS user name (``unknown`` where it cannot be found)."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError, ImportError):
        return "unknown"


def clean_annotator(name: str) -> str:
    """An annotator name for validation.csv: trimmed, 1–64 printable characters."""
    name = " ".join(str(name).split())
    if not name or len(name) > 64 or not name.isprintable():
        raise ValueError(f"annotator name {name!r}: give 1 to 64 printable characters (e.g. --annotator alice)")
    return name


def _int_param(value: object, what: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(str(value))
    except ValueError:
        raise AppError(400, f"{what} must be an integer, got {value!r}") from None


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


class TrainsetApp(LabellingMixin):
    """One experiment session opened for trainset extraction and validation.

    ``movlist`` restricts the movies offered; ``seed`` is the default of the random tracklet order (a client passes
    its own to get the same order back after a reload); ``annotator`` names who marks (default: the OS user);
    ``probs_dir`` is where the movies' probabilities files are (``results/probs/<exp>`` or ``results/probs``; None:
    no per-frame probabilities); a tracklet longer than ``max_frames_shown`` images is shown as every k-th image.
    """

    def __init__(self, expdir: str | Path, session: str | None = None, movlist: Iterable[int] | None = None,
                 seed: int | None = None, annotator: str | None = None, probs_dir: str | Path | None = None,
                 max_frames_shown: int = MAX_FRAMES_SHOWN):
        self.experiment = load_experiment(expdir, session)
        self.labels: LabelSet = read_labels(self.experiment.labels_file)
        self.movies: dict[int, MovieImages] = select_movies(self.experiment,
                                                            None if movlist is None else list(movlist))
        if not self.movies:
            raise AntraxFormatError(f"{self.experiment.images_dir}: no images_<m>.mat file"
                                    + ("" if movlist is None else f" for movies {sorted(movlist)}"))
        self.seed = int(seed) if seed is not None else secrets.randbelow(2**31)
        self.annotator = clean_annotator(annotator if annotator is not None else default_annotator())
        self.max_frames_shown = max(1, int(max_frames_shown))
        self.classdir = self.experiment.classdir
        self.examples_dir = self.classdir / "examples"
        self.validation = ValidationFile(self.classdir / "validation.csv")
        self.probs = ProbsLookup(probs_dir, self.experiment.name)
        self.first_frames, self.frame_warning = self._movie_first_frames()
        self._lock = threading.RLock()
        self._index: dict[int, dict[str, TrackletRef]] = {}
        self._autoids: dict[int, tuple[float, dict[str, AutoID]]] = {}
        self._classifiers: dict[int, tuple[tuple, str]] = {}
        self._undo: list[dict[str, Any]] = []

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
        """What the page needs at start: experiment, labels (with their category), movies, default seed, who marks,
        which review lists exist."""
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
            "annotator": self.annotator,
            "max_frames_shown": self.max_frames_shown,
            "lists": {k: (self.classdir / f).is_file() for k, f in LIST_FILES.items()},
            "probs": self.probs.dir is not None,
        }

    def classifier(self, movie: int) -> str:
        """sha256 of the classifier that produced the movie's current autoIDs: from the autoids file's provenance
        document, else from its probabilities file; "" when unknown (re-read when either file changes)."""
        path = self.experiment.autoids_file(movie)
        stamp = []
        for f in (path, provenance_path(path)):
            try:
                stamp.append(f.stat().st_mtime_ns)
            except OSError:
                stamp.append(None)
        key = tuple(stamp)
        with self._lock:
            cached = self._classifiers.get(movie)
            if cached and cached[0] == key:
                return cached[1]
        sha = autoids_classifier(path) or self.probs.classifier(movie)
        with self._lock:
            self._classifiers[movie] = (key, sha)
        return sha

    def movie_of_mark(self, row: Mapping[str, str]) -> int | None:
        """The movie of a mark: its ``movie`` column, else the movie in its tracklet name."""
        try:
            return int(str(row.get("movie") or "").strip())
        except ValueError:
            pass
        try:
            return TrackletName.parse(str(row.get("tracklet") or "")).movie
        except ValueError:
            return None

    def judge(self, row: Mapping[str, str]) -> str | None:
        """Why a mark is stale (:func:`antrax_pipe.io.marks.stale_reason`), None when it judges the current
        classification."""
        m = self.movie_of_mark(row)
        if m is None:
            return stale_reason(row, None)
        a = self.autoids(m).get(str(row["tracklet"]))
        return stale_reason(row, a.label if a else None, self.classifier(m))

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

    def _marks_by_tracklet(self) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        for r in self.validation.rows():
            out.setdefault(r["tracklet"], []).append(r)
        return out

    def _pool_row(self, ref: TrackletRef, ids: Mapping[str, AutoID], marks: Mapping[str, list], **extra) -> dict:
        a = ids.get(ref.name)
        st = mark_state(marks.get(ref.name, []), self.annotator, self.judge)
        return {"movie": ref.movie, "tracklet": ref.name, "n": ref.n_images, "autoID": a.label if a else "",
                "score": a.score if a else None, "mark": st["mark"], "stale": st["stale"], **extra}

    def pool(self, movie: object = None, autoid: str | None = None, seed: object = None,
             source: str | None = None) -> dict:
        """The tracklets to go through. ``source`` random (default): those of a movie (or ``all``) in a random order
        fixed by ``seed`` — the order does not depend on the filter, so filtering keeps the relative order —
        optionally only those whose autoID is ``autoid``. ``review_plan`` / ``label_next``: the workflow's lists in
        their file order; ``stale``: tracklets whose marks judged another autoID or classifier (all movies)."""
        source = source or "random"
        if source not in SOURCES:
            raise AppError(400, f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        if source != "random":
            return self._list_pool(source)
        if movie in (None, ""):
            movies = [min(self.movies)]
        elif str(movie) == "all":
            movies = sorted(self.movies)
        else:
            movies = [self.parse_movie(movie)]
        seed = _int_param(seed, "seed", self.seed)
        autoid = autoid or None
        marks = self._marks_by_tracklet()
        rows, skipped = [], []
        for m in movies:
            ids = self.autoids(m)
            for ref in self.movie_index(m).values():
                if ref.error:
                    skipped.append({"movie": m, "tracklet": ref.name, "error": ref.error})
                    continue
                rows.append(self._pool_row(ref, ids, marks))
        random.Random(f"{seed}:{','.join(map(str, movies))}").shuffle(rows)
        if autoid is not None:
            rows = [r for r in rows if r["autoID"] == autoid]
        classified = [m for m in movies if self.is_classified(m)]
        return {"source": source, "movies": movies, "classified": bool(classified), "seed": seed, "autoid": autoid,
                "autoids_present": sorted({r["autoID"] for r in rows if r["autoID"]} if autoid is None else [autoid]),
                "tracklets": rows, "skipped": skipped}

    def _list_pool(self, source: str) -> dict:
        """A review list (or the re-check list) as a pool, in its order; entries the app cannot show are skipped
        with the reason."""
        marks = self._marks_by_tracklet()
        if source == "stale":
            summary = marks_summary(self.validation.rows(), self.judge)
            items = [{"movie": self.movie_of_mark(r), "tracklet": t, "reason": why}
                     for t, (r, why) in summary["stale"].items()]
        else:
            items = read_list(self.classdir, source)
        rows, skipped = [], []
        for item in items:
            m, t = item["movie"], item["tracklet"]
            extra = {k: v for k, v in item.items() if k not in ("movie", "tracklet")}
            ref = self.movie_index(m).get(t) if m in self.movies else None
            if ref is None or ref.error:
                why = (ref.error if ref else f"movie {m} is not offered by this app" if m not in self.movies
                       else f"no tracklet {t} in movie {m}")
                skipped.append({"movie": m, "tracklet": t, "error": why})
                continue
            rows.append(self._pool_row(ref, self.autoids(m), marks, **extra))
        movies = sorted({r["movie"] for r in rows})
        return {"source": source, "movies": movies, "classified": any(self.is_classified(m) for m in movies),
                "seed": None, "autoid": None, "autoids_present": sorted({r["autoID"] for r in rows if r["autoID"]}),
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

    def movie_frames(self, ref: TrackletRef) -> list[int] | None:
        """The movie frame of every image (the numbering shown everywhere: first frame of the name + index)."""
        try:
            first = TrackletName.parse(ref.name).first_frame
        except ValueError:
            return None
        return list(range(first, first + ref.n_images))

    def existing_exports(self, ref: TrackletRef) -> dict[str, int]:
        """label → number of files of this tracklet already in the trainset."""
        return existing_exports(self.examples_dir, self.experiment.name, ref.name)

    def tracklet(self, movie: object, tracklet: object) -> dict:
        """Info on one tracklet: frames, length, autoID and score, its marks (own, stale or not; others'), the marks
        allowed, earlier exports."""
        ref = self.tracklet_ref(movie, tracklet)
        a = self.autoids(ref.movie).get(ref.name)
        st = mark_state(self._marks_by_tracklet().get(ref.name, []), self.annotator, self.judge)
        mf = self.movie_frames(ref)
        best = a.best_frame if a else None
        out = {"movie": ref.movie, "tracklet": ref.name, "n": ref.n_images, "file": ref.part.name,
               "autoID": a.label if a else "", "score": a.score if a else None,
               "best_frame": best, "best_movie_frame": mf[best - 1] if mf and best and 0 < best <= len(mf) else None,
               "classified": self.is_classified(ref.movie), "classifier": self.classifier(ref.movie),
               **st, "allowed_marks": list(self.allowed_marks(a.label if a else "")),
               "exported": self.existing_exports(ref), "annotator": self.annotator,
               "movie_frames": [mf[0], mf[-1]] if mf else None}
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

    def read_images(self, ref: TrackletRef, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The tracklet's images [start, stop) (N, H, W, 3) RGB with anTraX's white background — as displayed and as
        exported."""
        try:
            with ImagesFile(ref.part) as f:
                return f.read(ref.name, white_bg=True, start=start, stop=stop)
        except AntraxFormatError as exc:
            raise AppError(422, str(exc)) from None

    def frames(self, movie: object, tracklet: object, step: object = None, start: object = None,
               stop: object = None) -> dict:
        """Images of a tracklet as base64 PNGs: all, or images ``start``…``stop`` - 1 every ``step``-th (the last
        one included), each with its movie frame, export frame number and — when the probabilities file is
        reachable — its two most probable classes (``disagree``: the top class is not the tracklet's label)."""
        ref = self.tracklet_ref(movie, tracklet)
        n = ref.n_images
        k = _int_param(step, "step", 1)
        lo, hi = _int_param(start, "start", 0), _int_param(stop, "stop", n)
        if k < 1 or not 0 <= lo < hi <= n:
            raise AppError(400, f"tracklet {ref.name} has {n} images: need 0 <= start < stop <= {n} and step >= 1 "
                                f"(got start {lo}, stop {hi}, step {k})")
        idx = list(range(lo, hi, k))
        if idx[-1] != hi - 1:
            idx.append(hi - 1)
        images = self.read_images(ref, lo, hi)
        try:
            nums, mode = self.frame_numbers(ref)
        except AppError:
            nums, mode = list(range(1, n + 1)), "index"
        mf = self.movie_frames(ref) or [None] * n
        a = self.autoids(ref.movie).get(ref.name)
        top2 = self.probs.top2(ref.movie, ref.name, n)
        judged = bool(a and self.allowed_marks(a.label))
        frames = []
        for i in idx:
            fr = {"i": i, "frame": nums[i] if i < len(nums) else None, "movie_frame": mf[i],
                  "png": base64.b64encode(png_bytes(images[i - lo])).decode("ascii")}
            if top2 is not None:
                fr["top2"] = [[c, p] for c, p in top2[i]]
                fr["disagree"] = judged and top2[i][0][0] != a.label
            frames.append(fr)
        return {"movie": ref.movie, "tracklet": ref.name, "n": n, "step": k, "start": lo, "stop": hi,
                "height": int(images.shape[1]), "width": int(images.shape[2]), "frame_mode": mode,
                "probs": top2 is not None, "frames": frames}

    def image_png(self, movie: object, tracklet: object, index: object) -> bytes:
        ref = self.tracklet_ref(movie, tracklet)
        try:
            i = int(str(index))
        except ValueError:
            raise AppError(400, f"image index must be an integer, got {index!r}") from None
        if not 0 <= i < ref.n_images:
            raise AppError(404, f"tracklet {ref.name} has {ref.n_images} images; index {i} is out of range")
        return png_bytes(self.read_images(ref, i, i + 1)[0])
