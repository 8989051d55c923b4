"""Readers of the blob-image files ``images/images_<m>.mat`` and ``frame_passed_<m>.mat`` (docs/antrax-format.md#blob-image-files).

The files are MAT v7.3 = HDF5 behind a 512-byte user block; h5py opens them directly. One uint8 dataset per tracklet,
h5py shape (N, 3, W, H), or (3, W, H) for a one-frame tracklet. We read **one tracklet at a time** (a movie file can
hold many GB) and turn it into (N, H, W, 3) with a white background, exactly as anTraX's ``prepare_images``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from ..model import AntraxFormatError, MovieImages

_IMAGES_RE = re.compile(r"^images_(\d+)(?:_p(\d+))?\.mat$")
_PASSED_RE = re.compile(r"^frame_passed_(\d+)(?:_p(\d+))?\.mat$")


class EmptyTrackletError(AntraxFormatError):
    """A tracklet dataset holds no image (MATLAB_empty, or a zero-length axis)."""


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise AntraxFormatError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise AntraxFormatError(
            f"{path}: cannot be opened as a MAT v7.3 (HDF5) file - truncated, still being written, or an old MAT "
            f"v5 file? ({exc})"
        ) from exc


def _is_hidden(key: str) -> bool:
    return key.startswith("#")


class ImagesFile:
    """An open ``images_<m>.mat``: lists its tracklets and reads them one at a time.

    Use as a context manager. ``tracklets`` keeps the file's byte-sorted key order, the order of anTraX's autoids rows.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = _open(self.path)
        try:
            self.tracklets: list[str] = [k for k in self._f.keys() if not _is_hidden(k)]
        except Exception as exc:  # a damaged B-tree shows up here
            self._f.close()
            raise AntraxFormatError(f"{self.path}: cannot list tracklets ({exc})") from exc

    def __enter__(self) -> ImagesFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def __len__(self) -> int:
        return len(self.tracklets)

    def _dataset(self, tracklet: str) -> h5py.Dataset:
        where = f"{self.path}: tracklet {tracklet!r}"
        if tracklet not in self._f:
            raise AntraxFormatError(f"{where}: no such dataset in the file")
        ds = self._f[tracklet]
        if not isinstance(ds, h5py.Dataset):
            raise AntraxFormatError(f"{where}: is an HDF5 group, expected a uint8 image array")
        if ds.attrs.get("MATLAB_empty", 0):
            raise EmptyTrackletError(f"{where}: empty tracklet (MATLAB_empty), it holds no image")
        if ds.dtype != np.uint8:
            raise AntraxFormatError(f"{where}: dtype is {ds.dtype}, expected uint8 blob images")
        shape = ds.shape
        ok = (len(shape) == 4 and shape[1] == 3) or (len(shape) == 3 and shape[0] == 3)
        if not ok:
            raise AntraxFormatError(
                f"{where}: shape {shape} is not (N,3,W,H) or (3,W,H) (MATLAB [H W 3 N] RGB images)"
            )
        if 0 in shape:
            raise EmptyTrackletError(f"{where}: empty tracklet (shape {shape}), it holds no image")
        return ds

    def n_images(self, tracklet: str) -> int:
        shape = self._dataset(tracklet).shape
        return shape[0] if len(shape) == 4 else 1

    def image_size(self, tracklet: str) -> tuple[int, int]:
        """(H, W) of the tracklet's images."""
        shape = self._dataset(tracklet).shape
        return shape[-1], shape[-2]

    def read(self, tracklet: str, white_bg: bool = True, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Images of one tracklet as (N, H, W, 3) uint8; black background pixels → white unless ``white_bg=False``.
        ``start``/``stop`` read only images [start, stop) (a long tracklet in bounded pieces)."""
        ds = self._dataset(tracklet)
        try:
            a = ds[()] if ds.ndim == 3 or (start == 0 and stop is None) else ds[start:stop]
        except Exception as exc:  # truncated data chunk, broken filter...
            raise AntraxFormatError(f"{self.path}: tracklet {tracklet!r}: data cannot be read ({exc})") from exc
        if a.ndim == 3:
            a = a[None]
        a = _to_nhwc(a)
        if white_bg:
            whiten(a)
        return a

    def read_chunks(self, tracklet: str, chunk: int, white_bg: bool = True) -> Iterator[np.ndarray]:
        """The tracklet's images in pieces of at most ``chunk`` images, so that memory stays bounded for a tracklet
        of any length (a 20,000-frame tracklet read whole costs hundreds of MB)."""
        n = self.n_images(tracklet)
        for i in range(0, n, max(1, int(chunk))):
            yield self.read(tracklet, white_bg, i, min(n, i + chunk))

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self.tracklets:
            yield name, self.read(name)


def _to_nhwc(a: np.ndarray) -> np.ndarray:
    """(N,3,W,H) -> contiguous (N,H,W,3), = ``ascontiguousarray(a.transpose(0,3,2,1))`` but one plane at a time
    (~5x faster than numpy's generic 4-D strided copy)."""
    out = np.empty((a.shape[0], a.shape[3], a.shape[2], a.shape[1]), dtype=a.dtype)
    for c in range(a.shape[1]):
        out[..., c] = a[:, c].transpose(0, 2, 1)
    return out


def whiten(images: np.ndarray) -> np.ndarray:
    """anTraX's white background, in place: pixels black in *all* channels become 255 in all channels."""
    if images.dtype == np.uint8 and images.shape[-1] == 3:
        # same result as the generic line below, ~10x faster (it was most of the per-image reading cost)
        black = (images[..., 0] | images[..., 1] | images[..., 2]) == 0
        images |= (black.view(np.uint8) * np.uint8(255))[..., None]
        return images
    images[images.max(axis=-1) == 0] = 255
    return images


def read_tracklet_images(path: str | Path, tracklet: str, white_bg: bool = True) -> np.ndarray:
    """Convenience: open, read one tracklet, close."""
    with ImagesFile(path) as f:
        return f.read(tracklet, white_bg=white_bg)


def list_tracklets(path: str | Path) -> list[str]:
    with ImagesFile(path) as f:
        return list(f.tracklets)


def read_frame_passed(path: str | Path) -> dict[str, np.ndarray]:
    """``frame_passed_<m>.mat`` → tracklet → bool vector (one per image). Small: read whole."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    with _open(path) as f:
        for key in f.keys():
            if _is_hidden(key):
                continue
            ds = f[key]
            if not isinstance(ds, h5py.Dataset):
                raise AntraxFormatError(f"{path}: tracklet {key!r}: is an HDF5 group, expected a logical vector")
            try:
                a = np.asarray(ds[()])
            except Exception as exc:
                raise AntraxFormatError(f"{path}: tracklet {key!r}: data cannot be read ({exc})") from exc
            if ds.attrs.get("MATLAB_empty", 0):
                a = np.zeros(0, dtype=bool)
            out[key] = a.reshape(-1).astype(bool)
    return out


def find_movie_images(images_dir: str | Path) -> dict[int, MovieImages]:
    """Movies that have blob images in ``images_dir``: movie → its file(s), parts ordered by part number.

    Names are matched with a regex (anTraX strips character sets instead, docs/tracklet-rule.md#known-bugs, item 5). A movie with both a plain and
    parted files is an error: which one is current cannot be decided.
    """
    images_dir = Path(images_dir)
    parts: dict[int, dict[int, Path]] = {}
    passed: dict[int, dict[int, Path]] = {}
    if not images_dir.is_dir():
        return {}
    for p in images_dir.iterdir():
        for regex, bucket in ((_IMAGES_RE, parts), (_PASSED_RE, passed)):
            m = regex.match(p.name)
            if m:
                movie, part = int(m.group(1)), (int(m.group(2)) if m.group(2) else 0)
                bucket.setdefault(movie, {})[part] = p
    out = {}
    for movie, by_part in sorted(parts.items()):
        if 0 in by_part and len(by_part) > 1:
            raise AntraxFormatError(
                f"{images_dir}: movie {movie} has both images_{movie}.mat and parted files "
                f"({', '.join(sorted(p.name for k, p in by_part.items() if k))}); remove the stale one"
            )
        order = sorted(by_part)
        pp = passed.get(movie, {})
        out[movie] = MovieImages(
            movie=movie,
            parts=tuple(by_part[k] for k in order),
            passed_parts=tuple(pp[k] for k in order if k in pp) if all(k in pp for k in order) else (),
        )
    return out
