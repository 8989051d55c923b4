"""CNN architectures of anTraX (docs/tracklet-rule.md#architectures) and our ``tagnet``, as Keras 3 Sequential models.

Imports TensorFlow/Keras: use only for TF work.

Difference from anTraX: the model starts with a normalisation layer (``Rescaling(1/255)``; ``[-1, 1]`` for
MobileNetV2), so every model takes the same input — float32 0–255 from :func:`antrax_pipe.preprocess.preprocess` —
and the saved file itself says how pixels are scaled. ``normalize=False`` gives anTraX's unnormalised model
(used by the ``antrax`` training recipe).
"""

from __future__ import annotations

import json
from pathlib import Path

from .model import ModelBuildError

ARCHS: tuple[str, ...] = ("small", "wide", "large", "MobileNetV2", "custom", "tagnet")

# Conv widths of the conv → maxpool → batchnorm → dropout blocks (docs/tracklet-rule.md#architectures).
_BLOCKS: dict[str, tuple[int, ...]] = {
    "small": (64, 128, 256),
    "wide": (128, 256, 512),
    "large": (64, 64, 128, 256),
}


# ``tagnet`` (ours, not anTraX's): conv → BN → ReLU → maxpool blocks with no dropout inside them (anTraX's blocks
# put Dropout before the next BatchNormalization, whose inference statistics then differ from training's), then
# flatten → dropout → dense. Flatten, not global pooling: *where* each colour sits matters (BG ≠ GB). Measured
# in bench/results/accuracy_notes.md (with the default recipe: held-out image accuracy 0.78 → 0.87).
_TAGNET_WIDTHS: tuple[int, ...] = (32, 64, 128, 128)


def min_target_size(arch: str) -> int:
    """Smallest input side for which each block still has ≥1 pixel (s → floor((s−2)/2) per block)."""
    blocks = _BLOCKS[arch]
    t = 1
    for _ in blocks:
        t = 2 * t + 2
    return t


def build_model(
    arch: str,
    n_classes: int,
    target_size: int,
    modelfile: str | Path | None = None,
    normalize: bool = True,
    dropout: float = 0.25,
    bn_momentum: float = 0.99,
    weights: str | Path | None = None,
):
    """A new, uncompiled ``keras.Model`` with input (T, T, 3) float 0–255 and a softmax over ``n_classes``.

    ``arch``: ``small`` | ``wide`` | ``large`` (anTraX's Sequential CNNs), ``MobileNetV2`` (``weights``: ``'imagenet'``
    = Keras' ImageNet weights, downloaded once into ``~/.keras/models`` on a connected machine; a path = a local
    weights file of the base, e.g. that download copied to an offline machine; None = random init, fully trainable
    — ``modelfile`` is taken as the weights file when ``weights`` is None, as before; with weights the base is
    frozen, as in anTraX; see :func:`_mobilenet`),
    ``custom`` (``modelfile`` = Keras model JSON), ``tagnet`` (ours, the default recipe's: conv-BN-ReLU-maxpool
    blocks of 32/64/128/128 filters, flatten, dropout, dense; 4× fewer parameters than ``small`` at T=48 and a better
    held-out accuracy, see ``bench/results/accuracy_notes.md``). For anTraX compatibility an ``arch`` that is a path
    to a ``.json`` file is taken as ``custom``. ``bn_momentum`` (Keras default 0.99, as anTraX) is the
    BatchNormalization moving-average momentum: with 0.99 the inference-mode statistics need several hundred steps
    to settle, which a small trainset never gets (validation accuracy then sits at chance); the default training
    recipe adapts it to the number of steps per epoch.
    """

    if n_classes < 2:
        raise ModelBuildError(f"a classifier needs at least 2 classes, got {n_classes}")
    if str(arch).lower().endswith((".json", ".yaml", ".yml")):
        arch, modelfile = "custom", arch
    if arch not in ARCHS:
        raise ModelBuildError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    target_size = int(target_size)

    if arch == "custom":
        return _custom_model(modelfile, n_classes, target_size)

    if arch == "MobileNetV2":
        return _mobilenet(n_classes, target_size, weights if weights is not None else modelfile, normalize)
    if arch == "tagnet":
        return _tagnet(n_classes, target_size, normalize, dropout, bn_momentum)
    return _antrax_cnn(arch, n_classes, target_size, normalize, dropout, bn_momentum)


#: MobileNetV2 input sizes with their own ImageNet weights in Keras; any other size gets the 224 px weights.
_MOBILENET_SIZES: tuple[int, ...] = (96, 128, 160, 192, 224)


def mobilenet_weights_url(target_size: int) -> str:
    """Where Keras downloads the ImageNet weights of a MobileNetV2 base (no top, alpha 1.0) for this input size."""
    rows = target_size if target_size in _MOBILENET_SIZES else 224
    return ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
            f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5")


def _mobilenet_weights(weights: str | Path | None) -> str | None:
    """``'imagenet'`` / None as they are; a file path checked (ModelBuildError naming what to do when it is absent)."""
    if weights is None or str(weights).lower() in ("none", "random", ""):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise ModelBuildError(
            f"{path}: MobileNetV2 weights file not found. Pass --weights FILE with a MobileNetV2 base weights file "
            f"(include_top=False, alpha 1.0; Keras' ImageNet file is {mobilenet_weights_url(224)}), --weights "
            f"imagenet on a machine with network access, or --weights none for random initialisation"
        )
    return str(path)


def _mobilenet_base(target_size: int, weights: str | None):
    import keras

    try:
        return keras.applications.MobileNetV2(
            input_shape=(target_size, target_size, 3), include_top=False, weights=weights
        )
    except ValueError as exc:
        if weights not in (None, "imagenet"):
            raise ModelBuildError(f"{weights}: not a MobileNetV2 base weights file (include_top=False, alpha 1.0): "
                                  f"{str(exc)[:300]}") from exc
        raise ModelBuildError(f"MobileNetV2 cannot be built for target size {target_size}: {exc}") from exc
    except Exception as exc:  # keras' get_file raises a bare Exception ("URL fetch failure ...") when offline
        if weights != "imagenet":
            raise ModelBuildError(f"{weights}: cannot load MobileNetV2 weights from this file ({str(exc)[:300]})") from exc
        url = mobilenet_weights_url(target_size)
        raise ModelBuildError(
            f"MobileNetV2: the ImageNet weights could not be downloaded ({type(exc).__name__}: {exc}). This machine "
            f"probably has no network access. Either run once on a connected machine (Keras keeps the file in "
            f"~/.keras/models/), or download {url} elsewhere, copy it here and pass --weights FILE "
            f"(or --weights none for random initialisation)"
        ) from exc


def _mobilenet(n_classes: int, target_size: int, weights: str | Path | None, normalize: bool):
    """MobileNetV2 base (``'imagenet'``: Keras' ImageNet weights, downloaded unless cached; a path: a local weights
    file of the base; None: random init) + global average pooling + softmax. With weights the base is frozen."""
    import keras

    if target_size < 32:
        raise ModelBuildError(f"MobileNetV2 needs a target size of at least 32 px, got {target_size}")
    weights = _mobilenet_weights(weights)
    base = _mobilenet_base(target_size, weights)
    base.trainable = weights is None
    layers = [keras.Input((target_size, target_size, 3), name="image")]
    if normalize:
        layers.append(keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize"))  # = preprocess_input
    layers += [base, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(n_classes, activation="softmax")]
    return keras.Sequential(layers, name="MobileNetV2")


def _antrax_cnn(arch: str, n_classes: int, target_size: int, normalize: bool, dropout: float, bn_momentum: float):
    """anTraX's Sequential CNNs (small/wide/large): conv-maxpool-BN-dropout blocks, flatten, dense softmax."""
    import keras

    need = min_target_size(arch)
    if target_size < need:
        raise ModelBuildError(
            f"architecture {arch!r} needs a target size of at least {need} px, got {target_size} "
            f"(use a larger --target-size, or arch 'small' which needs {min_target_size('small')})"
        )
    L = keras.layers
    layers = [keras.Input((target_size, target_size, 3), name="image")]
    if normalize:
        layers.append(L.Rescaling(1 / 255.0, name="normalize"))
    for i, width in enumerate(_BLOCKS[arch], start=1):
        layers += [
            L.Conv2D(width, (3, 3), activation="relu", name=f"conv{i}"),
            L.MaxPooling2D((2, 2), name=f"pool{i}"),
            L.BatchNormalization(momentum=bn_momentum, name=f"bn{i}"),
            L.Dropout(dropout, name=f"drop{i}"),
        ]
    layers += [
        L.Flatten(name="flatten"),
        L.BatchNormalization(momentum=bn_momentum, name="bn_out"),
        L.Dropout(dropout, name="drop_out"),
        L.Dense(n_classes, activation="softmax", name="output"),
    ]
    return keras.Sequential(layers, name=arch)


def _tagnet(n_classes: int, target_size: int, normalize: bool, dropout: float, bn_momentum: float):
    import keras

    if target_size < 2 ** len(_TAGNET_WIDTHS):
        raise ModelBuildError(f"architecture 'tagnet' needs a target size of at least {2 ** len(_TAGNET_WIDTHS)} px, "
                              f"got {target_size}")
    L = keras.layers
    layers = [keras.Input((target_size, target_size, 3), name="image")]
    if normalize:
        layers.append(L.Rescaling(1 / 255.0, name="normalize"))
    for i, width in enumerate(_TAGNET_WIDTHS, start=1):
        layers += [
            L.Conv2D(width, (3, 3), padding="same", use_bias=False, name=f"conv{i}"),
            L.BatchNormalization(momentum=bn_momentum, name=f"bn{i}"),
            L.ReLU(name=f"relu{i}"),
            L.MaxPooling2D((2, 2), name=f"pool{i}"),
        ]
    layers += [
        L.Flatten(name="flatten"),
        L.Dropout(max(dropout, 0.3), name="drop_out"),
        L.Dense(n_classes, activation="softmax", name="output"),
    ]
    return keras.Sequential(layers, name="tagnet")


def _custom_model(modelfile: str | Path | None, n_classes: int, target_size: int):
    import keras

    if modelfile is None:
        raise ModelBuildError("arch 'custom' needs a model file (--modelfile PATH to a Keras model JSON)")
    path = Path(modelfile)
    if path.suffix.lower() in (".yaml", ".yml"):
        raise ModelBuildError(f"{path}: YAML model files are not supported by Keras 3; save the model as JSON")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelBuildError(f"{path}: cannot read the custom model file ({exc})") from exc
    try:
        json.loads(text)
        model = keras.models.model_from_json(text)
    except Exception as exc:
        raise ModelBuildError(f"{path}: not a Keras model JSON ({exc})") from exc
    in_shape = tuple(model.input_shape[1:])
    out_shape = tuple(model.output_shape[1:])
    if in_shape != (target_size, target_size, 3):
        raise ModelBuildError(
            f"{path}: the custom model's input shape {in_shape} does not match the target size "
            f"({target_size}, {target_size}, 3)"
        )
    if out_shape != (n_classes,):
        raise ModelBuildError(f"{path}: the custom model outputs {out_shape}, but the trainset has {n_classes} classes")
    return model


def custom_model_input_size(modelfile: str | Path) -> int | None:
    """The square input size T of a Keras model JSON (``batch_shape`` of its first input), without building it;
    None when it cannot be read or is not square RGB (the build then reports the problem)."""
    try:
        cfg = json.loads(Path(modelfile).read_text(encoding="utf-8"))
        layers = cfg.get("config", {}).get("layers", [])
        shapes = (lay["config"].get("batch_shape") or lay["config"].get("batch_input_shape") for lay in layers)
        shape = next(s for s in shapes if s)
    except (OSError, ValueError, AttributeError, KeyError, StopIteration, TypeError):
        return None
    if len(shape) == 4 and shape[1] == shape[2] and shape[3] == 3 and isinstance(shape[1], int):
        return int(shape[1])
    return None


def has_normalization(model) -> bool:
    """Whether the model rescales its 0–255 input itself (ours do; anTraX's do not)."""
    import keras

    return any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers)
