"""Classifier validation stage (antrax_pipe.evaluate): split reconstruction + Keras prediction with a tiny
fixed-weight model whose outputs are known in closed form."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from antrax_pipe.aggregation import AggregationParams
from antrax_pipe.model import ClassifierCard, LabelSet
from antrax_pipe.aggregation import tracklet_decision
from antrax_pipe.coverage import validation_curve, validation_operating_point
from antrax_pipe.evaluate import validate_classifier
from antrax_pipe.io.heldout import STATUS_NO_SPLIT, STATUS_OK, read_validation, write_validation

LABELS = LabelSet({"ant_labels": ("A", "B"), "noant_labels": ("NoAnt",), "other_labels": ("Multi", "Unknown")})
CLASSES = ["A", "B", "Multi", "NoAnt", "Unknown"]
T = 8
COLORS = {"A": (255, 0, 0), "B": (0, 255, 0), "NoAnt": (0, 0, 255)}


def expected_probs(rgb: np.ndarray) -> np.ndarray:
    """What the fixed-weight model outputs for a solid-colour image: softmax(10·(r, g, 0, b, 0)) with r, g, b in 0–1."""
    r, g, b = np.asarray(rgb, float) / 255
    z = np.array([10 * r, 10 * g, 0.0, 10 * b, 0.0])
    e = np.exp(z - z.max())
    return e / e.sum()


def tiny_model():
    import keras

    inp = keras.Input((T, T, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(len(CLASSES), activation="softmax")
    out = dense(x)
    w = np.zeros((3, len(CLASSES)), np.float32)
    w[0, 0], w[1, 1], w[2, 3] = 10, 10, 10
    dense.set_weights([w, np.zeros(len(CLASSES), np.float32)])
    return keras.Model(inp, out)


def write_examples(classdir: Path) -> dict[str, list[tuple[int, int, int]]]:
    """Per label 4 tracklets × 3 frames of solid colours (a little mixed, so probabilities differ per tracklet)."""
    made = {}
    for li, (label, base) in enumerate(COLORS.items()):
        for k in range(4):
            key = f"expX.trj_id{10 * li + k + 1}_ti1_{10 * k + 1}_tf1_{10 * k + 3}"
            for f in range(3):
                mix = 60 * k + 10 * f  # later tracklets are less pure
                rgb = tuple(min(255, c + (mix if c == 0 else 0)) for c in base)
                img = np.zeros((10, 10, 3), np.uint8)
                img[:] = rgb
                d = classdir / "examples" / label
                d.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d / f"{key}.{100 + f}.png"), img[:, :, ::-1])
                made.setdefault(key + "|" + label, []).append(rgb)
    return made


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    from antrax_pipe.classifier import save_classifier
    from antrax_pipe.io.examples import list_examples
    from antrax_pipe.io.manifest import manifest_hash, manifest_of
    from antrax_pipe.training import grouped_split

    cd = tmp_path_factory.mktemp("clf") / "general"
    made = write_examples(cd)
    examples = list_examples(cd)
    _, va, _ = grouped_split(examples, 0.5, 3)
    val_keys = sorted({examples[i].tracklet_key for i in va})
    card = ClassifierCard(classes=CLASSES, target_size=T,
                          training={"recipe": "default", "seed": 3, "val_fraction": 0.5},
                          metrics={"validation": {"val_tracklets": val_keys}},
                          trainset_hash=manifest_hash(manifest_of(examples, cd)))
    path = save_classifier(cd / "classifier.h5", tiny_model(), card)
    return path, made, val_keys


def test_stage_reconstructs_split_and_predicts_known_probabilities(tiny_classifier, tmp_path):
    path, made, val_keys = tiny_classifier
    params = AggregationParams(min_conf=0.9)
    v = validate_classifier(path, LABELS, params, threads=1)
    assert v.status == STATUS_OK and v.meta["warnings"] == []
    assert sorted(v.table.key) == val_keys and len(val_keys) == 6  # 2 of 4 tracklets per label (round(0.5·4))
    assert v.ids == ["A", "B"] and v.meta["seed"] == 3 and v.meta["val_fraction"] == 0.5
    for r in v.table.itertuples():
        rgbs = made[f"{r.key}|{r.true_label}"]
        y = np.array([expected_probs(c) for c in rgbs], np.float32)
        want = tracklet_decision(y, CLASSES, LABELS, params)
        assert r.pred_label == want[0] and r.n_gate == want[2] and r.n_frames == 3
        if not math.isnan(want[1]):
            assert r.gate == pytest.approx(want[1], abs=1e-5)
    lo, hi = v.offsets[:2]
    assert v.probs.shape == (18, len(CLASSES)) and hi - lo == 3
    out = read_validation(write_validation(tmp_path / "v.h5", v))
    assert len(validation_curve(out)) > 10 and validation_operating_point(out).coverage.n == 4  # 4 held-out ID tracklets (A, B)


def test_stage_uses_only_tracklets_held_out_at_training_time(tiny_classifier, tmp_path):
    from antrax_pipe.io.classifier import read_card, write_metadata
    import shutil

    path, _, val_keys = tiny_classifier
    cd = tmp_path / "general"
    shutil.copytree(path.parent, cd)
    card = read_card(cd / "classifier.h5")
    card.metrics = {"validation": {"val_tracklets": val_keys[1:]}}
    write_metadata(cd / "classifier.h5", card)
    v = validate_classifier(cd / "classifier.h5", LABELS, AggregationParams(), threads=1)
    assert sorted(v.table.key) == val_keys[1:]
    assert any("not held out" in w for w in v.meta["warnings"])


@pytest.mark.parametrize("training,source,why", [
    ({"recipe": "antrax", "seed": 0, "val_fraction": 0.0}, "antrax_pipe", "without a validation split"),
    ({}, "antrax", "trained by anTraX"),
])
def test_no_split_is_reported_not_invented(tiny_classifier, tmp_path, training, source, why):
    from antrax_pipe.io.classifier import read_card, write_metadata
    import shutil

    path, _, _ = tiny_classifier
    cd = tmp_path / "c"
    shutil.copytree(path.parent, cd)
    card = read_card(cd / "classifier.h5")
    card.training, card.source = training, source
    write_metadata(cd / "classifier.h5", card)
    v = validate_classifier(cd / "classifier.h5", LABELS, AggregationParams())
    assert v.status == STATUS_NO_SPLIT and why in v.reason and v.table.empty
