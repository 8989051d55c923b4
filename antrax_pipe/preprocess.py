"""The one preprocessing function shared by training and inference (anTraX had two that disagreed: nearest-neighbour
resizing at training, bicubic at prediction).

Input: blob images (N, H, W, 3) uint8, white background, as read from ``images_<m>.mat`` or example PNGs.
Output: (N, T, T, 3) float32 in 0–255. Pixel scaling (e.g. to [0, 1]) belongs to the model itself (a Rescaling
layer), so that the saved classifier alone says how its input is normalised.
"""

from __future__ import annotations

import cv2
import numpy as np

from .model import PreprocessSpec


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize one HxWx3 image to size×size: area averaging when shrinking, bilinear when enlarging (explicit filter,
    unlike anTraX's nearest-at-train / bicubic-at-predict)."""
    h, w = img.shape[:2]
    if h == size and w == size:
        return img
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def preprocess(images: np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """(N,H,W,3) uint8 → (N,T,T,3) float32. ``out`` lets a caller fill a preallocated batch buffer in place."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (N,H,W,3) RGB images, got shape {images.shape}")
    n, h, w, _ = images.shape
    if spec.crop_size and h > spec.crop_size:
        a = (h - spec.crop_size) // 2
        b = (w - spec.crop_size) // 2
        images = images[:, a : a + spec.crop_size, b : b + spec.crop_size, :]
    t = spec.target_size
    if out is None:
        out = np.empty((n, t, t, 3), dtype=np.float32)
    for i in range(n):
        out[i] = resize_square(images[i], t)
    if spec.background == "black":
        white = (out == 255).all(axis=-1)
        out[white] = 0
    return out
