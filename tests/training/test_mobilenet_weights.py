"""--arch MobileNetV2 pre-trained (issue 14, item 5): Keras' ImageNet weights (downloaded on a connected machine) or a
local weights file offline, and a clear ModelBuildError when neither is available. The weights file is made here:
a MobileNetV2 base built with random weights and saved (its shapes do not depend on the input size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from antrax_pipe.model import ModelBuildError
from antrax_pipe.nets import build_model, mobilenet_weights_url
from antrax_pipe.training import resolve_options


def _base_of(model):
    import keras

    (base,) = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return base


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A MobileNetV2 base (include_top=False) with random weights, saved as Keras 3 ``.weights.h5``."""
    import keras

    keras.utils.set_random_seed(3)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None)
    path = tmp_path_factory.mktemp("mnv2") / "mobilenet_v2_base.weights.h5"
    base.save_weights(path)
    return path, [np.array(w) for w in base.get_weights()]


def test_local_weights_file_is_loaded_and_the_base_frozen(weights_file):
    path, want = weights_file
    model = build_model("MobileNetV2", 4, 48, weights=path)  # another input size: the file still fits
    base = _base_of(model)
    got = base.get_weights()
    assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))
    assert not base.trainable and model.output_shape == (None, 4)
    # a second model without the file is random, i.e. differs
    other = _base_of(build_model("MobileNetV2", 4, 48, weights=None)).get_weights()
    assert not all(np.array_equal(g, w) for g, w in zip(other, want))


def test_legacy_h5_weights_file_as_keras_ships_imagenet(tmp_path, weights_file):
    """Keras' ImageNet file (…_no_top.h5) is a legacy HDF5 weights file: written here in that format."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    _, want = weights_file
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None)
    base.set_weights(want)
    path = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    got = _base_of(build_model("MobileNetV2", 4, 64, weights=path)).get_weights()
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_modelfile_is_still_taken_as_the_weights_file(weights_file):
    path, want = weights_file
    base = _base_of(build_model("MobileNetV2", 4, 32, modelfile=path))
    assert np.array_equal(base.get_weights()[0], want[0])


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ModelBuildError, match="weights file not found") as exc:
        build_model("MobileNetV2", 4, 32, weights=tmp_path / "absent.h5")
    assert "--weights" in str(exc.value) and "imagenet" in str(exc.value)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_wrong_file_is_a_model_build_error(tmp_path):
    bad = tmp_path / "small.weights.h5"
    build_model("small", 4, 32).save_weights(bad)
    with pytest.raises(ModelBuildError, match="not a MobileNetV2 base weights file"):
        build_model("MobileNetV2", 4, 32, weights=bad)


def test_unavailable_download_says_what_to_do(monkeypatch):
    """No network: Keras' get_file raises a bare Exception('URL fetch failure ...'); simulated, so that the test
    neither downloads on a connected machine nor finds a cached file in ~/.keras."""
    from keras.src.applications import mobilenet_v2

    def offline(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mobilenet_v2.file_utils, "get_file", offline)
    with pytest.raises(ModelBuildError, match="could not be downloaded") as exc:
        build_model("MobileNetV2", 4, 64, weights="imagenet")
    msg = str(exc.value)
    assert "--weights FILE" in msg and mobilenet_weights_url(64) in msg and "1.0_224_no_top.h5" in msg
    assert mobilenet_weights_url(128).endswith("_1.0_128_no_top.h5")


def test_options_resolve_weights(weights_file):
    path, _ = weights_file
    assert resolve_options(arch="MobileNetV2").weights == "imagenet"  # the default: pre-trained
    assert resolve_options(arch="MobileNetV2", weights=str(path)).weights == str(path)
    assert resolve_options(arch="MobileNetV2", weights="none").weights == "none"
    assert resolve_options(arch="MobileNetV2", modelfile=str(path)).weights == str(path)  # anTraX's way
    assert resolve_options().weights is None  # tagnet: random init
    with pytest.raises(ValueError, match="only for arch MobileNetV2"):
        resolve_options(arch="tagnet", weights=str(path))
    assert build_model("MobileNetV2", 3, 32, weights="none").layers[1].trainable


def test_cli_passes_weights_into_the_train_config(tmp_path, monkeypatch, weights_file):
    from antrax_pipe import cli

    path, _ = weights_file
    seen = {}
    monkeypatch.setattr(cli, "_run_snakemake", lambda workdir, config, rows, targets, args: seen.update(config) or 0)
    (tmp_path / "cd" / "examples").mkdir(parents=True)
    for w, want in ((str(path), str(path.absolute())), ("imagenet", "imagenet"), ("none", "none")):
        assert cli.main(["train", str(tmp_path / "cd"), "--arch", "MobileNetV2", "--weights", w]) == 0
        assert seen["train"]["weights"] == want and seen["train"]["arch"] == "MobileNetV2"


def _tiny_classdir(root: Path) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    for label, colour in (("AA", (0, 0, 255)), ("BB", (255, 0, 0))):
        d = root / "examples" / label
        d.mkdir(parents=True)
        for t in range(4):
            for f in range(6):
                img = np.full((32, 32, 3), 255, np.uint8)
                img[8:24, 8:24] = np.clip(np.array(colour) + rng.normal(0, 20, (16, 16, 3)), 0, 255)
                name = f"exp.trj_id{t}_ti1_{100 * t + 1}_tf1_{100 * t + 6}.{100 * t + f + 1}.png"
                cv2.imwrite(str(d / name), img)
    return root


@pytest.mark.slow
def test_training_from_a_weights_file_keeps_the_frozen_base(tmp_path, weights_file):
    from antrax_pipe.classifier import load_classifier
    from antrax_pipe.training import train_classifier

    path, want = weights_file
    cd = _tiny_classdir(tmp_path / "cd")
    card = train_classifier(cd, scratch=True, arch="MobileNetV2", weights=str(path), epochs=1, target_size=32,
                            val_fraction=0.25, threads=2, progress=lambda s: None)
    assert card.training["weights"] == str(path) and card.arch == "MobileNetV2"
    model, _ = load_classifier(cd / "classifier.h5", compile=False)
    got = _base_of(model).get_weights()
    assert all(np.allclose(g, w) for g, w in zip(got, want))  # frozen: training changed only the head
