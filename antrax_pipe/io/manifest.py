"""The trainset manifest ``results/classifiers/<clf>/trainset_manifest.tsv``: one row per example (path, label,
sha256, parsed source), sorted by path, so that its hash changes exactly when the trainset's content does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..model import TrainsetError
from .atomic import atomic_write_text, file_sha256
from .examples import Example, examples_dir_of, list_examples

#: The manifest the export keeps next to ``examples/`` in a classdir.
MANIFEST_NAME = "trainset_manifest.tsv"
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "sha256", "exp", "tracklet", "frame")


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative to the classdir, POSIX separators: examples/<label>/<file>
    label: str
    sha256: str
    exp: str | None = None
    tracklet: str | None = None
    frame: int | None = None


@dataclass(frozen=True)
class Manifest:
    """The content of a trainset; :func:`manifest_hash` is a function of ``entries`` only."""

    entries: tuple[ManifestEntry, ...]

    @property
    def classes(self) -> list[str]:
        return sorted({e.label for e in self.entries})

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(e.label for e in self.entries).items()))


def build_manifest(classdir: str | os.PathLike) -> Manifest:
    """Hash every example of the classdir (path, label, sha256, parsed source)."""
    return manifest_of(list_examples(classdir), examples_dir_of(classdir).parent)


def manifest_of(examples: Iterable[Example], root: str | os.PathLike) -> Manifest:
    """Manifest of a given selection of examples; paths are stored relative to ``root`` (the classdir)."""
    root = Path(root)
    entries = []
    for ex in examples:
        try:
            rel = ex.path.relative_to(root).as_posix()
        except ValueError:
            rel = ex.path.as_posix()
        entries.append(ManifestEntry(rel, ex.label, file_sha256(ex.path), ex.exp, ex.tracklet, ex.frame))
    entries.sort(key=lambda e: e.path)
    return Manifest(tuple(entries))


def format_manifest(manifest: Manifest) -> str:
    """Deterministic TSV (header, one row per example sorted by path, LF)."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(MANIFEST_COLUMNS)
    for e in sorted(manifest.entries, key=lambda e: e.path):
        w.writerow([e.path, e.label, e.sha256, e.exp or "", e.tracklet or "", "" if e.frame is None else e.frame])
    return buf.getvalue()


def manifest_hash(manifest: Manifest) -> str:
    """sha256 of the canonical TSV: changes iff an example is added, removed, renamed, relabelled or edited."""
    return hashlib.sha256(format_manifest(manifest).encode("utf-8")).hexdigest()


def write_manifest(path: str | os.PathLike, manifest: Manifest) -> Path:
    """Write the manifest atomically; ``.json`` suffix → JSON (with the hash), anything else → TSV."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        doc = {
            "manifest_hash": manifest_hash(manifest),
            "counts": manifest.counts(),
            "entries": [e.__dict__ for e in sorted(manifest.entries, key=lambda e: e.path)],
        }
        return atomic_write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return atomic_write_text(path, format_manifest(manifest))


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest written by :func:`write_manifest` (TSV or JSON)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TrainsetError(f"{path}: manifest not found") from exc
    if path.suffix.lower() == ".json":
        rows = json.loads(text)["entries"]
    else:
        reader = csv.reader(io.StringIO(text), delimiter="\t")
        header = next(reader, None)
        if tuple(header or ()) != MANIFEST_COLUMNS:
            raise TrainsetError(f"{path}: not a trainset manifest (header {header!r})")
        rows = [dict(zip(MANIFEST_COLUMNS, r)) for r in reader if r]
    entries = []
    for r in rows:
        frame = r.get("frame")
        entries.append(
            ManifestEntry(
                r["path"], r["label"], r["sha256"], r.get("exp") or None, r.get("tracklet") or None,
                int(frame) if frame not in (None, "") else None,
            )
        )
    return Manifest(tuple(sorted(entries, key=lambda e: e.path)))
