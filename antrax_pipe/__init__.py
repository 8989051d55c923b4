"""antrax-pipe: anTraX-compatible tracklet classification as a Snakemake workflow.

The facade below is the stable API: ``load_…``/``save_…`` functions over the anTraX file kinds, returning the plain
data classes of :mod:`antrax_pipe.model`. Stage modules (trainset, models, training, inference, aggregation, report)
build on it. Nothing here imports TensorFlow, so I/O stays fast and testable without it.
"""

from __future__ import annotations

from .io.autoids import read_autoids as load_autoids
from .io.autoids import write_autoids as save_autoids
from .io.experiment import (
    find_expdirs,
    find_sessions,
    is_expdir,
    load_experiment,
    parse_explist,
    parse_movlist,
    read_movies_info as load_movies_info,
    select_movies,
)
from .io.images import ImagesFile, find_movie_images, read_frame_passed as load_frame_passed
from .io.images import read_tracklet_images as load_tracklet_images
from .io.labels import read_labels as load_labels
from .io.labels import write_labels as save_labels
from .model import (
    MULTI_CLASSES,
    UNKNOWN,
    AntraxFormatError,
    AutoID,
    ClassifierCard,
    Experiment,
    LabelSet,
    MovieImages,
    TrackletName,
)

from ._version import __version__

__all__ = [
    "MULTI_CLASSES", "UNKNOWN", "AntraxFormatError", "AutoID", "ClassifierCard", "Experiment", "ImagesFile",
    "LabelSet", "MovieImages", "TrackletName", "find_expdirs", "find_movie_images", "find_sessions", "is_expdir",
    "load_autoids", "load_experiment", "load_frame_passed", "load_labels", "load_movies_info", "load_tracklet_images",
    "parse_explist", "parse_movlist", "save_autoids", "save_labels", "select_movies",
]
