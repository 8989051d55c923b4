"""Finding experiments, sessions and movies: EXPLIST, ``--session``, ``--movlist``, movies_info.txt."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from ..model import AntraxFormatError, Experiment, MovieImages, TrainsetError
from .images import find_movie_images

log = logging.getLogger(__name__)


def is_expdir(d: str | Path) -> bool:
    """anTraX's test: some ``<d>/*/parameters/Trck.mat`` exists."""
    d = Path(d)
    return d.is_dir() and any(d.glob("*/parameters/Trck.mat"))


def find_sessions(expdir: str | Path) -> list[str]:
    """Session names of an experiment, newest ``Trck.mat`` first (anTraX picks the first)."""
    trcks = sorted(Path(expdir).glob("*/parameters/Trck.mat"), key=lambda p: (p.stat().st_mtime, p.parent.parent.name))
    return [p.parent.parent.name for p in reversed(trcks)]


def load_experiment(expdir: str | Path, session: str | None = None) -> Experiment:
    """The experiment at ``expdir`` with the given session, or the one whose Trck.mat is newest."""
    expdir = Path(expdir).expanduser().absolute()
    if not expdir.is_dir():
        raise AntraxFormatError(f"{expdir}: experiment directory not found")
    sessions = find_sessions(expdir)
    if session is None:
        if not sessions:
            raise AntraxFormatError(f"{expdir}: not an anTraX experiment (no <session>/parameters/Trck.mat)")
        session = sessions[0]
    elif session not in sessions:
        raise AntraxFormatError(
            f"{expdir}: session {session!r} not found (no {session}/parameters/Trck.mat); "
            f"sessions here: {', '.join(sessions) or 'none'}"
        )
    return Experiment(expdir=expdir, session=session)


def find_expdirs(root: str | Path) -> list[Path]:
    """All experiment directories under ``root`` (recursive, nested ones included), sorted."""
    root = Path(root)
    found = {p.parent.parent.parent for p in root.rglob("parameters/Trck.mat") if p.parent.name == "parameters"}
    return sorted(d.absolute() for d in found if is_expdir(d))


def _explist_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank, non-comment lines of an EXPLIST file. Read as UTF-8 with or
    without a BOM, any line ends (a list saved by Notepad works); leading spaces are not significant (anTraX skipped
    indented lines silently, which lost experiments)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AntraxFormatError(f"{path}: the experiment list is not UTF-8 text ({exc})") from exc
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1)
            if ln.strip() and not ln.strip().startswith("#")]


def _explist_entry(path: Path, lineno: int, line: str) -> Path:
    """The experiment of one EXPLIST line: the whole line (paths may hold spaces or ``#``), else its first token
    (anTraX's lists may carry more columns); relative paths are relative to the list file."""
    for text in dict.fromkeys((line, line.split()[0])):
        d = Path(text).expanduser()
        d = d if d.is_absolute() else path.parent / d
        if is_expdir(d):
            return d.absolute()
    raise AntraxFormatError(f"{path}: line {lineno}: {line!r} is not an anTraX experiment directory "
                            f"(no <session>/parameters/Trck.mat in it)")


def parse_explist(arg: str | Path) -> list[Path]:
    """EXPLIST as in anTraX: an expdir; a text file with one expdir per line (blank lines and ``#`` comments
    skipped; relative paths are relative to the file); or a folder searched recursively for experiments."""
    p = Path(arg).expanduser()
    if p.is_dir():
        if is_expdir(p):
            return [p.absolute()]
        found = find_expdirs(p)
        if not found:
            raise AntraxFormatError(f"{p}: no anTraX experiment found in this folder (none has */parameters/Trck.mat)")
        return found
    if p.is_file():
        out = list(dict.fromkeys(_explist_entry(p, lineno, line) for lineno, line in _explist_lines(p)))
        if not out:
            raise AntraxFormatError(f"{p}: the experiment list is empty")
        return out
    raise AntraxFormatError(f"{p}: EXPLIST is neither an experiment directory, a list file nor a folder")


_MOVLIST_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_movlist(spec: str | int | list | None) -> list[int] | None:
    """``--movlist``: ``4``, ``3,5,6``, ``1-5,7`` → sorted unique ints; ``all``/None → None (all movies);
    ``0`` → [] (anTraX: nothing)."""
    if spec is None:
        return None
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, list):
        return sorted({int(x) for x in spec})
    s = str(spec).strip()
    if s.lower() == "all":
        return None
    if s == "0":
        return []
    out: set[int] = set()
    for item in s.split(","):
        m = _MOVLIST_ITEM.match(item)
        if not m:
            raise ValueError(f"invalid movlist {spec!r}: {item!r} is not a number or a range like 1-5")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise ValueError(f"invalid movlist {spec!r}: range {item.strip()!r} runs backwards")
        out.update(range(a, b + 1))
    return sorted(out)


def select_movies(experiment: Experiment, movlist: list[int] | None = None) -> dict[int, MovieImages]:
    """Movies of the experiment that have blob images, restricted to ``movlist`` when given. Movies the list names
    that have no images are named in a warning; when none of the named movies exists it is an error (a typo must not
    turn into "nothing to do"). An empty list (anTraX's ``0``) selects nothing, on purpose."""
    movies = find_movie_images(experiment.images_dir)
    if movlist is None:
        return movies
    missing = sorted(set(movlist) - set(movies))
    selected = {m: v for m, v in movies.items() if m in set(movlist)}
    if missing:
        have = ", ".join(map(str, sorted(movies))) or "none"
        msg = (f"{experiment.images_dir}: no images_<m>.mat for movie(s) {', '.join(map(str, missing))} "
               f"(movies with images: {have})")
        if not selected:
            raise AntraxFormatError(msg)
        log.warning("%s; classifying the others", msg)
    return selected


def read_movies_info(path: str | Path) -> pd.DataFrame:
    """``parameters/movies_info.txt`` (space-delimited, header) indexed by movie; needs ``fi`` and ``ff``."""
    path = Path(path)
    if not path.is_file():
        raise AntraxFormatError(f"{path}: movies_info.txt not found")
    try:
        df = pd.read_csv(path, sep=" ")
    except Exception as exc:
        raise AntraxFormatError(f"{path}: cannot be parsed as a space-delimited table ({exc})") from exc
    missing = {"index", "fi", "ff"} - set(df.columns)
    if missing:
        raise AntraxFormatError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return df.set_index("index", drop=False)


def resolve_classdir(path: str | os.PathLike, session: str | None = None, create: bool = False) -> Path:
    """A classdir as anTraX resolves it: a dir with ``examples/`` → itself; an experiment dir → its (latest, or
    ``session``) session's ``classifier/``. With ``create`` (merge destinations) any other dir, or a path that does
    not exist yet, is taken as a (new) classdir."""
    p = Path(path).expanduser()
    if (p / "examples").is_dir():
        return p
    if is_expdir(p):
        return load_experiment(p, session).classdir
    if create and (not p.exists() or p.is_dir()):
        return p
    raise TrainsetError(f"{p}: neither a classifier directory (with examples/) nor an anTraX experiment directory")


def read_truth(path: Path) -> dict[str, str]:
    """Ground-truth CSV ``movie,tracklet,label`` → tracklet → label."""
    df = pd.read_csv(path, dtype=str)
    missing = {"tracklet", "label"} - set(df.columns)
    if missing:
        raise AntraxFormatError(f"{path}: ground-truth file lacks column(s) {', '.join(sorted(missing))}")
    return dict(zip(df["tracklet"], df["label"]))
