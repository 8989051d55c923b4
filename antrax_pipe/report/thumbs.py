"""Blob thumbnails for the report: a few images of a tracklet side by side, read from its ``images_<m>.mat``
(:class:`antrax_pipe.io.images.ImagesFile`, one image at a time) and embedded as one base64 PNG, so the page stays
one self-contained file. A tracklet whose images cannot be read is left out (the numbers never depend on them)."""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping

import numpy as np

from ..io.examples import png_bytes
from ..io.images import ImagesFile
from ..model import AntraxFormatError, MovieImages

log = logging.getLogger(__name__)

#: Images per tracklet strip (evenly spaced over the tracklet, first and last included).
PER_STRIP = 6
#: White gap between two images of a strip (pixels).
GAP = 3


def _read_some(images: Mapping[int, MovieImages], movie: int, tracklet: str, k: int) -> list[np.ndarray]:
    mi = images.get(movie)
    for part in (mi.parts if mi else ()):
        with ImagesFile(part) as f:
            if tracklet not in f.tracklets:
                continue
            n = f.n_images(tracklet)
            idx = sorted({round(x) for x in np.linspace(0, n - 1, min(k, n))})
            return [f.read(tracklet, white_bg=True, start=i, stop=i + 1)[0] for i in idx]
    return []


def strip(images: Mapping[int, MovieImages], movie: int, tracklet: str, k: int = PER_STRIP) -> np.ndarray | None:
    """Up to ``k`` images of a tracklet side by side on white (None when it cannot be read)."""
    try:
        imgs = _read_some(images, int(movie), tracklet, k)
    except (AntraxFormatError, OSError, ValueError) as exc:
        log.warning("no thumbnail of %s (movie %s): %s", tracklet, movie, exc)
        return None
    if not imgs:
        return None
    h = max(i.shape[0] for i in imgs)
    w = sum(i.shape[1] for i in imgs) + GAP * (len(imgs) - 1)
    out = np.full((h, w, 3), 255, np.uint8)
    x = 0
    for i in imgs:
        out[: i.shape[0], x : x + i.shape[1]] = i
        x += i.shape[1] + GAP
    return out


def thumb(images: Mapping[int, MovieImages], movie: int, tracklet: str, caption: str, k: int = PER_STRIP) -> str:
    """A ``<figure>`` with the tracklet's strip (base64 PNG) and ``caption`` (HTML); "" when it cannot be read."""
    img = strip(images, movie, tracklet, k)
    if img is None:
        return ""
    data = base64.b64encode(png_bytes(img)).decode("ascii")
    return (f'<figure class="thumb"><img class="blobs" src="data:image/png;base64,{data}" '
            f'alt="{html.escape(tracklet)}"><figcaption>{caption}</figcaption></figure>')
