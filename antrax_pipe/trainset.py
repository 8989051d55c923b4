"""Training sets as a whole: merging trainsets safely (anTraX's ``merge-trainset`` overwrote same-named files and
never checked the labels) and loading example images through the shared preprocessing. No TensorFlow here.

The files themselves (example images, the manifest) are read and written by :mod:`antrax_pipe.io.examples` and
:mod:`antrax_pipe.io.manifest`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io.atomic import atomic_path, atomic_write_bytes, file_sha256
from .io.examples import (
    Example,
    example_name,
    examples_dir_of,
    existing_exports,
    list_examples,
    png_bytes,
    read_example_image,
    safe_example_target,
    same_pixels,
    scan_examples_dir,
)
from .io.experiment import resolve_classdir
from .io.labels import read_labels
from .io.locking import file_lock
from .io.manifest import MANIFEST_NAME, Manifest, manifest_of, read_manifest, write_manifest
from .model import ExportConflictError, PreprocessSpec, TrackletName, TrainsetError
from .preprocess import preprocess

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------------
# Merge


@dataclass
class MergeReport:
    """What a merge did, per label (destination names)."""

    source: Path
    dest: Path
    copied: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (source file, new dest name) on name clashes
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)  # (source file, its label, label in dest)
    new_labels: list[str] = field(default_factory=list)

    @property
    def n_copied(self) -> int:
        return sum(self.copied.values())

    @property
    def n_duplicates(self) -> int:
        return sum(self.duplicates.values())

    def summary(self) -> str:
        labels = sorted(set(self.copied) | set(self.duplicates))
        lines = [f"merge {self.source} -> {self.dest}"]
        for lab in labels:
            n_c, n_d = self.copied.get(lab, 0), self.duplicates.get(lab, 0)
            lines.append(f"  {lab}: {n_c} copied, {n_d} duplicate(s) skipped")
        lines.append(f"  total: {self.n_copied} copied, {self.n_duplicates} duplicate(s) skipped")
        if self.new_labels:
            lines.append(f"  new labels: {', '.join(self.new_labels)}")
        for src, new in self.renamed:
            lines.append(f"  renamed (a different file of the same name exists): {src} -> {new}")
        for src, lab, other in self.conflicts:
            lines.append(f"  NOT copied, same image already labelled {other!r} in the destination: {src} ({lab})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def label_registry(classdir: Path) -> set[str]:
    """Labels a destination already knows: its label dirs (empty ones too: anTraX pre-creates them), a
    ``labels.csv`` in the classdir, and the session's ``parameters/labels.csv`` when the classdir sits in a session."""
    known: set[str] = set()
    ex = classdir / "examples"
    if ex.is_dir():
        known |= {p.name for p in ex.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for f in (classdir / "labels.csv", classdir.parent / "parameters" / "labels.csv"):
        if f.is_file():
            known |= set(read_labels(f).all_labels)
    return known


def _unique_name(ldir: Path, name: str) -> str:
    stem, suffix = os.path.splitext(name)
    k = 1
    while (ldir / f"{stem}.dup{k}{suffix}").exists():
        k += 1
    return f"{stem}.dup{k}{suffix}"


def _source_examples(src: Path) -> list[Example]:
    ex_dir = examples_dir_of(src)
    scan = scan_examples_dir(ex_dir)
    if not scan.classes:
        raise TrainsetError(f"{ex_dir}: no example images to merge")
    return list_examples(src, scan.classes)


def _check_labels(
    sources: list[tuple[Path, list[Example]]], dest: Path, allow_new_labels: bool, label_map: Mapping[str, str]
) -> list[str]:
    registry = label_registry(dest)
    src_labels = sorted({label_map.get(e.label, e.label) for _, exs in sources for e in exs})
    new = [lab for lab in src_labels if lab not in registry]
    if registry and new and not allow_new_labels:
        names = ", ".join(str(s) for s, _ in sources)
        raise TrainsetError(
            f"merge refused: label(s) {', '.join(new)} of {names} are not known to the destination {dest} "
            f"(its labels: {', '.join(sorted(registry))}). Fix the names, map them (label_map / --map OLD=NEW) "
            f"or allow new labels (allow_new_labels / --allow-new-labels)."
        )
    return new


def merge_trainsets(
    sources: Iterable[str | os.PathLike],
    dest: str | os.PathLike,
    allow_new_labels: bool = False,
    label_map: Mapping[str, str] | None = None,
    on_name_clash: str = "rename",
) -> list[MergeReport]:
    """Copy the examples of several trainsets into ``dest`` (see :func:`merge_trainset`); labels of all sources are
    checked before anything is copied, and duplicates across sources are skipped too."""
    if on_name_clash not in ("rename", "refuse"):
        raise ValueError(f"on_name_clash must be 'rename' or 'refuse', not {on_name_clash!r}")
    label_map = dict(label_map or {})
    dest_dir = resolve_classdir(dest, create=True)
    srcs = []
    for s in sources:
        sdir = resolve_classdir(s)
        if sdir.resolve() == dest_dir.resolve():
            raise TrainsetError(f"merge refused: source and destination are the same classdir {sdir}")
        srcs.append((sdir, _source_examples(sdir)))
    new_labels = _check_labels(srcs, dest_dir, allow_new_labels, label_map)

    dest_ex = dest_dir / "examples"
    # Content index of the destination: sha256 → label (dedupe, and catch the same image under another label).
    index: dict[str, str] = {}
    if dest_ex.is_dir():
        for ex in list_examples(dest_dir, scan_examples_dir(dest_ex).classes):
            index.setdefault(file_sha256(ex.path), ex.label)

    plans = []  # (report, [(example, dest label, sha)])
    for sdir, exs in srcs:
        rep = MergeReport(sdir, dest_dir, new_labels=[lab for lab in new_labels])
        items = [(ex, label_map.get(ex.label, ex.label), file_sha256(ex.path)) for ex in exs]
        if on_name_clash == "refuse":
            clashes = [
                str(ex.path) for ex, lab, sha in items
                if (dest_ex / lab / ex.path.name).exists() and file_sha256(dest_ex / lab / ex.path.name) != sha
            ]
            if clashes:
                raise TrainsetError(
                    f"merge refused: {len(clashes)} file(s) would overwrite a different file of the same name in "
                    f"{dest_ex}, e.g. {clashes[0]}"
                )
        plans.append((rep, items))

    # Every destination label dir first: a merge killed half-way and run again then finds all its labels known
    # (copying created them one by one, and the second run refused the ones not yet created).
    for lab in sorted({lab for _, items in plans for _, lab, _ in items}):
        safe_example_target(dest_ex, lab, "x.png").parent.mkdir(parents=True, exist_ok=True)
    with export_lock(dest_dir):  # an app exporting into the same trainset waits
        return [_copy_plan(rep, items, dest_ex, index) for rep, items in plans]


def _copy_plan(rep: MergeReport, items: list[tuple[Example, str, str]], dest_ex: Path,
           index: dict[str, str]) -> MergeReport:
    """Copy one source's planned examples (atomically, never over a different file), filling its report."""
    for ex, lab, sha in items:
        if sha in index:
            if index[sha] == lab:
                rep.duplicates[lab] = rep.duplicates.get(lab, 0) + 1
            else:
                rep.conflicts.append((str(ex.path), lab, index[sha]))
            continue
        ldir = dest_ex / lab
        name = ex.path.name
        if (ldir / name).exists():  # different content (same content is caught by the index)
            name = _unique_name(ldir, name)
            rep.renamed.append((str(ex.path), name))
        with atomic_path(safe_example_target(dest_ex, lab, name)) as tmp:
            shutil.copyfile(ex.path, tmp)
        index[sha] = lab
        rep.copied[lab] = rep.copied.get(lab, 0) + 1
    for src, lab, other in rep.conflicts:
        log.warning("%s: not merged, the same image is labelled %r in %s (here %r)", src, other, dest_ex, lab)
    return rep


def merge_trainset(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    allow_new_labels: bool = False,
    label_map: Mapping[str, str] | None = None,
    on_name_clash: str = "rename",
) -> MergeReport:
    """Copy the examples of ``source`` into ``dest`` (classdirs, or expdirs → latest session's ``classifier/``).

    - Labels (after ``label_map``) must be known to the destination (:func:`label_registry`) unless it has none yet
      or ``allow_new_labels``; otherwise nothing is copied and the error lists the unknown labels.
    - Images already in the destination (same sha256) are skipped; the same image under a different label is not
      copied and is listed in ``conflicts``.
    - A different file with the same name is never overwritten: ``on_name_clash='rename'`` adds ``.dup<k>`` before
      the suffix (listed in ``renamed``), ``'refuse'`` aborts before copying anything.
    """
    return merge_trainsets([source], dest, allow_new_labels, label_map, on_name_clash)[0]

# --------------------------------------------------------------------------------------------------------------------
# Images


def load_example_images(examples: list[Example], spec: PreprocessSpec) -> np.ndarray:
    """Read and preprocess examples → (N, T, T, 3) **uint8**.

    Goes through :func:`antrax_pipe.preprocess.preprocess` (the same function inference uses). Its float32 output holds
    whole numbers in 0–255 for uint8 input, so storing uint8 is exact and takes a quarter of the memory (29k images at
    T=64: 360 MB instead of 1.4 GB); cast to float32 before feeding the model.
    """
    t = spec.target_size
    out = np.empty((len(examples), t, t, 3), dtype=np.uint8)
    buf = np.empty((1, t, t, 3), dtype=np.float32)
    for i, ex in enumerate(examples):
        img = read_example_image(ex.path)
        try:
            preprocess(img[None], spec, out=buf)
        except ValueError as exc:
            raise TrainsetError(f"{ex.path}: cannot be preprocessed ({exc})") from exc
        out[i] = np.clip(np.rint(buf[0]), 0, 255)
    return out

# --------------------------------------------------------------------------------------------------------------------
# Export of a tracklet's images into a trainset (the app's export and the review loop's export_labelled)
# --------------------------------------------------------------------------------------------------------------------


def export_frame_numbers(tracklet: str, n_images: int, movie_first_frame: int | None) -> tuple[list[int], str]:
    """Frame number of every image for export names: absolute ``fi[m] + mf - 1`` (anTraX), or the frame within the
    movie when movies_info.txt does not know the movie. Returns (numbers, 'absolute'|'movie')."""
    first = TrackletName.parse(tracklet).first_frame
    if movie_first_frame is not None:
        first = movie_first_frame + first - 1
        return list(range(first, first + n_images)), "absolute"
    return list(range(first, first + n_images)), "movie"


#: Lock file of a classifier folder's trainset (``examples/`` and the manifest), next to ``examples/``.
EXPORT_LOCK_NAME = ".export.lock"


def export_lock(classdir: str | os.PathLike):
    """The inter-process lock of a classdir's trainset (:func:`antrax_pipe.io.locking.file_lock` on
    ``<classdir>/.export.lock``): hold it around :func:`export_images` + :func:`refresh_manifest` so the
    already-exported check, the writes and the manifest are one step for every app and export on the experiment.
    Re-entrant: both functions take it themselves too."""
    return file_lock(Path(classdir) / EXPORT_LOCK_NAME)


def export_images(examples_dir: Path, experiment: str, tracklet: str, label: str, images: np.ndarray,
                  numbers: Sequence[int]) -> tuple[list[str], list[str]]:
    """Write ``images`` (N, H, W, 3, white background) to ``examples_dir/<label>/`` under anTraX's names; returns
    (written, skipped) file names.

    Runs under the trainset's inter-process lock (:func:`export_lock`), re-reading the trainset under it, so two
    processes exporting one tracklet under two labels at once cannot both succeed. Checked before anything is written
    (:class:`ExportConflictError` otherwise): every target stays inside the classifier folder (no symbolic link
    followed out of it, none written through), a file of the same name with *different* pixels is never overwritten,
    and the same images already exported under another label are refused (one image in two classes spoils
    training). Identical existing files are skipped.
    """
    examples_dir = Path(examples_dir)
    names = [example_name(experiment, tracklet, n) for n in numbers]
    with export_lock(examples_dir.parent):
        targets = [safe_example_target(examples_dir, label, name) for name in names]
        other = [k for k in existing_exports(examples_dir, experiment, tracklet) if k != label]
        clash = [f"{k}/{n}" for n in names for k in other if (examples_dir / k / n).exists()]
        if clash:
            raise ExportConflictError(
                f"tracklet {tracklet} is already exported under another label: {', '.join(clash[:3])}"
                f"{' …' if len(clash) > 3 else ''} in {examples_dir}; remove those files first if the label was wrong")
        todo, skipped = [], []
        for image, name, target in zip(images, names, targets):
            data = png_bytes(image)
            if target.exists():
                if same_pixels(target, image, data):
                    skipped.append(name)
                    continue
                raise ExportConflictError(f"{target} exists with different content; refusing to overwrite it "
                                          f"(nothing was exported)")
            todo.append((target, data))
        for target, data in todo:
            atomic_write_bytes(target, data)
        return [t.name for t, _ in todo], skipped


def remove_exported(examples_dir: Path, label: str, files: Sequence[tuple[str, str]],
                    remove_empty_dir: bool = False) -> tuple[list[str], list[str]]:
    """Undo an export: remove the files it wrote (``files``: (name, sha256 when written)) from
    ``examples_dir/<label>/`` under the trainset's lock. A file is removed only while it still holds what the export
    wrote (a file changed or replaced since is kept); with ``remove_empty_dir`` the label folder goes too when the
    export had created it and it is empty now (an empty label folder counts as a label). Returns (removed, kept)."""
    examples_dir = Path(examples_dir)
    removed, kept = [], []
    with export_lock(examples_dir.parent):
        for name, sha in files:
            target = safe_example_target(examples_dir, label, name)
            if target.is_file() and file_sha256(target) == sha:
                target.unlink()
                removed.append(name)
            elif target.exists():
                kept.append(name)
        ldir = examples_dir / label
        if remove_empty_dir and ldir.is_dir() and not any(ldir.iterdir()):
            ldir.rmdir()
    return removed, kept


def refresh_manifest(classdir: Path) -> str | None:
    """Update ``<classdir>/trainset_manifest.tsv`` after an export: keep entries whose file still exists, hash only
    new files (a trainset can hold tens of thousands of images). Runs under the trainset's lock (:func:`export_lock`),
    so it lists the trainset as the last export left it. Returns its path, or None if the trainset cannot be listed
    (the export itself has succeeded; the workflow rebuilds the manifest anyway)."""
    classdir = Path(classdir)
    path = classdir / MANIFEST_NAME
    try:
        with export_lock(classdir):
            examples = list_examples(classdir)
            old: dict = {}
            if path.is_file():
                try:
                    old = {e.path: e for e in read_manifest(path).entries}
                except (TrainsetError, KeyError, ValueError) as exc:
                    log.warning("%s: unreadable, rebuilt from scratch (%s)", path, exc)
            rel = {ex.path.relative_to(classdir).as_posix(): ex for ex in examples}
            kept = [old[p] for p in rel if p in old]
            new = manifest_of([ex for p, ex in rel.items() if p not in old], classdir).entries
            write_manifest(path, Manifest(tuple(sorted(kept + list(new), key=lambda e: e.path))))
        return str(path)
    except (TrainsetError, OSError) as exc:
        log.warning("%s: manifest not updated (%s)", path, exc)
        return None
