"""Training-time augmentation: Keras 3 ``Random*`` layers and a few photometric jitters, applied per image inside the
tf.data pipeline (anTraX used Keras' ImageDataGenerator, which no longer exists). What to augment is
:class:`~antrax_pipe.training.options.AugOptions`."""

from __future__ import annotations

import math

from .options import AugOptions


def _make_augmenter(aug: AugOptions, target_size: int, hsymmetry: bool, fill: float, seed: int):
    """A function (B,T,T,3) float32 → augmented batch, built from Keras 3 Random* layers (per-image parameters)."""
    import keras
    import tensorflow as tf

    L = keras.layers
    geo = dict(fill_mode="constant", fill_value=float(fill), interpolation="bilinear")
    t = float(target_size)

    def frac(shift: float) -> float:
        return min(shift / t if shift >= 1 else shift, 0.9)

    layers = []
    if aug.width_shift_range or aug.height_shift_range:
        layers.append(L.RandomTranslation(frac(aug.height_shift_range), frac(aug.width_shift_range), seed=seed, **geo))
    if aug.rotation_range:
        layers.append(L.RandomRotation(aug.rotation_range / 360.0, seed=seed + 1, **geo))
    if aug.shear_range:
        shear = math.tan(math.radians(aug.shear_range))
        layers.append(L.RandomShear(x_factor=shear, y_factor=0.0, seed=seed + 2, **geo))
    if aug.zoom_range:
        z = aug.zoom_range
        layers.append(L.RandomZoom((-z, z), (-z, z), seed=seed + 3, **geo))
    hflip = hsymmetry if aug.horizontal_flip is None else aug.horizontal_flip
    mode = {(True, True): "horizontal_and_vertical", (True, False): "horizontal", (False, True): "vertical"}.get(
        (bool(hflip), bool(aug.vertical_flip))
    )
    if mode:
        layers.append(L.RandomFlip(mode, seed=seed + 4))
    lo, hi = aug.brightness_range

    def augment(x):
        for layer in layers:
            x = layer(x, training=True)
        if (lo, hi) != (1.0, 1.0):
            f = tf.random.uniform((tf.shape(x)[0], 1, 1, 1), lo, hi, seed=seed + 5)
            x = x * f
        if aug.channel_gain_range:
            r = aug.channel_gain_range
            x = x * tf.random.uniform((tf.shape(x)[0], 1, 1, 3), 1 - r, 1 + r, seed=seed + 6)
        if aug.saturation_range:
            s_ = aug.saturation_range
            g = tf.reduce_mean(x, axis=3, keepdims=True)
            x = g + (x - g) * tf.random.uniform((tf.shape(x)[0], 1, 1, 1), 1 - s_, 1 + s_, seed=seed + 8)
        if aug.contrast_range:
            c = aug.contrast_range
            m = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
            x = m + (x - m) * tf.random.uniform((tf.shape(x)[0], 1, 1, 1), 1 - c, 1 + c, seed=seed + 7)
        return tf.clip_by_value(x, 0.0, 255.0)

    return augment
