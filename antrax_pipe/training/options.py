"""The training recipes, and the one place that turns a recipe plus the user's options into every training setting.

Default recipe (``recipe='default'``), and why it differs from anTraX. Every choice was measured with
``bench/accuracy_eval.py`` (tracklet-grouped held-out sets and leave-one-experiment-out on the shared real trainset,
anTraX's aggregation and gates); the runs are in ``bench/results/accuracy_runs.tsv``:

- a **held-out validation split grouped by tracklet** (frames of one tracklet are near-duplicates; an image-level
  split would measure memorisation). Per label, tracklets are ranked by a seeded hash of their key and the first
  ``val_fraction`` of them are held out, so the split is deterministic and mostly stable when examples are added
  (an incremental run does not validate on tracklets an earlier run trained on). Each validation tracklet weighs
  the same in the validation loss (one 400-frame tracklet flipping would otherwise swing it 3×);
- architecture ``tagnet`` (:mod:`antrax_pipe.nets`): conv-BN-ReLU blocks without anTraX's dropout-before-BN, at
  T = 64 unless ``target_size`` is given (anTraX: the first example's size, arbitrary when sizes are mixed);
- **epochs of tracklets, not images** (``frames_per_tracklet``, default 8): every epoch draws 8 fresh frames of each
  training tracklet — frames are near-duplicates, and the few long tracklets would otherwise dominate;
- a cosine learning-rate schedule over ``epochs`` (the validation loss is too noisy early on to steer the rate
  with ReduceLROnPlateau, which halved it within the first epochs), early stopping on the validation loss
  (patience 10) with the best weights restored;
- augmentation: anTraX's geometric set plus per-channel gain (camera white balance, ±10 %) and saturation (±30 %);
  no hue jitter — tags are colours;
- **no temperature calibration by default**, measured: picking a softmax temperature on the ~60 validation
  tracklets (``calibrate='gates'``: the most right IDs minus ``gate_penalty`` × (wrong IDs + non-ID tracklets given
  an ID) under the default gates; ``'nll'``: classic temperature scaling) landed anywhere between t = 0.55 and 1.68
  across seeds and made the held-out results *less* stable (known split, 3 seeds: 63–90 % of ID tracklets assigned
  calibrated vs 82–83 % uncalibrated, 0 wrong IDs either way). The options stay: the chosen temperature is folded
  into the output layer (kernel and bias ÷ t), so the saved model *is* calibrated and inference needs nothing
  else; it is in the card (``training.temperature``, ``metrics.calibration``) and undone before an incremental run
  trains on, then fitted again;
- class weights applied as a dict: balanced (N / (C · n_c), over the tracklet draws), ``Unknown`` ×
  ``unknown_weight`` (default **1** here: anTraX's ×20 was, very likely, never applied by TF 1.15 Keras — it
  ignored a non-dict class_weight — and makes the model prefer ``Unknown``; the ``antrax`` recipe keeps 20), multi
  classes × ``multi_weight`` (incl. lowercase ``multi``);
- BatchNormalization momentum adapted to the epoch length (``1 − 4/steps``, clipped to [0.5, 0.99]): Keras' 0.99
  needs hundreds of steps before the inference-mode statistics settle, and until then a small trainset's validation
  accuracy sits at chance (measured on 4 labels × ~6 tracklets: min accuracy over 4 seeds 0.59 → 0.88);
- input normalisation inside the model (:mod:`antrax_pipe.nets`);
- incremental training continues from the saved model **with its optimizer state**; a changed class list is an
  error (:class:`~antrax_pipe.model.ClassListChangedError`, "use scratch"): we do not extend the output layer,
  because a class added to a trained model would start far behind the others and silently bias it.

``recipe='antrax'``: no validation (unless ``val_fraction`` is given, then it is only reported), no input
normalisation, 1000 steps × 32 random draws per epoch, 5 epochs, fresh Adam each run, early stopping / LR reduction
on the training loss (patience 10 / 5 as anTraX), anTraX's class weights (Unknown × 20, multi × 0.1) applied.

Both recipes read images through :func:`antrax_pipe.trainset.load_example_images` (the shared preprocessing) and
augment with Keras 3 ``Random*`` layers in a tf.data pipeline (anTraX's ImageDataGenerator no longer exists).

:class:`TrainOptions` holds every setting of :func:`~antrax_pipe.training.train_classifier` (None: the recipe
decides); :meth:`TrainOptions.resolved` fills them in from the recipe and checks them, and :func:`epoch_plan` adds the
settings that depend on the trainset's size (steps per epoch, BatchNormalization momentum).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

RECIPES: tuple[str, ...] = ("default", "antrax")

# The default recipe (chosen on bench/accuracy_eval.py; runs logged in bench/results/accuracy_runs.tsv).
DEFAULT_ARCH = "tagnet"
DEFAULT_TARGET_SIZE = 64  # anTraX: the first example's size (46–88 px in the shared trainset); 48 → 64: 0.90 → 0.96
DEFAULT_FRAMES_PER_TRACKLET = 8
DEFAULT_LR_SCHEDULE = "cosine"
DEFAULT_PATIENCE = 10
DEFAULT_AUG: dict = {"channel_gain_range": 0.1, "saturation_range": 0.3}
DEFAULT_GATE_PENALTY = 1.5  # chosen on the tracklet-grouped known split (bench/results/accuracy_notes.md)

#: What each recipe decides when the user leaves a setting at None (``steps_per_epoch`` None for the default recipe:
#: one pass over the tracklet draws; ``frames_per_tracklet`` None for anTraX: random image draws).
RECIPE_DEFAULTS: dict[str, dict] = {
    "default": {"epochs": 30, "arch": DEFAULT_ARCH, "val_fraction": 0.2, "steps_per_epoch": None,
                "unknown_weight": 1.0, "patience": DEFAULT_PATIENCE, "frames_per_tracklet": DEFAULT_FRAMES_PER_TRACKLET,
                "lr_schedule": DEFAULT_LR_SCHEDULE},
    "antrax": {"epochs": 5, "arch": "small", "val_fraction": 0.0, "steps_per_epoch": 1000, "unknown_weight": 20.0,
               "patience": 10, "frames_per_tracklet": None, "lr_schedule": "plateau"},
}


# --------------------------------------------------------------------------------------------------------------------
# Augmentation options


def _parse_bool(v) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _parse_range(v) -> tuple[float, float]:
    """``(lo, hi)`` / ``[lo, hi]`` / ``"lo:hi"`` / a single r meaning ``(1 - r, 1 + r)``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected two numbers (lo, hi), got {v!r}")
        return float(v[0]), float(v[1])
    if isinstance(v, str) and ":" in v:
        lo, hi = v.split(":", 1)
        return float(lo), float(hi)
    r = float(v)
    return 1.0 - r, 1.0 + r


@dataclass(frozen=True)
class AugOptions:
    """Training-time augmentation. Defaults = anTraX's ImageDataGenerator settings.

    Shifts are in pixels of the T×T network input when ≥ 1 and fractions of T when < 1 (as ImageDataGenerator);
    shear and rotation in degrees (uniform ±); zoom: each axis scaled by U(1 − z, 1 + z); brightness: pixel values
    multiplied by U(lo, hi); ``horizontal_flip=None`` follows the classifier's ``hsymmetry``.
    Not in anTraX: ``channel_gain_range`` r multiplies each colour channel by its own U(1 − r, 1 + r) (a camera's
    white balance; no hue rotation, which would turn one tag colour into another) and ``contrast_range`` c scales
    pixel deviations from the image mean by U(1 − c, 1 + c); ``saturation_range`` s scales each pixel's deviation from
    its own grey level by U(1 − s, 1 + s) (paint that is fainter or stronger in another experiment; hue is kept).
    """

    width_shift_range: float = 10.0
    height_shift_range: float = 10.0
    shear_range: float = 5.0
    rotation_range: float = 15.0
    zoom_range: float = 0.1
    brightness_range: tuple[float, float] = (0.9, 1.1)
    horizontal_flip: bool | None = None
    vertical_flip: bool = True
    channel_gain_range: float = 0.0
    contrast_range: float = 0.0
    saturation_range: float = 0.0

    _CONVERTERS = {
        "width_shift_range": float,
        "height_shift_range": float,
        "shear_range": float,
        "rotation_range": float,
        "zoom_range": float,
        "brightness_range": _parse_range,
        "horizontal_flip": lambda v: None if v is None or str(v).lower() == "none" else _parse_bool(v),
        "vertical_flip": _parse_bool,
        "channel_gain_range": float,
        "contrast_range": float,
        "saturation_range": float,
    }

    def __post_init__(self) -> None:
        for k in ("width_shift_range", "height_shift_range", "shear_range", "rotation_range", "zoom_range"):
            v = getattr(self, k)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"aug option {k}={v!r}: must be a finite number ≥ 0")
        for k in ("channel_gain_range", "contrast_range", "saturation_range"):
            v = getattr(self, k)
            if not math.isfinite(v) or not 0 <= v < 1:
                raise ValueError(f"aug option {k}={v!r}: must be in [0, 1)")
        if self.rotation_range > 180:
            raise ValueError(f"aug option rotation_range={self.rotation_range}: at most 180 degrees")
        if self.shear_range >= 45:
            raise ValueError(f"aug option shear_range={self.shear_range}: must be < 45 degrees")
        if self.zoom_range >= 1:
            raise ValueError(f"aug option zoom_range={self.zoom_range}: must be < 1")
        lo, hi = self.brightness_range
        if not (0 < lo <= hi) or not math.isfinite(hi):
            raise ValueError(f"aug option brightness_range={self.brightness_range}: need 0 < lo ≤ hi")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def none(cls) -> AugOptions:
        """No augmentation at all."""
        return cls(0, 0, 0, 0, 0, (1.0, 1.0), False, False, 0.0, 0.0, 0.0)

    @classmethod
    def parse(cls, value: AugOptions | Mapping | str | None) -> AugOptions:
        """From an AugOptions, a dict, or anTraX's ``--aug-options`` string ``k=v,k=v`` (``none`` → no augmentation).
        Unknown keys and bad values raise ValueError naming the key and the valid keys."""
        if value is None:
            return cls()
        if isinstance(value, AugOptions):
            return value
        if isinstance(value, str):
            if _aug_off(value):
                return cls.none()
            s = value.strip()
            items: dict = {}
            for part in filter(None, (p.strip() for p in s.split(","))):
                if "=" not in part:
                    raise ValueError(f"aug options {value!r}: {part!r} is not key=value")
                k, v = part.split("=", 1)
                items[k.strip()] = v.strip()
            value = items
        if not isinstance(value, Mapping):
            raise ValueError(f"aug options must be a dict or a 'key=value,...' string, got {type(value).__name__}")
        unknown = sorted(set(value) - set(cls.names()))
        if unknown:
            raise ValueError(
                f"unknown aug option(s): {', '.join(unknown)}; valid options: {', '.join(cls.names())}"
            )
        kwargs = {}
        for k, v in value.items():
            try:
                kwargs[k] = cls._CONVERTERS[k](v)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"aug option {k}={v!r}: {exc}") from exc
        return cls(**kwargs)

    @classmethod
    def parse_keys(cls, value: Mapping | str) -> list[str]:
        """The option names a dict / ``k=v,...`` string sets (unvalidated)."""
        if isinstance(value, str):
            return [p.split("=", 1)[0].strip() for p in value.split(",") if "=" in p]
        return list(value)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["brightness_range"] = list(self.brightness_range)
        return d


def _aug_off(value) -> bool:
    """``--aug-options none`` (or off/false): every augmentation switched off, no recipe defaults merged in."""
    return isinstance(value, str) and value.strip().lower() in ("none", "off", "false")


def _recipe_aug(value: AugOptions | Mapping | str | None, is_antrax: bool) -> AugOptions:
    """The recipe's augmentation with the user's keys on top: anTraX's defaults for ``recipe='antrax'``, those plus
    :data:`DEFAULT_AUG` for the default recipe. ``'none'`` and an :class:`AugOptions` are taken as they are."""
    if is_antrax or isinstance(value, AugOptions) or _aug_off(value):
        return AugOptions.parse(value)
    user = AugOptions.parse(value)  # validates (unknown keys, bad values) before merging
    given = set(AugOptions.parse_keys(value)) if value is not None else set()
    merged = {**DEFAULT_AUG, **{k: v for k, v in user.to_dict().items() if k in given}}
    return AugOptions.parse(merged)


def parse_aug_options(value: AugOptions | Mapping | str | None) -> dict:
    """Validate ``--aug-options`` (string or dict) → a plain dict (JSON/YAML-safe, e.g. for a Snakemake config) that
    :meth:`AugOptions.parse` accepts again. Raises ValueError on unknown keys or bad values. Only the options given
    are kept (``none`` → every option, switched off), so the recipe's defaults still apply to the others."""
    full = AugOptions.parse(value).to_dict()
    if value is None or isinstance(value, AugOptions) or _aug_off(value):
        return full
    given = set(AugOptions.parse_keys(value))
    return {k: v for k, v in full.items() if k in given}


# --------------------------------------------------------------------------------------------------------------------
# Every training setting, and the recipe's defaults for them


@dataclass(frozen=True)
class TrainOptions:
    """The settings of one training run (what :func:`~antrax_pipe.training.train_classifier` takes, less where the
    examples come from and where the model goes). None: the recipe decides (see :meth:`resolved`)."""

    recipe: str = "default"
    scratch: bool = False
    epochs: int | None = None
    arch: str | None = None
    target_size: int | None = None
    hsymmetry: bool = False
    aug_options: AugOptions | Mapping | str | None = None
    modelfile: str | os.PathLike | None = None
    seed: int = 0
    val_fraction: float | None = None
    batch_size: int = 32
    threads: int | None = None
    patience: int | None = None
    learning_rate: float | None = None
    steps_per_epoch: int | None = None
    unknown_weight: float | None = None
    multi_weight: float = 0.1
    class_weighting: str = "balanced"
    crop_size: int | None = None
    background: str = "white"
    bn_momentum: float | None = None
    label_smoothing: float | None = None
    frames_per_tracklet: int | None = None
    calibrate: bool | str | None = None
    lr_schedule: str | None = None
    gate_penalty: float | None = None
    weights: str | os.PathLike | None = None
    average_epochs: int = 0

    @property
    def is_antrax(self) -> bool:
        return self.recipe == "antrax"

    @property
    def draws_tracklets(self) -> bool:
        """Epochs of tracklet draws (``frames_per_tracklet`` frames of each training tracklet), not of images."""
        return bool(self.frames_per_tracklet) and not self.is_antrax

    def resolved(self) -> TrainOptions:
        """These options with the recipe's defaults filled in (``aug_options`` an :class:`AugOptions`), checked.
        ValueError names the first bad setting. ``steps_per_epoch`` (default recipe) and ``bn_momentum`` depend on
        the trainset: :func:`epoch_plan`."""
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown training recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.class_weighting not in ("balanced", "none"):
            raise ValueError(f"class_weighting must be 'balanced' or 'none', got {self.class_weighting!r}")
        if self.background not in ("white", "black"):
            raise ValueError(f"background must be 'white' or 'black', got {self.background!r}")
        rd = RECIPE_DEFAULTS[self.recipe]

        def pick(name: str):
            v = getattr(self, name)
            return v if v is not None else rd[name]

        epochs = int(pick("epochs"))
        val_fraction = float(pick("val_fraction"))
        unknown_weight = float(pick("unknown_weight"))
        label_smoothing = float(self.label_smoothing if self.label_smoothing is not None else 0.0)
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        arch = self.arch or rd["arch"]
        patience = int(pick("patience"))
        frames_per_tracklet = pick("frames_per_tracklet")
        if frames_per_tracklet is not None and int(frames_per_tracklet) < 1:
            raise ValueError(f"frames_per_tracklet must be ≥ 1, got {frames_per_tracklet}")
        calibrate = self.calibrate if self.calibrate is not None else False  # measured: adds variance (module doc)
        gate_penalty = float(self.gate_penalty if self.gate_penalty is not None else DEFAULT_GATE_PENALTY)
        if not gate_penalty > 0:
            raise ValueError(f"gate_penalty must be > 0, got {gate_penalty}")
        if calibrate not in (True, False, "gates", "nll"):
            raise ValueError(f"calibrate must be true/false, 'gates' or 'nll', got {calibrate!r}")
        lr_schedule = self.lr_schedule or rd["lr_schedule"]
        if lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"lr_schedule must be 'plateau' or 'cosine', got {lr_schedule!r}")
        if self.average_epochs < 0 or self.average_epochs == 1:
            raise ValueError(f"average_epochs must be 0 (off) or ≥ 2, got {self.average_epochs}")
        if epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be ≥ 1 (got {epochs}, {self.batch_size})")
        return dataclasses.replace(
            self, epochs=epochs, val_fraction=val_fraction, unknown_weight=unknown_weight,
            weights=resolve_weights(arch, self.weights, self.modelfile),
            steps_per_epoch=pick("steps_per_epoch"), label_smoothing=label_smoothing, arch=arch, patience=patience,
            frames_per_tracklet=frames_per_tracklet, calibrate=calibrate, gate_penalty=gate_penalty,
            lr_schedule=lr_schedule, aug_options=_recipe_aug(self.aug_options, self.is_antrax),
        )


def resolve_weights(arch: str, weights: str | os.PathLike | None, modelfile: str | os.PathLike | None) -> str | None:
    """Initial weights of a new network: only MobileNetV2 has pre-trained ones. Its default is ``'imagenet'`` (Keras'
    ImageNet weights: downloaded on a connected machine, else the network build fails with what to do); a path is a
    local weights file (``--weights FILE``, offline); ``'none'`` = random initialisation. anTraX's way — the weights
    file given as ``modelfile`` — still works when ``weights`` is not given. Other architectures start from random
    weights: a ``weights`` value for them is an error."""
    if arch != "MobileNetV2":
        if weights is not None and str(weights).lower() not in ("none", ""):
            raise ValueError(f"weights={str(weights)!r}: pre-trained weights exist only for arch MobileNetV2 "
                             f"(arch is {arch!r})")
        return None
    if weights is None:
        return str(modelfile) if modelfile is not None else "imagenet"
    w = str(weights)
    if w.lower() in ("none", "random", ""):
        return "none"
    return "imagenet" if w.lower() == "imagenet" else w


def resolve_options(recipe: str = "default", **user) -> TrainOptions:
    """``TrainOptions(recipe=recipe, **user).resolved()``: the user's settings, the recipe's for the rest."""
    return TrainOptions(recipe=recipe, **user).resolved()


def epoch_plan(opts: TrainOptions, n_train_tracklets: int, n_train_images: int) -> tuple[TrainOptions, int]:
    """(options with ``steps_per_epoch`` and ``bn_momentum`` decided for this trainset, steps per epoch).

    Tracklet draws: one epoch shows every training tracklet ``frames_per_tracklet`` times. Otherwise an epoch is one
    pass over the training images unless ``steps_per_epoch`` is set (``steps_per_epoch`` then stays None for Keras).
    BatchNormalization's moving-average horizon 1/(1 − m) is about a quarter of an epoch (Keras' 0.99 needs ≥ 400
    steps); anTraX keeps 0.99."""
    spe = opts.steps_per_epoch
    if opts.draws_tracklets:
        spe = spe or max(1, math.ceil(n_train_tracklets * int(opts.frames_per_tracklet) / opts.batch_size))
    steps = spe or math.ceil(n_train_images / opts.batch_size)
    bn = opts.bn_momentum
    if bn is None:
        bn = 0.99 if opts.is_antrax else float(np.clip(1 - 4 / max(steps, 1), 0.5, 0.99))
    return dataclasses.replace(opts, steps_per_epoch=spe, bn_momentum=bn), steps
