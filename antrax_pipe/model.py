"""Plain data classes for the domain: label sets, tracklet names, experiments, autoID rows, classifier cards.

These hold data only; reading and writing anTraX files lives in :mod:`antrax_pipe.io`, so that the classes can be
built in tests (and by other tools) without any file at all.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Multi-ant classes are recognised by name in anTraX (there is no ``multi`` category in labels.csv).
MULTI_CLASSES: tuple[str, ...] = ("MultiAnt", "Multi", "multi")
#: The hard-coded "no decision" label anTraX writes (even when it is not a class of the classifier).
UNKNOWN = "Unknown"

ANT_CATEGORY = "ant_labels"
NOANT_CATEGORY = "noant_labels"
OTHER_CATEGORY = "other_labels"
TAGCOLOR_CATEGORY = "tagcolors"


#: The judgements a person can record for a classified tracklet in ``classifier/validation.csv``: the ID is right,
#: wrong, should not have been given ("ambig"), or the tracklet was left Unknown although it is an ant ("falseneg") /
#: rightly ("trueneg").
MARKS: tuple[str, ...] = ("correct", "wrong", "ambig", "falseneg", "trueneg")


# --------------------------------------------------------------------------------------------------------------------
# Errors: every error the project raises on purpose derives from one of these, so the CLI and the workflow scripts
# can print it as one line (the message names the file or input) and keep the traceback for the log.
# --------------------------------------------------------------------------------------------------------------------


class AntraxFormatError(ValueError):
    """A file does not follow the anTraX format; the message names the file (and tracklet) and what is wrong."""


class TrainsetError(AntraxFormatError):
    """A trainset (examples folder, manifest, merge) is unusable; the message names the folder or file."""


class ExportConflictError(TrainsetError):
    """An export would overwrite a different example file or put one tracklet under two labels; nothing was written."""


class ClassifierFileError(AntraxFormatError):
    """A classifier file is missing, corrupt, untrained or inconsistent; the message names the file."""


class ClassLabelMismatchError(ValueError):
    """The classifier's classes do not fit the experiment's labels.csv (checked before any inference)."""


class ModelBuildError(ValueError):
    """A network cannot be built as asked (architecture, input size, custom model file)."""


class TrainingError(RuntimeError):
    """Training cannot start or continue as asked."""


class ClassListChangedError(TrainingError):
    """Incremental training was asked for, but the trainset's classes differ from the stored model's."""


#: What a user-facing command or job reports as one line (the message names the file or input) instead of a
#: traceback: the project's own errors, and the operating system's (a full disk, a missing or unreadable file).
USER_ERRORS: tuple[type[BaseException], ...] = (AntraxFormatError, ClassLabelMismatchError, ModelBuildError,
                                                TrainingError, OSError)


def consv_gates(consv_factor: float) -> tuple[float, float]:
    """anTraX's conservativeness factor c → (min_conf, min_conf_short) = (1 − 0.2c, 1 − 0.02c).

    The one place of this formula: the CLI flag, the aggregation parameters and cards rebuilt from anTraX's
    ``prmtrs`` all derive their gates from it.
    """
    return 1 - 0.2 * consv_factor, 1 - 0.02 * consv_factor


@dataclass(frozen=True)
class LabelSet:
    """The label categories of an experiment (``parameters/labels.csv``), in file order.

    ``categories`` maps category name → labels. The derived properties answer the questions classification asks:
    which predicted class is an individual, a non-ant object, an ambiguous/multi class.
    """

    categories: dict[str, tuple[str, ...]]

    @property
    def ant_labels(self) -> tuple[str, ...]:
        return self.categories.get(ANT_CATEGORY, ())

    @property
    def noant_labels(self) -> tuple[str, ...]:
        return self.categories.get(NOANT_CATEGORY, ())

    @property
    def other_labels(self) -> tuple[str, ...]:
        return self.categories.get(OTHER_CATEGORY, ())

    @property
    def tagcolors(self) -> tuple[str, ...]:
        return self.categories.get(TAGCOLOR_CATEGORY, ())

    @property
    def multi_labels(self) -> tuple[str, ...]:
        """Multi-ant labels present in the set (recognised by name, as anTraX does)."""
        return tuple(lab for lab in self.all_labels if lab in MULTI_CLASSES)

    @property
    def all_labels(self) -> tuple[str, ...]:
        """Every classifiable label (ids, non-ant, other), without tag colours, without duplicates, in file order."""
        seen: dict[str, None] = {}
        for cat in (ANT_CATEGORY, NOANT_CATEGORY, OTHER_CATEGORY):
            for lab in self.categories.get(cat, ()):
                seen.setdefault(lab, None)
        return tuple(seen)

    def category_of(self, label: str) -> str | None:
        for cat, labs in self.categories.items():
            if cat != TAGCOLOR_CATEGORY and label in labs:
                return cat
        return None


_TRACKLET_RE = re.compile(r"^trj_id(\d+)_ti(\d+)_(\d+)_tf(\d+)_(\d+)$")


@dataclass(frozen=True, order=True)
class TrackletName:
    """A parsed anTraX tracklet name ``trj_id<blob>_ti<m>_<mf_i>_tf<m>_<mf_f>`` (frames 1-based within movie m)."""

    blob_id: int
    movie: int
    first_frame: int
    last_movie: int
    last_frame: int

    @classmethod
    def parse(cls, name: str) -> TrackletName:
        m = _TRACKLET_RE.match(name)
        if not m:
            raise ValueError(f"not an anTraX tracklet name: {name!r} (expected trj_id<n>_ti<m>_<f>_tf<m>_<f>)")
        return cls(*(int(g) for g in m.groups()))

    @property
    def name(self) -> str:
        return f"trj_id{self.blob_id}_ti{self.movie}_{self.first_frame}_tf{self.last_movie}_{self.last_frame}"

    @property
    def n_frames(self) -> int:
        """Number of frames the name spans (= number of images, unless the video was downsampled)."""
        return self.last_frame - self.first_frame + 1

    def absolute_frames(self, movie_first_frame: int) -> tuple[int, int]:
        """(first, last) absolute experiment frames, given ``fi`` of the movie from movies_info.txt."""
        return movie_first_frame + self.first_frame - 1, movie_first_frame + self.last_frame - 1


@dataclass(frozen=True)
class MovieImages:
    """The blob-image files of one movie: one ``images_<m>.mat`` or several parts ``images_<m>_p<k>.mat``."""

    movie: int
    parts: tuple[Path, ...]
    passed_parts: tuple[Path, ...] = ()

    @property
    def is_parted(self) -> bool:
        return any("_p" in p.stem for p in self.parts)


@dataclass(frozen=True)
class Experiment:
    """One tracked experiment and the session chosen for classification."""

    expdir: Path
    session: str

    @property
    def name(self) -> str:
        return self.expdir.name

    @property
    def sessiondir(self) -> Path:
        return self.expdir / self.session

    @property
    def parameters_dir(self) -> Path:
        return self.sessiondir / "parameters"

    @property
    def labels_file(self) -> Path:
        return self.parameters_dir / "labels.csv"

    @property
    def images_dir(self) -> Path:
        return self.sessiondir / "images"

    @property
    def labels_dir(self) -> Path:
        return self.sessiondir / "labels"

    @property
    def classdir(self) -> Path:
        return self.sessiondir / "classifier"

    def autoids_file(self, movie: int) -> Path:
        return self.labels_dir / f"autoids_{movie}.csv"


@dataclass(frozen=True)
class AutoID:
    """One row of ``labels/autoids_<m>.csv``: the tracklet's label, its score and 1-based best frame (0 = none)."""

    tracklet: str
    label: str
    score: float = 0.0
    best_frame: int = 0


@dataclass(frozen=True)
class PreprocessSpec:
    """Geometry/background part of preprocessing (crop, resize to T×T, background colour); stored in the classifier
    card so that inference prepares images exactly as training did."""

    target_size: int
    crop_size: int | None = None
    background: str = "white"  # "white": inputs are white-background (anTraX default); "black": turn white → black

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        return cls(**{k: d[k] for k in ("target_size", "crop_size", "background") if k in d})


@dataclass
class ClassifierCard:
    """What inference needs to know about a trained classifier, and what a person wants to know about it."""

    classes: list[str]
    target_size: int
    arch: str = "small"
    background: str = "white"
    hsymmetry: bool = False
    preprocessing: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    trainset_hash: str | None = None
    metrics: dict = field(default_factory=dict)
    # anTraX prmtrs (docs/antrax-format.md#classifier-file) carried on the card so that inference and a re-save keep them.
    name: str = "classifier"
    crop_size: int | None = None
    scale: float = 1.0
    use_min_conf: bool = True
    consv_factor: float = 0.5
    min_conf: float = 0.9
    min_conf_short: float = 0.99
    unknown_weight: float = 20.0
    multi_weight: float = 0.1
    #: per-epoch training history of the latest run: [{"epoch": 1, "loss": ..., "accuracy": ..., "val_loss": ...}]
    history: list = field(default_factory=list)
    #: where the card came from: "antrax_pipe" (our card) or "antrax" (rebuilt from an anTraX prmtrs + classes)
    source: str = "antrax_pipe"

    def preprocess_spec(self) -> PreprocessSpec:
        """The preprocessing the classifier was trained with: ``preprocessing`` (what training recorded), the card's
        fields filling the gaps. A card whose two target sizes disagree is refused (it would feed the model images of
        the wrong size)."""
        d = {"target_size": self.target_size, "crop_size": self.crop_size, "background": self.background}
        d.update(self.preprocessing or {})
        spec = PreprocessSpec.from_dict(d)
        if spec.target_size != self.target_size:
            raise ValueError(
                f"classifier card: preprocessing target_size {spec.target_size} != card target_size {self.target_size}"
            )
        return spec
