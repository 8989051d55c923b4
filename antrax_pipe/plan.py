"""The workflow's plan: which experiments, sessions, movies and classifiers a config + experiment sheet describe.

Kept out of the Snakefile so that the DAG's shape is plain Python that tests (and the CLI) can check without
running Snakemake, and so that ``common.smk`` stays a thin layer of input functions.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .io.experiment import load_experiment, parse_movlist, select_movies
from .model import AntraxFormatError, Experiment, MovieImages

EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


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
    df = pd.read_csv(path, sep="\t", dtype=str, comment="#", skip_blank_lines=True).fillna("")
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


def trainset_fingerprint(classdirs: list[Path]) -> str:
    """Cheap fingerprint of the example files (relative path, size, mtime) of source trainsets.

    It is a Snakemake ``param`` of the merge rule, so adding, removing or editing examples re-runs the merge; the merge
    then writes a content-hash manifest, and only a changed manifest makes training run again.
    """
    h = hashlib.sha256()
    for d in classdirs:
        ex = Path(d) / "examples"
        h.update(str(ex).encode())
        if not ex.is_dir():
            continue
        for root, dirs, files in os.walk(ex):
            dirs.sort()
            for fn in sorted(files):
                if fn.lower().endswith(EXAMPLE_SUFFIXES):
                    st = os.stat(os.path.join(root, fn))
                    h.update(f"{os.path.relpath(os.path.join(root, fn), ex)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


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
