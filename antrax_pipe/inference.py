"""Per-movie blob classification: images_<m>.mat (one or more parts) → per-image class probabilities file.

Why this shape (docs/workflow.md#performance-notes):

* Tracklets are read **one at a time** (a movie file can hold GBs) and preprocessed straight into a fixed batch buffer
  that **crosses tracklet boundaries**: one ``predict_on_batch`` per ``batch_size`` images, never one per tracklet
  (``model.predict`` per tracklet costs ~35 ms each, 4× slower over a movie of short tracklets).
* Reading + preprocessing runs in a reader thread feeding a short queue of reusable buffers, so it overlaps with
  inference; memory is bounded by ``(prefetch + 2) × batch_size`` preprocessed images, whatever the movie size.
* Probabilities are appended to a resizable HDF5 dataset batch by batch and the file is renamed into place only when
  complete, so a killed job never leaves a file that looks finished.

The output format and its reader/writer live in :mod:`antrax_pipe.io.probabilities`; aggregation reads it without
TensorFlow. Nothing in this module imports TensorFlow at import time; only :func:`configure_tf` does.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .io.atomic import atomic_path, file_sha256
from .io.images import EmptyTrackletError, ImagesFile
from .io.probabilities import ProbabilitiesWriter
from .logutil import progress as console_info
from .model import AntraxFormatError, ClassifierCard, PreprocessSpec
from .preprocess import preprocess

log = logging.getLogger(__name__)

PROBS_FORMAT = "antrax-pipe-probabilities"
PROBS_FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")


# --------------------------------------------------------------------------------------------------------------------
# TensorFlow set-up
# --------------------------------------------------------------------------------------------------------------------


def configure_tf(threads: int | None = None, gpu: bool = True) -> dict:
    """Match TF's thread pools to the job's allocation and use a visible GPU; call before any TF op runs.

    ``threads`` → intra-op threads (what the scheduler gave the job); inter-op = 2 (TF needs ≥ 2 or training is
    slow, docs/workflow.md#performance-notes). ``None``/0 keeps TF's default (all cores). GPUs get memory growth, so several jobs can
    share one; ``gpu=False`` hides them. Returns what was set, for the job log.
    """
    import tensorflow as tf

    info: dict[str, Any] = {"intra_op_threads": 0, "inter_op_threads": 0, "gpus": []}
    if threads:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(2)
            info["intra_op_threads"], info["inter_op_threads"] = int(threads), 2
        except RuntimeError as exc:  # TF already initialised in this process: settings are fixed now
            log.warning("could not set TF threads (%s); TF was already initialised", exc)
            info["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
            info["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    gpus = tf.config.list_physical_devices("GPU")
    try:
        if not gpu and gpus:
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        for g in gpus:
            tf.config.experimental.set_memory_growth(g, True)
    except RuntimeError as exc:
        log.warning("could not configure GPUs (%s); TF was already initialised", exc)
    info["gpus"] = [g.name for g in gpus]
    return info


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def _predictor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras model → its ``predict_on_batch`` (no per-call overhead, no retracing); any other callable as is."""
    fn = getattr(model, "predict_on_batch", None)
    if fn is None:
        if not callable(model):
            raise TypeError(f"model must be a Keras model or a callable (n,T,T,3) -> (n,C), got {type(model)!r}")
        fn = model
    return fn


def _check_model_input(model: Any, spec: PreprocessSpec) -> None:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4 and shape[1] is not None:
        if tuple(shape[1:]) != (spec.target_size, spec.target_size, 3):
            raise ValueError(
                f"model input shape {shape[1:]} does not match the card's target size "
                f"({spec.target_size}, {spec.target_size}, 3)"
            )


@dataclass(frozen=True)
class MovieProgress:
    """Passed to the ``progress`` callback after each batch, and logged every ``log_every_s`` seconds."""

    tracklets_done: int
    tracklets_total: int
    images_done: int
    elapsed_s: float

    @property
    def images_per_s(self) -> float:
        return self.images_done / self.elapsed_s if self.elapsed_s > 0 else 0.0


# --------------------------------------------------------------------------------------------------------------------
# Reader: tracklets → full batches (crossing tracklet boundaries)
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _Index:
    """What the reader learned about tracklets; written by the reader thread, read by the consumer."""

    names: list[str] = field(default_factory=list)
    parts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # cumulative image count after each tracklet
    empty: list[str] = field(default_factory=list)

    def add(self, name: str, part: int, n: int) -> None:
        self.names.append(name)
        self.parts.append(part)
        self.ends.append((self.ends[-1] if self.ends else 0) + n)


_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _take(free: queue.Queue, stop: threading.Event) -> np.ndarray | None:
    """A free buffer, or None once the consumer has stopped (so the reader thread never blocks forever)."""
    while True:
        try:
            return free.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return None


#: Images of one tracklet read at a time (a long tracklet is read and predicted in pieces, so memory stays bounded).
READ_CHUNK = 1024


def _prep(images: np.ndarray, spec: PreprocessSpec, out: np.ndarray, f: ImagesFile, name: str) -> None:
    try:
        preprocess(images, spec, out=out)
    except Exception as exc:
        raise AntraxFormatError(f"{f.path}: tracklet {name!r}: preprocessing failed ({exc})") from exc


def _fill_batches(
    files: Sequence[ImagesFile],
    spec: PreprocessSpec,
    free: queue.Queue,
    index: _Index,
    stop: threading.Event,
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (buffer, n_rows) batches; buffers come from ``free`` and the consumer puts them back when done."""
    buf = _take(free, stop)
    if buf is None:
        return
    pos = 0
    bs = buf.shape[0]
    for part, f in enumerate(files):
        for name in f.tracklets:
            if stop.is_set():
                return
            n = 0
            try:
                for images in f.read_chunks(name, chunk=max(bs, READ_CHUNK), white_bg=True):
                    i = 0
                    while i < images.shape[0]:
                        take = min(images.shape[0] - i, bs - pos)
                        _prep(images[i : i + take], spec, buf[pos : pos + take], f, name)
                        pos += take
                        i += take
                        if pos == bs:
                            yield buf, pos
                            buf, pos = _take(free, stop), 0
                            if buf is None:
                                return
                    n += images.shape[0]
            except EmptyTrackletError as exc:
                log.warning("%s -> written as an empty tracklet (aggregation: Unknown)", exc)
                index.empty.append(name)
            index.add(name, part, n)
    if pos:
        yield buf, pos
    else:
        free.put(buf)


def _threaded(gen: Iterator, depth: int, stop: threading.Event) -> Iterator:
    """Run a generator in a reader thread, handing items over through a queue of ``depth``; errors re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in gen:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failure(exc))

    t = threading.Thread(target=run, name="antrax-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        t.join()


# --------------------------------------------------------------------------------------------------------------------
# classify_movie
# --------------------------------------------------------------------------------------------------------------------


def _open_movie(stack: contextlib.ExitStack, image_files: Sequence[Path]) -> tuple[list[ImagesFile], int]:
    """Open every part of a movie; a tracklet in two parts is an error (its rows would be ambiguous)."""
    files = [stack.enter_context(ImagesFile(p)) for p in image_files]
    seen: dict[str, Path] = {}
    for f in files:
        for name in f.tracklets:
            if name in seen:
                raise AntraxFormatError(f"tracklet {name!r} is in two image files: {seen[name]} and {f.path}")
            seen[name] = f.path
    return files, len(seen)


def _batches(files: Sequence[ImagesFile], spec: PreprocessSpec, batch_size: int, prefetch: int, index: _Index,
             stop: threading.Event) -> tuple[Iterator[tuple[np.ndarray, int]], queue.Queue]:
    """The batch stream (through a reader thread when ``prefetch`` > 0) and its queue of reusable buffers."""
    t = spec.target_size
    free: queue.Queue = queue.Queue()
    for _ in range(max(0, prefetch) + 2):
        free.put(np.empty((batch_size, t, t, 3), dtype=np.float32))
    batches = _fill_batches(files, spec, free, index, stop)
    if prefetch > 0:
        batches = _threaded(batches, prefetch, stop)
    return batches, free


def _predict_all(batches: Iterator[tuple[np.ndarray, int]], free: queue.Queue, predict: Callable,
                 writer: ProbabilitiesWriter, report: Callable[[int], None]) -> None:
    """Predict every batch and append its rows; buffers go back to ``free`` once their rows are written."""
    n_classes = len(writer.classes)
    for buf, n in batches:
        y = np.asarray(predict(buf[:n]), dtype=np.float32)
        if y.shape != (n, n_classes):
            raise ValueError(
                f"model output shape {y.shape} for a batch of {n} images; the card has {n_classes} "
                f"classes ({', '.join(writer.classes)}) - wrong card for this model?"
            )
        writer.append(y)
        free.put(buf)  # only now: y may be a view of buf (a plain callable as model)
        report(writer.rows)


def _reporter(name: str, total: int, index: _Index, t0: float, progress: Callable[[MovieProgress], None] | None,
              log_every_s: float) -> Callable[[int], None]:
    """A per-batch callback: the caller's ``progress`` every batch, a log line every ``log_every_s`` seconds."""
    last_log = [t0]

    def report(done: int) -> None:
        now = time.perf_counter()
        if progress is None and now - last_log[0] < log_every_s:
            return
        p = MovieProgress(bisect.bisect_right(index.ends, done), total, done, now - t0)
        if progress is not None:
            progress(p)
        if now - last_log[0] >= log_every_s:
            last_log[0] = now
            console_info(log, "%s: %d/%d tracklets, %d images, %.0f img/s, ETA %s", name, p.tracklets_done, total,
                     done, p.images_per_s, _eta(p))

    return report


def _eta(p: MovieProgress) -> str:
    """Time left, from the share of tracklets done (image counts are not known up front without reading them)."""
    if not p.tracklets_done:
        return "unknown"
    left = p.elapsed_s * (p.tracklets_total - p.tracklets_done) / p.tracklets_done
    return f"{int(left // 60)} min {int(left % 60):02d} s" if left >= 60 else f"{left:.0f} s"


def classify_movie(
    image_files: Sequence[str | Path],
    model: Any,
    card: ClassifierCard,
    out_path: str | Path,
    batch_size: int = 256,
    progress: Callable[[MovieProgress], None] | None = None,
    *,
    classifier_path: str | Path | None = None,
    prefetch: int = 2,
    compression: str | None = None,
    log_every_s: float = 30.0,
    name: str | None = None,
) -> Path:
    """Classify every image of one movie (its ``images_<m>[_p<k>].mat`` parts, in order) → probabilities file.

    ``model``: a Keras model (``predict_on_batch`` is used) or any callable (n,T,T,3) float32 → (n,C). ``card``
    gives classes and preprocessing. ``prefetch`` = batches the reader thread may prepare ahead (0: no thread).
    ``compression`` (e.g. "gzip") applies to ``probs``. Empty tracklets get zero rows and a warning; a damaged
    tracklet is an error naming file and tracklet, and then no output is written. ``name`` (e.g. "colonyA movie 1")
    names the movie in log lines (default: the output file's name).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    image_files = [Path(p) for p in image_files]
    out_path = Path(out_path)
    name = name or out_path.name
    spec = card.preprocess_spec()
    _check_model_input(model, spec)
    predict = _predictor(model)
    if not card.classes:
        raise ValueError("classifier card has no classes")
    clf_hash = file_sha256(classifier_path) if classifier_path else ""  # before the long part: fail fast
    t0 = time.perf_counter()
    index, stop = _Index(), threading.Event()
    with contextlib.ExitStack() as stack:
        files, total = _open_movie(stack, image_files)
        log.info("%s: %d tracklet(s) in %d file(s) to classify", name, total, len(files))
        batches, free = _batches(files, spec, batch_size, prefetch, index, stop)
        with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
            writer = ProbabilitiesWriter(h5, card.classes, compression)
            try:
                _predict_all(batches, free, predict, writer, _reporter(name, total, index, t0, progress,
                                                                       log_every_s))
            finally:
                stop.set()
                close = getattr(batches, "close", None)
                if close is not None:
                    close()  # joins the reader thread before the image files are closed
            done = writer.rows
            if done != (index.ends[-1] if index.ends else 0) or len(index.names) != total:
                raise RuntimeError(f"{out_path}: internal error: {done} probability rows for {index.ends[-1:]} images")
            elapsed = time.perf_counter() - t0
            writer.finish(index.names, index.parts, index.ends, {
                "classifier_path": str(Path(classifier_path).absolute()) if classifier_path else "",
                "classifier_sha256": clf_hash,
                "image_files": json.dumps([str(p) for p in image_files]),
                "preprocessing": json.dumps(spec.to_dict()),
                "batch_size": batch_size,
                "n_tracklets": total,
                "empty_tracklets": json.dumps(index.empty),
                "elapsed_s": elapsed,
                "images_per_s": done / elapsed if elapsed > 0 else 0.0,
            })
    p = MovieProgress(total, total, done, elapsed)
    if progress is not None:
        progress(p)
    console_info(log, "%s: classified %d tracklets (%d empty), %d images in %.1f s, %.0f img/s", name, total,
             len(index.empty), done, elapsed, p.images_per_s)
    return out_path
