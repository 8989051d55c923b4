"""The classifier file: save/load round trip, metadata readable without TensorFlow, anTraX-written files, bad files."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from antrax_pipe.classifier import load_classifier, save_classifier
from antrax_pipe.io.classifier import CARD_KEY, antrax_prmtrs, read_card
from antrax_pipe.model import ClassifierFileError
from antrax_pipe.model import ClassifierCard

LONG_CLASSES = ["BB", "GG", "MultiAnt_long_name", "NoAnt", "Unknown", "Ünknown_Ämeise_名前"]  # >10 bytes, UTF-8
T = 24


def _card(classes=LONG_CLASSES, **kw) -> ClassifierCard:
    return ClassifierCard(
        classes=list(classes),
        target_size=T,
        arch="small",
        preprocessing={"target_size": T, "crop_size": None, "background": "white"},
        training={"recipe": "default", "epochs": 3},
        trainset_hash="ab" * 32,
        metrics={"validation": {"tracklet_accuracy": 0.75, "confusion_tracklets": [[1, 0], [0, 1]]}},
        history=[{"epoch": 1, "loss": 1.5, "val_loss": 1.7}],
        **kw,
    )


@pytest.fixture(scope="module")
def small_model():
    from antrax_pipe.nets import build_model

    return build_model("small", len(LONG_CLASSES), T)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, small_model) -> Path:
    small_model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path_factory.mktemp("clf") / "classifier.h5"
    save_classifier(path, small_model, _card())
    return path


def _images(n=5, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, T, T, 3)).astype(np.float32)


def test_round_trip_with_long_utf8_classes(saved, small_model):
    card = read_card(saved)
    assert card == _card()
    model, card2 = load_classifier(saved)
    assert card2 == card
    x = _images()
    np.testing.assert_allclose(model.predict_on_batch(x), small_model.predict_on_batch(x), atol=1e-5)
    assert card.preprocess_spec().target_size == T


def test_file_layout_is_antrax_compatible(saved):
    with h5py.File(saved, "r") as f:
        assert {"model_weights", "prmtrs", "classes", CARD_KEY} <= set(f.keys())
        cls = f["classes"]
        assert cls.shape == (len(LONG_CLASSES), 1)
        assert h5py.check_string_dtype(cls.dtype).encoding == "utf-8"  # vlen, not S10
        # anTraX's own reader expression still works and does not truncate
        assert [x[0].decode() for x in f["classes"][()]] == LONG_CLASSES
        prm = json.loads(f["prmtrs"][()])
    for key in ("name", "nclasses", "modeltype", "use_min_conf", "consv_factor", "min_conf", "min_conf_short",
                "background", "target_size", "crop_size", "unknown_weight", "multi_weight", "scale", "hsymmetry"):
        assert key in prm, key
    assert prm["nclasses"] == len(LONG_CLASSES) and prm["target_size"] == T and prm["min_conf"] == 0.9


def test_read_card_does_not_import_tensorflow(saved):
    code = (
        "import sys; from antrax_pipe.classifier import read_card; "
        f"c = read_card({str(saved)!r}); assert c.classes[-1] == 'Ünknown_Ämeise_名前', c.classes; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resave_keeps_metadata_and_is_atomic(saved, small_model, tmp_path):
    path = tmp_path / "c.h5"
    save_classifier(path, small_model, _card())
    before = path.read_bytes()
    # a mismatching card is refused before anything is written: the old file stays, no temp file is left
    with pytest.raises(ClassifierFileError, match="outputs but the card lists"):
        save_classifier(path, small_model, _card(classes=["a", "b"]))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]
    # saving again (Keras rewrites the file) still ends with all metadata
    card = _card(name="second")
    save_classifier(path, small_model, card)
    assert read_card(path).name == "second"
    with pytest.raises(ClassifierFileError, match=r"must end in \.h5"):
        save_classifier(tmp_path / "c.keras", small_model, card)


def _antrax_file(path: Path, model, classes, prmtrs: dict | None, classes_s10=True) -> Path:
    """A classifier file as anTraX writes it: Keras HDF5 + prmtrs JSON + classes S10 (n,1)."""
    model.save(path)
    with h5py.File(path, "a") as f:
        if prmtrs is not None:
            f.create_dataset("prmtrs", data=json.dumps(prmtrs))
        if classes is not None and classes_s10:
            f.create_dataset("classes", (len(classes), 1), "S10", [np.bytes_(x) for x in classes])
    return path


ANTRAX_PRMTRS = {
    "name": "classifier", "nclasses": 3, "modeltype": "small", "json": None, "use_min_conf": True,
    "consv_factor": 0.5, "min_conf": 0.9, "min_conf_short": 0.99, "background": "white", "target_size": T,
    "crop_size": None, "unknown_weight": 20, "multi_weight": 0.1, "scale": 1, "loss": "categorical_crossentropy",
    "optimizer": "adam", "metrics": ["accuracy"],
}  # no 'hsymmetry': anTraX's load() back-fills True


@pytest.fixture(scope="module")
def antrax_model():
    from antrax_pipe.nets import build_model

    return build_model("small", 3, T, normalize=False)  # anTraX: no input rescaling


def test_reads_antrax_written_file(tmp_path, antrax_model):
    path = _antrax_file(tmp_path / "classifier.h5", antrax_model, ["BB", "NoAnt", "Unknown"], ANTRAX_PRMTRS)
    card = read_card(path)
    assert card.classes == ["BB", "NoAnt", "Unknown"]
    assert card.source == "antrax" and card.arch == "small" and card.target_size == T
    assert card.hsymmetry is True and card.min_conf == 0.9 and card.unknown_weight == 20
    assert card.preprocess_spec().background == "white"
    model, card2 = load_classifier(path)
    x = _images()
    np.testing.assert_allclose(model.predict_on_batch(x), antrax_model.predict_on_batch(x), atol=1e-5)


def test_antrax_file_whose_model_config_keras3_rejects_is_rebuilt(tmp_path, antrax_model, caplog):
    path = _antrax_file(tmp_path / "classifier.h5", antrax_model, ["BB", "NoAnt", "Unknown"], ANTRAX_PRMTRS)
    with h5py.File(path, "a") as f:  # stand-in for a TF 1.15 model config that Keras 3 cannot deserialise
        f.attrs["model_config"] = json.dumps({"class_name": "NoSuchTF1Model", "config": {}})
    model, card = load_classifier(path, compile=False)
    assert "rebuilding 'small'" in caplog.text
    x = _images(seed=3)
    np.testing.assert_allclose(model.predict_on_batch(x), antrax_model.predict_on_batch(x), atol=1e-5)


def test_untrained_antrax_file(tmp_path, antrax_model):
    path = _antrax_file(tmp_path / "classifier.h5", antrax_model, None, ANTRAX_PRMTRS)
    with pytest.raises(ClassifierFileError, match=r"classifier\.h5: untrained classifier"):
        read_card(path)
    with pytest.raises(ClassifierFileError, match="untrained"):
        load_classifier(path)


def test_inconsistent_antrax_metadata(tmp_path, antrax_model):
    path = _antrax_file(tmp_path / "c.h5", antrax_model, ["BB", "NoAnt"], ANTRAX_PRMTRS)
    with pytest.raises(ClassifierFileError, match="nclasses=3 but the file lists 2"):
        read_card(path)


def test_missing_corrupt_and_foreign_files(tmp_path, small_model):
    with pytest.raises(ClassifierFileError, match=r"nope\.h5: classifier file not found"):
        read_card(tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ClassifierFileError, match=r"bad\.h5: cannot be opened as an HDF5"):
        read_card(bad)
    z = tmp_path / "model.keras"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(ClassifierFileError, match="Keras .keras zip"):
        read_card(z)
    plain = tmp_path / "plain.h5"
    small_model.save(plain)
    with pytest.raises(ClassifierFileError, match="Keras model without classifier metadata"):
        read_card(plain)


def test_card_and_classes_must_agree(saved, tmp_path):
    import shutil

    path = tmp_path / "edited.h5"
    shutil.copy(saved, path)
    with h5py.File(path, "a") as f:
        del f["classes"]
        f.create_dataset("classes", data=np.array([[b"x"]] * len(LONG_CLASSES)), dtype=h5py.string_dtype())
    with pytest.raises(ClassifierFileError, match=r"edited\.h5: the 'classes' dataset .* disagrees with the card"):
        read_card(path)


def test_antrax_prmtrs_from_card():
    p = antrax_prmtrs(_card(hsymmetry=True))
    assert p["nclasses"] == len(LONG_CLASSES) and p["hsymmetry"] is True and p["modeltype"] == "small"
    json.dumps(p)
