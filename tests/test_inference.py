"""Per-movie inference with a tiny real Keras model on images files written in the anTraX (MAT v7.3) layout.

Checked against a per-tracklet ``model(x)`` reference: offsets, probabilities, tracklet order, parts, empty
tracklets/files, one-frame tracklets, batches crossing tracklet boundaries, error handling, end to end to autoids.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import h5py
import numpy as np
import pytest

from antrax_pipe.aggregation import AggregationParams, aggregate_movie
from antrax_pipe.inference import MovieProgress, classify_movie, configure_tf
from antrax_pipe.io.atomic import file_sha256
from antrax_pipe.io.probabilities import ProbabilitiesFile, read_probabilities
from antrax_pipe.io.autoids import read_autoids, write_autoids
from antrax_pipe.io.images import ImagesFile
from antrax_pipe.model import AntraxFormatError, ClassifierCard, LabelSet
from antrax_pipe.model import PreprocessSpec
from antrax_pipe.preprocess import preprocess

CLASSES = ["A", "B", "NoAnt", "Unknown", "Multi"]
LABELS = LabelSet({"ant_labels": ("A", "B"), "noant_labels": ("NoAnt",), "other_labels": ("Multi", "Unknown")})
T = 16  # model input side
S = 20  # stored image side (resized 20 -> 16 by the shared preprocessing)


# ------------------------------------------------------------------------------------------------ fixtures / helpers


def blobs(rng: np.random.Generator, n: int, size: int = S) -> np.ndarray:
    """(n, H, W, 3) uint8 black-background blob images: a coloured ellipse-ish patch, varying per image."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        ry, rx = rng.uniform(size * 0.15, size * 0.35, 2)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        out[i][mask] = rng.integers(1, 256, 3, dtype=np.uint8)
        out[i][mask & (rng.random((size, size)) < 0.3)] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


def write_images_mat(path, tracklets: dict, empty_matlab: tuple[str, ...] = ()) -> None:
    """An images_<m>.mat as MATLAB writes it: 512-byte user block, one uint8 dataset per tracklet, h5py shape
    (N,3,W,H) or (3,W,H) for one frame; ``empty_matlab`` names get MATLAB's empty-array encoding."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, ims in tracklets.items():
            if name in empty_matlab:
                ds = f.create_dataset(name, data=np.array([0, 0, 0, 0], np.uint64))
                ds.attrs["MATLAB_class"] = np.bytes_("uint8")
                ds.attrs["MATLAB_empty"] = np.uint8(1)
                continue
            a = np.ascontiguousarray(ims.transpose(0, 3, 2, 1))  # (N,H,W,3) -> (N,3,W,H)
            if a.shape[0] == 1:
                a = a[0]
            ds = f.create_dataset(name, data=a, chunks=True, compression="gzip")
            ds.attrs["MATLAB_class"] = np.bytes_("uint8")


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((T, T, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(6, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )
    return model


@pytest.fixture(scope="module")
def card():
    return ClassifierCard(classes=list(CLASSES), target_size=T, preprocessing={"target_size": T, "crop_size": None,
                                                                               "background": "white"})


def reference(model, image_files, card) -> dict[str, np.ndarray]:
    """Per-tracklet ``model(x)`` on the shared preprocessing: what every row of the probabilities file must equal."""
    spec = PreprocessSpec.from_dict(card.preprocessing)
    out = {}
    for p in image_files:
        with ImagesFile(p) as f:
            for name in f.tracklets:
                try:
                    x = preprocess(f.read(name), spec)
                except AntraxFormatError:
                    out[name] = np.zeros((0, len(CLASSES)), np.float32)
                    continue
                out[name] = np.asarray(model(x, training=False))
    return out


def assert_matches(probs_path, ref: dict, parts: list[int] | None = None):
    with ProbabilitiesFile(probs_path) as pf:
        assert pf.tracklets == list(ref)
        assert pf.classes == CLASSES
        lengths = [len(v) for v in ref.values()]
        np.testing.assert_array_equal(pf.offsets, np.cumsum([0, *lengths]))
        if parts is not None:
            assert pf.parts.tolist() == parts
        got = dict(iter(pf))
    for name, y in ref.items():
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], y, atol=2e-6, err_msg=name)


class CountingModel:
    """A plain callable model (numpy in, numpy out) that records the batch sizes it was called with."""

    def __init__(self, model):
        self.model = model
        self.calls: list[int] = []

    def __call__(self, x):
        self.calls.append(len(x))
        return self.model.predict_on_batch(x)


# ------------------------------------------------------------------------------------------------ tests


def test_probabilities_equal_per_tracklet_reference(tmp_path, tiny_model, card):
    rng = np.random.default_rng(0)
    lengths = {"trj_id1_ti1_1_tf1_12": 12, "trj_id10_ti1_5_tf1_5": 1, "trj_id2_ti1_3_tf1_9": 7,
               "trj_id3_ti1_20_tf1_49": 30, "trj_id4_ti1_2_tf1_3": 2}
    images = tmp_path / "images_1.mat"
    write_images_mat(images, {k: blobs(rng, n) for k, n in lengths.items()})
    out = classify_movie([images], tiny_model, card, tmp_path / "probs_1.h5", batch_size=8)
    ref = reference(tiny_model, [images], card)
    assert list(ref) == sorted(lengths)  # the file's byte-sorted order (id10 before id2), kept as is
    assert_matches(out, ref, parts=[0] * 5)
    with h5py.File(out) as f:
        assert f["probs"].shape == (52, len(CLASSES)) and f["probs"].chunks is not None
        assert f.attrs["n_images"] == 52 and f.attrs["n_tracklets"] == 5 and f.attrs["batch_size"] == 8
        assert json.loads(f.attrs["image_files"]) == [str(images)]
        assert json.loads(f.attrs["preprocessing"])["target_size"] == T
    assert set(tmp_path.iterdir()) == {images, out}  # no temp file left behind


def test_batches_cross_tracklet_boundaries(tmp_path, tiny_model, card):
    rng = np.random.default_rng(1)
    lengths = [3, 10, 1, 5, 7, 1, 1, 9]  # 37 images
    images = tmp_path / "images_2.mat"
    write_images_mat(images, {f"trj_id{i}_ti2_1_tf2_{n}": blobs(rng, n) for i, n in enumerate(lengths)})
    counting = CountingModel(tiny_model)
    out = classify_movie([images], counting, card, tmp_path / "p.h5", batch_size=8)
    assert counting.calls == [8, 8, 8, 8, 5]  # ceil(37/8) calls, never one per tracklet
    assert_matches(out, reference(tiny_model, [images], card))


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_with_and_without_reader_thread_identical(tmp_path, tiny_model, card, prefetch):
    rng = np.random.default_rng(2)
    images = tmp_path / "images_3.mat"
    write_images_mat(images, {f"trj_id{i}_ti3_1_tf3_{n}": blobs(rng, n) for i, n in enumerate([4, 9, 1, 13, 6])})
    a = classify_movie([images], tiny_model, card, tmp_path / "a.h5", batch_size=5, prefetch=0)
    b = classify_movie([images], tiny_model, card, tmp_path / "b.h5", batch_size=5, prefetch=prefetch)
    ya, yb = list(read_probabilities(a)), list(read_probabilities(b))
    assert [n for n, _ in ya] == [n for n, _ in yb]
    for (_, u), (_, v) in zip(ya, yb):
        np.testing.assert_array_equal(u, v)


def test_parted_movie(tmp_path, tiny_model, card):
    rng = np.random.default_rng(3)
    p1, p2 = tmp_path / "images_4_p1.mat", tmp_path / "images_4_p2.mat"
    write_images_mat(p1, {"trj_id1_ti4_1_tf4_5": blobs(rng, 5), "trj_id2_ti4_2_tf4_2": blobs(rng, 1)})
    write_images_mat(p2, {"trj_id1_ti4_900_tf4_911": blobs(rng, 12), "trj_id7_ti4_950_tf4_952": blobs(rng, 3)})
    out = classify_movie([p1, p2], tiny_model, card, tmp_path / "probs_4.h5", batch_size=4)
    ref = reference(tiny_model, [p1, p2], card)
    assert list(ref) == ["trj_id1_ti4_1_tf4_5", "trj_id2_ti4_2_tf4_2", "trj_id1_ti4_900_tf4_911",
                         "trj_id7_ti4_950_tf4_952"]
    assert_matches(out, ref, parts=[0, 0, 1, 1])


def test_duplicate_tracklet_across_parts_is_an_error(tmp_path, tiny_model, card):
    rng = np.random.default_rng(4)
    p1, p2 = tmp_path / "images_5_p1.mat", tmp_path / "images_5_p2.mat"
    write_images_mat(p1, {"trj_id1_ti5_1_tf5_2": blobs(rng, 2)})
    write_images_mat(p2, {"trj_id1_ti5_1_tf5_2": blobs(rng, 2)})
    with pytest.raises(AntraxFormatError, match="trj_id1_ti5_1_tf5_2.*two image files.*images_5_p1.*images_5_p2"):
        classify_movie([p1, p2], tiny_model, card, tmp_path / "p.h5")
    assert not (tmp_path / "p.h5").exists()


def test_empty_file(tmp_path, tiny_model, card):
    images = tmp_path / "images_6.mat"
    write_images_mat(images, {})
    counting = CountingModel(tiny_model)
    out = classify_movie([images], counting, card, tmp_path / "probs_6.h5")
    assert counting.calls == []
    with ProbabilitiesFile(out) as pf:
        assert pf.tracklets == [] and pf.offsets.tolist() == [0] and pf.n_images == 0 and pf.classes == CLASSES
    assert aggregate_movie(out, LABELS) == []


def test_empty_tracklets_get_zero_rows_and_a_warning(tmp_path, tiny_model, card, caplog):
    rng = np.random.default_rng(5)
    images = tmp_path / "images_7.mat"
    write_images_mat(
        images,
        {"trj_id1_ti7_1_tf7_4": blobs(rng, 4), "trj_id2_ti7_1_tf7_1": None, "trj_id3_ti7_1_tf7_3": blobs(rng, 3)},
        empty_matlab=("trj_id2_ti7_1_tf7_1",),
    )
    with h5py.File(images, "a") as f:  # and a zero-length dataset
        f.create_dataset("trj_id4_ti7_5_tf7_5", data=np.zeros((0, 3, S, S), np.uint8))
    with caplog.at_level(logging.WARNING, logger="antrax_pipe.inference"):
        out = classify_movie([images], tiny_model, card, tmp_path / "probs_7.h5", batch_size=4)
    assert "trj_id2_ti7_1_tf7_1" in caplog.text and "trj_id4_ti7_5_tf7_5" in caplog.text
    ref = reference(tiny_model, [images], card)
    assert [len(v) for v in ref.values()] == [4, 0, 3, 0]
    assert_matches(out, ref)
    with h5py.File(out) as f:
        assert json.loads(f.attrs["empty_tracklets"]) == ["trj_id2_ti7_1_tf7_1", "trj_id4_ti7_5_tf7_5"]
    rows = aggregate_movie(out, LABELS, AggregationParams(use_min_conf=False))
    assert [r.tracklet for r in rows] == list(ref)
    assert (rows[1].label, rows[1].score, rows[1].best_frame) == ("Unknown", 0.0, 0)
    assert (rows[3].label, rows[3].score, rows[3].best_frame) == ("Unknown", 0.0, 0)


def test_damaged_tracklet_fails_cleanly(tmp_path, tiny_model, card):
    rng = np.random.default_rng(6)
    images = tmp_path / "images_8.mat"
    write_images_mat(images, {f"trj_id{i}_ti8_1_tf8_9": blobs(rng, 9) for i in range(1, 6)})
    with h5py.File(images, "a") as f:
        f.create_dataset("trj_id9_ti8_1_tf8_2", data=np.zeros((2, 3, S, S), np.float64))
    for prefetch in (0, 2):
        with pytest.raises(AntraxFormatError, match="images_8.mat: tracklet 'trj_id9_ti8_1_tf8_2': dtype is float64"):
            classify_movie([images], tiny_model, card, tmp_path / "probs_8.h5", batch_size=4, prefetch=prefetch)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["images_8.mat"]  # no output, no temp file


def test_model_errors_fail_cleanly(tmp_path, tiny_model, card):
    rng = np.random.default_rng(7)
    images = tmp_path / "images_9.mat"
    write_images_mat(images, {f"trj_id{i}_ti9_1_tf9_9": blobs(rng, 9) for i in range(1, 9)})

    def broken(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        classify_movie([images], broken, card, tmp_path / "p.h5", batch_size=4)
    wrong = ClassifierCard(classes=CLASSES[:3], target_size=T)
    with pytest.raises(ValueError, match="model output shape \\(4, 5\\).*3 classes"):
        classify_movie([images], tiny_model, wrong, tmp_path / "p.h5", batch_size=4)
    with pytest.raises(ValueError, match="model input shape \\(16, 16, 3\\).*\\(20, 20, 3\\)"):
        classify_movie([images], tiny_model, ClassifierCard(classes=CLASSES, target_size=20), tmp_path / "p.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_9.mat"]
    with pytest.raises(AntraxFormatError, match="images_10.mat: file not found"):
        classify_movie([tmp_path / "images_10.mat"], tiny_model, card, tmp_path / "p.h5")


def test_progress_and_classifier_hash(tmp_path, tiny_model, card):
    rng = np.random.default_rng(8)
    images = tmp_path / "images_11.mat"
    write_images_mat(images, {f"trj_id{i}_ti11_1_tf11_5": blobs(rng, 5) for i in range(1, 7)})  # 30 images
    clf = tmp_path / "classifier.h5"
    clf.write_bytes(b"not really a model, only hashed")
    seen: list[MovieProgress] = []
    out = classify_movie([images], tiny_model, card, tmp_path / "p.h5", batch_size=8, progress=seen.append,
                         classifier_path=clf, compression="gzip")
    assert [p.images_done for p in seen] == [8, 16, 24, 30, 30]
    assert seen[-1].tracklets_done == seen[-1].tracklets_total == 6
    assert [p.tracklets_done for p in seen[:-1]] == [1, 3, 4, 6]
    assert seen[-1].images_per_s > 0
    with h5py.File(out) as f:
        assert f.attrs["classifier_sha256"] == file_sha256(clf)
        assert f.attrs["classifier_path"] == str(clf.absolute())
        assert f["probs"].compression == "gzip"


def test_end_to_end_to_autoids(tmp_path, tiny_model, card):
    """read -> preprocess -> infer -> aggregate -> CSV: one row per dataset, in file order, anTraX format."""
    rng = np.random.default_rng(9)
    names = [f"trj_id{i}_ti12_{i}_tf12_{i + 3}" for i in range(1, 12)]
    images = tmp_path / "images_12.mat"
    write_images_mat(images, {n: blobs(rng, 1 + (i * 7) % 13) for i, n in enumerate(names)})
    probs = classify_movie([images], tiny_model, card, tmp_path / "probs_12.h5", batch_size=16)
    params = AggregationParams(use_min_conf=False)
    rows = aggregate_movie(probs, LABELS, params)
    csv = write_autoids(tmp_path / "autoids_12.csv", rows)
    back = read_autoids(csv)
    assert [r.tracklet for r in back] == sorted(names)
    ref = reference(tiny_model, [images], card)
    from antrax_pipe.aggregation import aggregate_tracklet

    for r in back:
        exp = aggregate_tracklet(ref[r.tracklet], CLASSES, LABELS, params, tracklet=r.tracklet)
        assert r.label == exp.label and r.best_frame == exp.best_frame
        assert r.score == pytest.approx(exp.score, rel=1e-5)
    assert csv.read_text().startswith("tracklet,label,score,best_frame\n")


def test_black_background_card(tmp_path, tiny_model):
    rng = np.random.default_rng(10)
    images = tmp_path / "images_13.mat"
    write_images_mat(images, {"trj_id1_ti13_1_tf13_6": blobs(rng, 6)})
    card = ClassifierCard(classes=CLASSES, target_size=T, background="black", preprocessing={})
    out = classify_movie([images], tiny_model, card, tmp_path / "p.h5")
    with ImagesFile(images) as f:
        x = preprocess(f.read("trj_id1_ti13_1_tf13_6"), PreprocessSpec(T, None, "black"))
    assert (x == 0).all(axis=-1).mean() > 0.3  # background really went black
    (name, y), = read_probabilities(out)
    np.testing.assert_allclose(y, np.asarray(tiny_model(x, training=False)), atol=2e-6)


def test_configure_tf_sets_threads_in_a_fresh_process():
    code = (
        "import json, tensorflow as tf; from antrax_pipe.inference import configure_tf;"
        "info = configure_tf(1); print(json.dumps([info, tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads()]))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    info, intra, inter = json.loads(res.stdout.strip().splitlines()[-1])
    assert (intra, inter) == (1, 2)
    assert info["intra_op_threads"] == 1 and info["inter_op_threads"] == 2 and isinstance(info["gpus"], list)


def test_configure_tf_after_init_only_warns(tiny_model):
    info = configure_tf(1)  # TF already ran ops in this process: settings cannot change any more
    assert set(info) == {"intra_op_threads", "inter_op_threads", "gpus"}
    with pytest.raises(ValueError):
        configure_tf(-1)


def test_batch_size_validation(tmp_path, tiny_model, card):
    with pytest.raises(ValueError, match="batch_size"):
        classify_movie([], tiny_model, card, tmp_path / "p.h5", batch_size=0)


def test_real_image_experiment_parted_with_frame_passed(tmp_path, tiny_model, card, tiny_experiment):
    """Real blob images in MATLAB-written layout (#refs# group, one-frame tracklet, movie 2 in two parts):
    one probabilities row block per dataset, in the order anTraX writes autoids; usepassed maps best frames back."""
    from antrax_pipe.io.images import find_movie_images, read_frame_passed

    exp = tiny_experiment
    movies = find_movie_images(exp.images_dir)
    assert sorted(movies) == [1, 2] and len(movies[2].parts) == 2
    for m, mi in movies.items():
        out = classify_movie(mi.parts, tiny_model, card, tmp_path / f"probs_{m}.h5", batch_size=8)
        ref = reference(tiny_model, mi.parts, card)
        assert list(ref) == exp.sorted_tracklets(m)
        assert_matches(out, ref)
        passed: dict = {}
        for p in mi.passed_parts:
            passed.update(read_frame_passed(p))
        params = AggregationParams(use_min_conf=False, usepassed=True)
        # the untrained tiny model says 'Unknown' everywhere; call every class but Multi an ID so rows get best frames
        all_ids = LabelSet({"ant_labels": ("A", "B", "NoAnt", "Unknown"), "other_labels": ("Multi",)})
        rows = aggregate_movie(out, all_ids, params, passed)
        assert [r.tracklet for r in rows] == exp.sorted_tracklets(m)
        assert all(r.best_frame for r in rows)
        for r in rows:
            y = ref[r.tracklet]
            sel = np.flatnonzero(passed[r.tracklet] & (y.argmax(1) != CLASSES.index("Multi")))  # the ant frames
            best = sel[np.argmax(y[sel, CLASSES.index(r.label)])]
            assert r.best_frame == best + 1  # into the full stack, not into the passed selection


def test_a_long_tracklet_is_read_and_predicted_in_bounded_pieces(tmp_path, tiny_model, card, monkeypatch):
    """A 2,600-frame tracklet (real movies have 20,000-frame ones) is never read whole: at most READ_CHUNK images
    are in memory at a time (plus the batch buffers), and the probabilities equal the per-tracklet reference."""
    import antrax_pipe.inference as inference

    monkeypatch.setattr(inference, "READ_CHUNK", 1000)
    rng = np.random.default_rng(5)
    lengths = {"trj_id1_ti1_1_tf1_3": 3, "trj_id2_ti1_1_tf1_2600": 2600, "trj_id3_ti1_5_tf1_9": 5}
    images = tmp_path / "images_1.mat"
    write_images_mat(images, {k: blobs(rng, n) for k, n in lengths.items()})
    reads: list[int] = []
    real_read = ImagesFile.read

    def spy(self, tracklet, white_bg=True, start=0, stop=None):
        out = real_read(self, tracklet, white_bg, start, stop)
        reads.append(len(out))
        return out

    monkeypatch.setattr(ImagesFile, "read", spy)
    out = classify_movie([images], tiny_model, card, tmp_path / "p.h5", batch_size=64)
    assert max(reads) == 1000 and sum(reads) == 2608  # 1000 + 1000 + 600 for the long one, never 2600 at once
    monkeypatch.setattr(ImagesFile, "read", real_read)
    assert_matches(out, reference(tiny_model, [images], card))
