"""Trainset example images: ``<classdir>/examples/<label>/<expname>.<tracklet>.<frame>.png``.

Listing classes and examples (anTraX crashed on stray files and counted empty label dirs as classes; here they are
reported and skipped), parsing anTraX's example names, and reading one example image.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..model import ExportConflictError, TrainsetError

log = logging.getLogger(__name__)

#: Image suffixes accepted as examples (lower-cased comparison).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_TRACKLET_TOKEN = re.compile(r"^trj_id\d+_ti\d+_\d+_tf\d+_\d+$")


@dataclass(frozen=True)
class Example:
    """One labelled example image. ``tracklet_key`` (``<exp>.<tracklet>``) groups near-duplicate frames for
    validation splits; it falls back to the file stem when the name does not follow anTraX's pattern."""

    path: Path
    label: str
    tracklet_key: str
    exp: str | None = None
    tracklet: str | None = None
    frame: int | None = None


@dataclass(frozen=True)
class ExamplesScan:
    """What :func:`scan_examples_dir` found: the classes, plus what was ignored (so a caller can report it)."""

    examples_dir: Path
    classes: list[str]
    empty_dirs: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)


def is_image_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES


def parse_example_name(filename: str) -> tuple[str, str | None, str | None, int | None]:
    """``<expname>.<tracklet>.<frame>.<ext>`` → (tracklet_key, exp, tracklet, frame).

    The tracklet token is located by anTraX's tracklet-name pattern, so experiment names containing dots still parse.
    Names that are not anTraX-like but have the shape ``<a>.<b…>.<int>.<ext>`` are split the same way; anything else
    is its own group (key = the file stem).
    """
    stem = Path(filename).stem
    parts = stem.split(".")
    for i in range(1, len(parts)):
        if _TRACKLET_TOKEN.match(parts[i]):
            exp, trk = ".".join(parts[:i]), parts[i]
            frame = int(parts[i + 1]) if i + 1 < len(parts) and parts[i + 1].isdigit() else None
            return f"{exp}.{trk}", exp, trk, frame
    if len(parts) >= 3 and parts[-1].isdigit():
        exp, trk = parts[0], ".".join(parts[1:-1])
        return f"{exp}.{trk}", exp, trk, int(parts[-1])
    return stem, None, None, None


def scan_examples_dir(examples_dir: str | os.PathLike) -> ExamplesScan:
    """Classes = sorted (code-point order, like anTraX) label dirs holding at least one image.

    Unlike anTraX (which crashed on stray files and counted empty dirs as classes,), stray files, hidden
    entries and dirs without images are reported and skipped.
    """
    d = Path(examples_dir)
    if not d.is_dir():
        raise TrainsetError(f"{d}: examples directory not found")
    classes, empty, stray = [], [], []
    for entry in sorted(d.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            stray.append(entry.name)
        elif entry.is_dir():
            if any(is_image_file(p) for p in entry.iterdir()):
                classes.append(entry.name)
            else:
                empty.append(entry.name)
        else:
            stray.append(entry.name)
    return ExamplesScan(d, classes, empty, stray)


def find_classes(examples_dir: str | os.PathLike) -> list[str]:
    """Sorted non-empty label dirs of ``examples_dir``; empty dirs and stray files are logged as warnings."""
    scan = scan_examples_dir(examples_dir)
    if scan.empty_dirs:
        log.warning("%s: ignoring label dir(s) without images: %s", scan.examples_dir, ", ".join(scan.empty_dirs))
    if scan.stray_files:
        log.warning("%s: ignoring stray file(s): %s", scan.examples_dir, ", ".join(scan.stray_files))
    return scan.classes


def examples_dir_of(classdir: str | os.PathLike) -> Path:
    """``<classdir>/examples`` (also accepts the examples dir itself)."""
    c = Path(classdir)
    if (c / "examples").is_dir():
        return c / "examples"
    if c.name == "examples" and c.is_dir():
        return c
    raise TrainsetError(f"{c}: not a classifier directory (no examples/ folder in it)")


def list_examples(classdir: str | os.PathLike, classes: Iterable[str] | None = None) -> list[Example]:
    """All example images of a classdir (or of the given ``classes``), sorted by label then file name."""
    ex_dir = examples_dir_of(classdir)
    labels = list(classes) if classes is not None else find_classes(ex_dir)
    out: list[Example] = []
    for label in labels:
        ldir = ex_dir / label
        if not ldir.is_dir():
            raise TrainsetError(f"{ldir}: label directory not found")
        for p in sorted(ldir.iterdir(), key=lambda q: q.name):
            if is_image_file(p):
                key, exp, trk, frame = parse_example_name(p.name)
                out.append(Example(p, label, key, exp, trk, frame))
    return out


def read_example_image(path: str | os.PathLike) -> np.ndarray:
    """One example as (H, W, 3) RGB uint8; cv2 reads BGR, so the channels are reversed here."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise TrainsetError(f"{p}: example image not found")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise TrainsetError(f"{p}: cannot be read as an image (corrupt or not an image file)")
    return np.ascontiguousarray(img[:, :, ::-1])


def example_name(experiment: str, tracklet: str, frame: int) -> str:
    """anTraX's example file name ``<expname>.<tracklet>.<frame>.png`` (frame: absolute experiment frame)."""
    return f"{experiment}.{tracklet}.{frame}.png"


def safe_example_target(examples_dir: str | os.PathLike, label: str, name: str) -> Path:
    """``examples_dir/<label>/<name>`` for writing, refused (:class:`ExportConflictError` naming the path) unless it
    stays inside the classifier folder (``examples_dir``'s parent).

    A symbolic link is never followed out of the tree: ``examples/``, ``examples/<label>`` and the file must resolve
    inside the classifier folder (links within it are fine), and the file itself must not be a link (a write would go
    wherever it points). ``label`` and ``name`` must be single path components."""
    ex = Path(examples_dir)
    for part, what in ((label, "label"), (name, "file name")):
        if not part or part in (".", "..") or any(c in part for c in "/\\\0"):
            raise ExportConflictError(f"{what} {part!r} cannot be used as a path component under {ex}")
    root = ex.parent.resolve()
    target = ex / label / name
    for p in (ex, ex / label, target):
        resolved = p.resolve()
        if resolved != root and root not in resolved.parents:
            raise ExportConflictError(f"{p} resolves to {resolved}, outside the classifier folder {root} (a symbolic "
                                      f"link); refusing to write there (nothing was exported)")
    if target.is_symlink():
        raise ExportConflictError(f"{target} is a symbolic link (to {os.readlink(target)}); refusing to write "
                                  f"through it (nothing was exported)")
    return target


def existing_exports(examples_dir: str | os.PathLike, experiment: str, tracklet: str) -> dict[str, int]:
    """label → number of files of this tracklet already in the trainset."""
    d = Path(examples_dir)
    if not d.is_dir():
        return {}
    pattern = f"{glob.escape(experiment)}.{tracklet}.*.png"
    out = {}
    for ldir in sorted(p for p in d.iterdir() if p.is_dir()):
        n = len(glob.glob(str(Path(glob.escape(str(ldir))) / pattern)))
        if n:
            out[ldir.name] = n
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) RGB uint8 → PNG bytes; cv2 encodes BGR, so the channels are reversed first."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def same_pixels(path: Path, image: np.ndarray, data: bytes) -> bool:
    """Whether the file at ``path`` holds this image (same bytes, or a PNG another writer made of the same pixels)."""
    import cv2

    old = path.read_bytes()
    if old == data:
        return True
    decoded = cv2.imdecode(np.frombuffer(old, np.uint8), cv2.IMREAD_COLOR)
    return decoded is not None and decoded.shape == image.shape and np.array_equal(decoded[:, :, ::-1], image)
