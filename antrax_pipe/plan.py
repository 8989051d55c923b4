"""The workflow's plan: which experiments, sessions, movies and classifiers a config + experiment sheet describe.

Kept out of the Snakefile so that the DAG's shape is plain Python that tests (and the CLI) can check without
running Snakemake, and so that ``common.smk`` stays a thin layer of input functions.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .io.atomic import atomic_write_text, file_sha256
from .io.examples import IMAGE_SUFFIXES
from .io.experiment import load_experiment, parse_movlist, select_movies
from .model import AntraxFormatError, Experiment, MovieImages

#: what counts as an example image (the same list as ``antrax_pipe.trainset.IMAGE_SUFFIXES``, which imports cv2)
_HASH_CACHE_FORMAT = "antrax-pipe-example-hashes-1"


@dataclass
class PlannedExperiment:
    """One row of the experiment sheet, resolved: session chosen, movies with images found."""

    name: str
    experiment: Experiment
    movies: dict[int, MovieImages]
    classifier: str
    truth: Path | None = None


@dataclass
class PlannedClassifier:
    """A classifier the workflow trains (from merged trainsets) or takes as given (``file``)."""

    name: str
    classdir: Path
    model_name: str = "classifier"
    sources: list[Path] = field(default_factory=list)  # classdirs whose examples are merged in
    file: Path | None = None  # a pre-trained classifier: no merge, no training
    train: dict = field(default_factory=dict)

    @property
    def model_file(self) -> Path:
        return self.file if self.file is not None else self.classdir / f"{self.model_name}.h5"

    @property
    def trained_here(self) -> bool:
        return self.file is None


def _resolve(path: str | os.PathLike, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def read_sheet(path: str | Path) -> pd.DataFrame:
    """The experiment sheet (TSV, one row per experiment); empty cells become None."""
    path = Path(path)
    if not path.is_file():
        raise AntraxFormatError(f"{path}: experiment sheet not found")
    # Only whole lines starting with "#" are comments: a "#" inside a path ("/data/colony#2") is part of it.
    text = path.read_text(encoding="utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    df = pd.read_csv(io.StringIO("\n".join(lines) + "\n"), sep="\t", dtype=str, keep_default_na=False,
                     quoting=csv.QUOTE_NONE).fillna("")
    df.columns = [c.strip() for c in df.columns]
    if "name" not in df.columns or "expdir" not in df.columns:
        raise AntraxFormatError(f"{path}: needs at least the columns 'name' and 'expdir'")
    dup = df["name"][df["name"].duplicated()].tolist()
    if dup:
        raise AntraxFormatError(f"{path}: experiment names must be unique; repeated: {', '.join(dup)}")
    return df


def plan_experiments(sheet: pd.DataFrame, base: Path, default_classifier: str) -> dict[str, PlannedExperiment]:
    """Resolve every sheet row (relative paths are relative to ``base``, the workflow's working directory)."""
    out = {}
    for row in sheet.to_dict("records"):
        exp = load_experiment(_resolve(row["expdir"], base), row.get("session") or None)
        movlist = parse_movlist(row.get("movlist") or None)
        out[row["name"]] = PlannedExperiment(
            name=row["name"],
            experiment=exp,
            movies=select_movies(exp, movlist),
            classifier=row.get("classifier") or default_classifier,
            truth=_resolve(row["truth"], base) if row.get("truth") else None,
        )
    return out


def plan_classifiers(config: dict, experiments: dict[str, PlannedExperiment], base: Path) -> dict[str, PlannedClassifier]:
    """Classifiers from ``config['classifiers']``. A trainset source is an experiment name of the sheet (→ its
    session's ``classifier/``) or a path to a classdir."""
    out = {}
    for name, c in (config.get("classifiers") or {}).items():
        sources = []
        for src in c.get("trainsets") or []:
            if src in experiments:
                sources.append(experiments[src].experiment.classdir)
            else:
                p = _resolve(src, base)
                if not (p / "examples").is_dir():
                    raise AntraxFormatError(
                        f"config classifiers.{name}.trainsets: {src!r} is neither an experiment of the sheet nor a "
                        f"classdir (a folder with examples/)"
                    )
                sources.append(p)
        file = _resolve(c["file"], base) if c.get("file") else None
        classdir = _resolve(c.get("classdir") or f"results/classifiers/{name}", base)
        out[name] = PlannedClassifier(
            name=name,
            classdir=classdir,
            model_name=c.get("name", "classifier"),
            sources=sources,
            file=file,
            train=dict(c.get("train") or {}),
        )
    for e in experiments.values():
        if e.classifier not in out:
            raise AntraxFormatError(
                f"experiment {e.name}: classifier {e.classifier!r} is not defined under 'classifiers' in the config "
                f"(defined: {', '.join(out) or 'none'})"
            )
    return out


def trainset_fingerprint(classdirs: list[Path], cache: Path | None = None) -> str:
    """Content fingerprint of the example images of source trainsets: label folder, file name and sha256 of every
    example, in a fixed order.

    It is a Snakemake ``param`` of the merge rule, so adding, removing, relabelling or editing an example re-runs the
    merge (and, through the manifest, training and everything downstream), while touching a file or copying the
    trainset elsewhere (new mtimes, same bytes) re-runs nothing. Contents are hashed once: ``cache`` (a JSON file)
    remembers the hash of each file under its (size, mtime, inode) so that later plans only stat unchanged files.
    """
    known = _load_hash_cache(cache) if cache is not None else {}
    fresh: dict[str, list] = {}
    h = hashlib.sha256()
    for i, d in enumerate(classdirs):
        ex = Path(d) / "examples"
        h.update(f"source {i}\n".encode())  # not the path: a moved or copied project keeps its fingerprints
        if not ex.is_dir():
            continue
        for root, dirs, files in os.walk(ex):
            dirs.sort()
            for fn in sorted(files):
                if fn.startswith(".") or not fn.lower().endswith(IMAGE_SUFFIXES):
                    continue
                path = os.path.join(root, fn)
                st = os.stat(path)
                stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
                hit = known.get(path)
                digest = hit[3] if hit is not None and hit[:3] == stamp else file_sha256(path)
                fresh[path] = [*stamp, digest]
                h.update(f"{os.path.relpath(path, ex)}\0{digest}\n".encode())
    if cache is not None and any(known.get(k) != v for k, v in fresh.items()):
        _save_hash_cache(cache, {**known, **fresh})
    return h.hexdigest()[:16]


def _load_hash_cache(path: Path) -> dict[str, list]:
    """The cache is an optimisation only: a missing, unreadable or foreign file counts as empty."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != _HASH_CACHE_FORMAT or not isinstance(doc.get("files"), dict):
        return {}
    return {k: v for k, v in doc["files"].items() if isinstance(v, list) and len(v) == 4}


def _save_hash_cache(path: Path, files: dict[str, list]) -> None:
    # gone files are dropped so that the cache does not grow forever
    files = {k: v for k, v in files.items() if os.path.exists(k)}
    try:
        atomic_write_text(path, json.dumps({"format": _HASH_CACHE_FORMAT, "files": files}, separators=(",", ":")))
    except OSError:  # read-only results folder: plans still work, only slower
        pass


def ensure_link(link: Path, target: Path) -> Path:
    """Make ``link`` a symlink to ``target`` (the workflow addresses every session and classdir by name under
    ``results/``). An existing correct link is kept; a link to elsewhere is repointed; a real file or folder is
    never replaced."""
    link, target = Path(link), Path(target).absolute()
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return link
        link.unlink()
    elif link.exists():
        if link.resolve() == target.resolve():
            return link
        raise AntraxFormatError(f"{link}: exists and is not a symlink to {target}; move it away")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return link


def cached_sha256(path: Path, cache: Path | None = None) -> str:
    """sha256 of a file, remembered in ``cache`` under its (size, mtime, inode) like the trainset fingerprints: a
    classifier of hundreds of MB is hashed once, not at every plan."""
    path = Path(path)
    known = _load_hash_cache(cache) if cache is not None else {}
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    key = str(path.absolute())
    hit = known.get(key)
    if hit is not None and hit[:3] == stamp:
        return hit[3]
    digest = file_sha256(path)
    if cache is not None:
        _save_hash_cache(cache, {**known, key: [*stamp, digest]})
    return digest


def made_by_other_classifier(autoids: Path, provenance: Path, classifier_sha256: str) -> bool:
    """Whether an existing ``autoids_<m>.csv`` was made by something else than this classifier: its provenance file
    names another sha256, or there is none (anTraX's own autoids, another tool's). Then the movie is classified
    again wherever the command runs — file times and a work folder's Snakemake records cannot tell."""
    if not Path(autoids).is_file():
        return False
    try:
        doc = json.loads(Path(provenance).read_text(encoding="utf-8"))
        return str(doc["classifier"]["sha256"]) != classifier_sha256
    except (OSError, ValueError, KeyError, TypeError):
        return True
