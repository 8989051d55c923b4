"""Real TensorFlow training on a small real subset of the shared trainset (T=32), architectures, options, split."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from antrax_pipe.classifier import load_classifier
from antrax_pipe.io.classifier import read_card
from antrax_pipe.model import ClassifierCard
from antrax_pipe.io.examples import Example, list_examples
from antrax_pipe.io.manifest import build_manifest, manifest_hash
from antrax_pipe.model import TrainsetError
from antrax_pipe.model import ClassListChangedError
from antrax_pipe.training import AugOptions, class_weights, grouped_split, parse_aug_options, train_classifier

TARBALL = Path("/work/shared/data/antrax-demo-trainset.tar.gz")
EXP = "15_10_08_15_47_56_colony_tracking_t12"
LABELS = ["BB", "GG", "OO", "PP"]  # four clearly different tag colours; 4–6 tracklets each in EXP


def extract_subset(dest: Path, labels: list[str], per_tracklet: int, exp: str = EXP) -> Path:
    """Copy real examples of the shared trainset into ``dest/examples/<label>/``: all tracklets of experiment
    ``exp``, ``per_tracklet`` evenly spaced frames each (one pass over the tarball)."""
    if not TARBALL.is_file():
        pytest.skip(f"{TARBALL} not available")
    found: dict[tuple[str, str], list[tuple[str, bytes]]] = defaultdict(list)
    with tarfile.open(TARBALL, "r:gz") as tar:
        for m in tar:
            parts = m.name.split("/")
            if len(parts) == 3 and parts[1] in labels and parts[2].startswith(exp + "."):
                found[(parts[1], ".".join(parts[2].split(".")[:2]))].append((parts[2], tar.extractfile(m).read()))
    for (label, _), files in sorted(found.items()):
        (dest / "examples" / label).mkdir(parents=True, exist_ok=True)
        files.sort()
        for name, data in files[:: max(1, len(files) // per_tracklet)][:per_tracklet]:
            (dest / "examples" / label / name).write_bytes(data)
    return dest


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> Path:
    return extract_subset(tmp_path_factory.mktemp("data") / "pristine", LABELS, per_tracklet=24)


@pytest.fixture(scope="module")
def trained(subset, tmp_path_factory) -> tuple[Path, ClassifierCard, list[str]]:
    """One real training run shared by several tests (≈15 s on 2 busy cores)."""
    cd = tmp_path_factory.mktemp("trained") / "classdir"
    shutil.copytree(subset, cd)
    lines: list[str] = []
    card = train_classifier(
        cd, scratch=True, epochs=10, patience=10, target_size=32, val_fraction=0.3, seed=0, progress=lines.append,
        threads=2, frames_per_tracklet=24, calibrate="gates",  # the option (default: none); tested here
    )
    return cd, card, lines


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------------- learning


def test_learns_on_held_out_tracklets(trained):
    cd, card, lines = trained
    val = card.metrics["validation"]
    # 4 classes: chance is 0.25. Held-out tracklets were never seen in training.
    assert val["image_accuracy"] >= 0.5, val
    assert val["tracklet_accuracy"] >= 0.5, val
    assert val["split"] == "tracklet" and val["n_tracklets"] >= 4
    cm = np.array(val["confusion_images"])
    assert cm.shape == (4, 4) and cm.sum() == val["n_images"]
    assert np.array(val["confusion_tracklets"]).sum() == val["n_tracklets"]
    # held-out tracklets are disjoint from the training tracklets
    exs = list_examples(cd)
    val_keys = set(val["val_tracklets"])
    assert val_keys and {e.tracklet_key for e in exs} - val_keys
    assert card.training["n_val_images"] == sum(e.tracklet_key in val_keys for e in exs)
    # history + progress lines, one per epoch
    assert len(card.history) == 10 == card.training["epochs_run"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(card.history[0])
    assert sum(line.startswith("epoch ") for line in lines) == 10
    assert any("validation (held-out tracklets)" in line for line in lines)
    # the card on disk is the returned card; trainset hash = manifest hash of the examples
    assert read_card(cd / "classifier.h5") == card
    assert card.trainset_hash == manifest_hash(build_manifest(cd))
    assert card.classes == LABELS and card.target_size == 32 and card.preprocessing["target_size"] == 32
    assert card.training["normalization"] == "in_model"
    assert card.training["class_weights"]["BB"] > 0
    # default recipe: tagnet, tracklet-balanced epochs, cosine rate; the gate calibration asked for is in the card
    tr = card.training
    assert card.arch == "tagnet" and tr["frames_per_tracklet"] == 24 and tr["lr_schedule"] == "cosine"
    assert tr["aug_options"]["channel_gain_range"] == 0.1 and tr["aug_options"]["saturation_range"] == 0.3
    cal = card.metrics["calibration"]
    assert cal["method"] == "gates" and cal["temperature"] == pytest.approx(tr["temperature"], rel=1e-4)
    assert cal["penalty"] == 1.5
    assert sum(cal["after"][k] for k in ("right", "wrong", "none")) + cal["after"]["non_id"] == val["n_tracklets"]


def test_incremental_continues_with_optimizer_state(trained, tmp_path):
    cd = _copy(trained[0], tmp_path / "cd")
    model0, card0 = load_classifier(cd / "classifier.h5")
    it0 = int(model0.optimizer.iterations.numpy())
    assert it0 > 0
    card = train_classifier(cd, epochs=1, seed=1, arch="wide", progress=lambda s: None)
    assert card.training["incremental"] is True and card.arch == "tagnet"  # arch of the stored model wins
    assert len(card.training["previous_runs"]) == 1
    assert card.training["previous_runs"][0]["trainset_hash"] == card0.trainset_hash
    model1, _ = load_classifier(cd / "classifier.h5")
    # default recipe: an epoch draws 8 frames of every training tracklet
    n_trk = len({k for k in card.metrics["validation"]["val_tracklets"]})
    n_train_trk = len({e.tracklet_key for e in list_examples(cd)}) - n_trk
    steps = int(np.ceil(n_train_trk * 8 / 32))
    assert card.training["steps_per_epoch"] == steps
    assert int(model1.optimizer.iterations.numpy()) == it0 + steps
    # the cosine schedule restarts from the previous run's peak rate (not from where its last cosine ended)
    assert card0.history[-1]["learning_rate"] < 5e-4
    assert card.history[0]["learning_rate"] == pytest.approx(1e-3, rel=1e-3)
    # the previous run's temperature is undone before training on; this run asks for no calibration
    assert card.training["temperature"] == 1.0 and "calibration" not in card.metrics
    # the validation split is the same tracklets as before (seeded by tracklet key, not by run)
    assert card.metrics["validation"]["val_tracklets"] != []


def test_class_list_change_needs_scratch(trained, subset, tmp_path):
    cd = _copy(trained[0], tmp_path / "cd")
    before = (cd / "classifier.h5").read_bytes()
    new = cd / "examples" / "NoAnt"
    new.mkdir()
    for p in sorted((subset / "examples" / "BB").iterdir())[:3]:
        shutil.copy(p, new / p.name.replace(EXP, "other"))
    with pytest.raises(ClassListChangedError, match=r"new: NoAnt.*scratch"):
        train_classifier(cd, epochs=1)
    assert (cd / "classifier.h5").read_bytes() == before
    card = train_classifier(cd, scratch=True, epochs=1, target_size=32, val_fraction=0, progress=lambda s: None)
    assert card.classes == ["BB", "GG", "NoAnt", "OO", "PP"] and card.training["incremental"] is False
    assert "validation" not in card.metrics and card.training["monitor"] == "loss"


def test_antrax_recipe(subset, tmp_path):
    cd = _copy(subset, tmp_path / "cd")
    card = train_classifier(cd, recipe="antrax", epochs=1, steps_per_epoch=4, target_size=32, name="ax",
                            progress=lambda s: None)
    assert (cd / "ax.h5").is_file()
    assert card.training["recipe"] == "antrax" and card.training["normalization"] == "none"
    assert card.training["steps_per_epoch"] == 4 and card.unknown_weight == 20
    assert "validation" not in card.metrics
    model, _ = load_classifier(cd / "ax.h5")
    from antrax_pipe.nets import has_normalization

    assert not has_normalization(model)
    assert int(model.optimizer.iterations.numpy()) == 4


def test_bad_trainsets(tmp_path, subset):
    (tmp_path / "empty" / "examples").mkdir(parents=True)
    with pytest.raises(TrainsetError, match="at least 2 labels.*no images at all"):
        train_classifier(tmp_path / "empty")
    one = tmp_path / "one"
    shutil.copytree(subset / "examples" / "BB", one / "examples" / "BB")
    with pytest.raises(TrainsetError, match=r"at least 2 labels, found 1 \(BB\)"):
        train_classifier(one)
    with pytest.raises(TrainsetError, match="neither a classifier directory"):
        train_classifier(tmp_path / "missing")
    cd = _copy(subset, tmp_path / "cd")
    bad = cd / "examples" / "GG" / f"{EXP}.trj_id9_ti1_1_tf1_9.1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(TrainsetError, match=r"trj_id9_ti1_1_tf1_9\.1\.png: cannot be read"):
        train_classifier(cd, scratch=True, epochs=1, target_size=32, progress=lambda s: None)
    assert not (cd / "classifier.h5").exists()
    with pytest.raises(ValueError, match="unknown training recipe"):
        train_classifier(cd, recipe="fast")


# ---------------------------------------------------------------------------------------------------- options


def test_aug_options_parse_and_validate():
    a = AugOptions.parse("width_shift_range=4, zoom_range=0.2,rotation_range=30,horizontal_flip=true")
    assert a.width_shift_range == 4 and a.zoom_range == 0.2 and a.rotation_range == 30 and a.horizontal_flip is True
    assert a.shear_range == 5 and a.vertical_flip is True  # anTraX defaults for the rest
    assert AugOptions.parse({"brightness_range": [0.8, 1.2]}).brightness_range == (0.8, 1.2)
    assert AugOptions.parse("brightness_range=0.7:1.3").brightness_range == (0.7, 1.3)
    assert AugOptions.parse(None) == AugOptions()
    assert AugOptions.parse("none").rotation_range == 0
    # the CLI form: a plain JSON-safe dict (for the Snakemake config) that parses back to the same options
    d = parse_aug_options("zoom_range=0.2,brightness_range=0.8:1.2")
    assert json.loads(json.dumps(d)) == d
    assert AugOptions.parse(d) == AugOptions(zoom_range=0.2, brightness_range=(0.8, 1.2))
    with pytest.raises(ValueError, match=r"unknown aug option\(s\): rotation, zoom.*valid options: width_shift_range"):
        AugOptions.parse("rotation=10,zoom=0.1")
    with pytest.raises(ValueError, match="zoom_range=1.5: must be < 1"):
        AugOptions.parse({"zoom_range": 1.5})
    with pytest.raises(ValueError, match="rotation_range='ten'"):
        AugOptions.parse("rotation_range=ten")
    with pytest.raises(ValueError, match="must be a finite number"):
        AugOptions.parse({"shear_range": -1})
    with pytest.raises(ValueError, match="not key=value"):
        AugOptions.parse("zoom_range")
    with pytest.raises(ValueError, match="not a boolean"):
        AugOptions.parse("vertical_flip=maybe")
    assert AugOptions.parse("channel_gain_range=0.1,contrast_range=0.2").channel_gain_range == 0.1
    # the default recipe adds its own options (gain, saturation) under the user's; a CLI dict keeps only given keys
    from antrax_pipe.training.options import _recipe_aug

    assert parse_aug_options("rotation_range=30") == {"rotation_range": 30.0}
    r = _recipe_aug(parse_aug_options("rotation_range=30,saturation_range=0"), is_antrax=False)
    assert r.rotation_range == 30 and r.saturation_range == 0 and r.channel_gain_range == 0.1
    assert _recipe_aug(None, is_antrax=True) == AugOptions()
    assert _recipe_aug("none", is_antrax=False) == AugOptions.none()
    with pytest.raises(ValueError, match="channel_gain_range=1.5: must be in"):
        AugOptions.parse({"channel_gain_range": 1.5})


def test_augmenter_keeps_shape_range_and_background():
    from antrax_pipe.training.augment import _make_augmenter

    x = np.full((8, 32, 32, 3), 255, np.float32)
    x[:, 10:22, 13:19] = 40.0
    out = np.asarray(_make_augmenter(AugOptions(), 32, False, 255.0, seed=0)(x))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, x)  # it did something
    assert (out[:, 0, 0] > 200).all()  # corners stay (near) white: fill = background, not reflection
    same = np.asarray(_make_augmenter(AugOptions.none(), 32, False, 255.0, seed=0)(x))
    np.testing.assert_array_equal(same, x)


def test_class_weights_balanced_unknown_multi():
    classes = ["BB", "GG", "Unknown", "multi", "MultiAnt"]
    y = np.array([0] * 10 + [1] * 30 + [2] * 20 + [3] * 20 + [4] * 20)
    w = class_weights(y, classes, unknown_weight=20, multi_weight=0.1)
    assert w[0] == pytest.approx(100 / (5 * 10)) and w[1] == pytest.approx(100 / (5 * 30))
    assert w[2] == pytest.approx(20 * 100 / (5 * 20))
    assert w[3] == pytest.approx(0.1 * 100 / (5 * 20)) == w[4]  # lowercase 'multi' down-weighted too
    assert class_weights(y, classes, 1, 1, balanced=False) == {i: 1.0 for i in range(5)}


def _ex(label: str, key: str, i: int = 0) -> Example:
    return Example(Path(f"/x/{label}/{key}.{i}.png"), label, key)


def test_grouped_split_by_tracklet():
    exs = [_ex(lab, f"e.t{lab}{k}", i) for lab in "ABC" for k in range(10) for i in range(k + 1)]
    exs += [_ex("D", "e.only", i) for i in range(5)]  # a label with a single tracklet: all training
    exs += [_ex("A", "e.shared", 0), _ex("B", "e.shared", 1)]  # one tracklet key under two labels
    tr, va, warn = grouped_split(exs, 0.3, seed=0)
    tr_keys, va_keys = {exs[i].tracklet_key for i in tr}, {exs[i].tracklet_key for i in va}
    assert not tr_keys & va_keys and len(tr) + len(va) == len(exs)
    for lab in "ABC":
        assert 2 <= len({exs[i].tracklet_key for i in va if exs[i].label == lab}) <= 4
    assert "e.only" in tr_keys and any("'D' has only 1 tracklet" in w for w in warn)
    # deterministic, seed-dependent, and stable when a tracklet is added
    assert np.array_equal(grouped_split(exs, 0.3, seed=0)[1], va)
    assert not np.array_equal(grouped_split(exs, 0.3, seed=1)[1], va)
    more = exs + [_ex("C", "e.new", 0)]
    va2 = {more[i].tracklet_key for i in grouped_split(more, 0.3, seed=0)[1]}
    assert len(va_keys ^ va2) <= 2
    assert len(grouped_split(exs, 0.0)[1]) == 0
    with pytest.raises(ValueError):
        grouped_split(exs, 1.0)


# ---------------------------------------------------------------------------------------------------- models


def test_temperature_fit_fold_and_gates():
    import keras

    from antrax_pipe.nets import build_model
    from antrax_pipe.training import fit_gate_temperature, fit_temperature, gate_outcomes, temper_probs
    from antrax_pipe.training.calibration import _fold_temperature

    rng = np.random.default_rng(0)
    # over-confident predictions (right 70 % of the time, always p≈0.999) → NLL temperature > 1
    y = rng.integers(0, 4, 400)
    pred = np.where(rng.random(400) < 0.7, y, (y + 1) % 4)
    p = np.full((400, 4), 0.001 / 3)
    p[np.arange(400), pred] = 0.999
    t = fit_temperature(p, y)
    assert t > 2 and temper_probs(p, t).argmax(1).tolist() == pred.tolist()
    # folding into the output Dense gives exactly the tempered softmax
    m = build_model("tagnet", 3, 16)
    x = rng.uniform(0, 255, (5, 16, 16, 3)).astype(np.float32)
    before = np.asarray(m.predict_on_batch(x))
    assert _fold_temperature(m, 2.5)
    np.testing.assert_allclose(np.asarray(m.predict_on_batch(x)), temper_probs(before, 2.5), atol=1e-5)
    assert not _fold_temperature(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), 2.0)
    # gates: two ID tracklets at 0.8 confidence are not assigned at t=1 but are once sharpened; a NoAnt tracklet
    # whose frames lean to an ID is never given one because the penalty outweighs it
    classes = ["AA", "BB", "NoAnt", "Unknown"]
    probs = np.array([[0.8, 0.1, 0.05, 0.05]] * 6 + [[0.1, 0.8, 0.05, 0.05]] * 6 + [[0.45, 0.1, 0.4, 0.05]] * 6)
    yy = np.array([0] * 6 + [1] * 6 + [2] * 6)
    keys = ["a"] * 6 + ["b"] * 6 + ["c"] * 6
    o = gate_outcomes(probs.astype(np.float32), yy, keys, classes)
    assert o == {"right": 0, "wrong": 0, "none": 2, "non_id": 1, "non_id_given": 0}
    t, o = fit_gate_temperature(probs, yy, keys, classes, penalty=10)
    assert t < 1 and o["right"] == 2 and o["non_id_given"] == 0


def test_tracklet_draws_balance_tracklets():
    from antrax_pipe.training.data import _tracklet_draws

    keys = ["long"] * 100 + ["short"] * 3
    y = np.zeros(103, int)
    order = _tracklet_draws(np.arange(103), keys, y, k=8, epochs=3, epoch_len=16, seed=0)
    assert len(order) == 48
    for e in range(3):
        ep = order[e * 16:(e + 1) * 16]
        assert (ep >= 100).sum() == 8 and len(set(ep[ep < 100].tolist())) == 8  # 8 distinct frames of the long one
    assert len({tuple(order[:16]), tuple(order[16:32])}) == 2  # a fresh draw every epoch


def test_build_model_architectures(tmp_path):
    import keras

    from antrax_pipe.model import ModelBuildError
    from antrax_pipe.nets import build_model, custom_model_input_size, has_normalization

    m = build_model("small", 5, 38)
    assert m.input_shape == (None, 38, 38, 3) and m.output_shape == (None, 5)
    assert has_normalization(m) and not has_normalization(build_model("small", 5, 38, normalize=False))
    assert [layer.filters for layer in m.layers if isinstance(layer, keras.layers.Conv2D)] == [64, 128, 256]
    assert m.get_layer("flatten").output.shape[-1] == 3 * 3 * 256  # anTraX's 'small' net: T=38 → 3·3·256
    wide = build_model("wide", 3, 22)
    assert [layer.filters for layer in wide.layers if isinstance(layer, keras.layers.Conv2D)] == [128, 256, 512]
    assert build_model("large", 3, 46).get_layer("flatten").output.shape[-1] == 256
    tag = build_model("tagnet", 18, 48)
    assert tag.output_shape == (None, 18) and tag.get_layer("flatten").output.shape[-1] == 3 * 3 * 128
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in tag.layers[:-3])  # no dropout→BN shift
    with pytest.raises(ModelBuildError, match="'tagnet' needs a target size of at least 16 px"):
        build_model("tagnet", 3, 15)
    with pytest.raises(ModelBuildError, match="'large' needs a target size of at least 46 px, got 45"):
        build_model("large", 3, 45)
    with pytest.raises(ModelBuildError, match="'small' needs a target size of at least 22 px, got 21"):
        build_model("small", 3, 21)
    with pytest.raises(ModelBuildError, match="unknown architecture 'huge'"):
        build_model("huge", 3, 64)
    with pytest.raises(ModelBuildError, match="at least 2 classes"):
        build_model("small", 1, 64)
    mob = build_model("MobileNetV2", 4, 32)  # random init: no download possible here
    assert mob.output_shape == (None, 4) and mob.layers[1].trainable
    with pytest.raises(ModelBuildError, match="weights file not found"):
        build_model("MobileNetV2", 4, 32, modelfile=tmp_path / "none.h5")
    # custom: a Keras JSON (also given anTraX-style as the arch itself)
    js = tmp_path / "net.json"
    js.write_text(build_model("small", 4, 24).to_json())
    assert build_model("custom", 4, 24, modelfile=js).output_shape == (None, 4)
    assert build_model(str(js), 4, 24).output_shape == (None, 4)
    assert custom_model_input_size(js) == 24  # what --arch custom uses when no --target-size is given
    (tmp_path / "broken.json").write_text("{not json")
    assert custom_model_input_size(tmp_path / "broken.json") is None
    with pytest.raises(ModelBuildError, match="outputs .*4,.* but the trainset has 3 classes"):
        build_model("custom", 3, 24, modelfile=js)
    with pytest.raises(ModelBuildError, match="needs a model file"):
        build_model("custom", 3, 24)
    with pytest.raises(ModelBuildError, match="YAML"):
        build_model("custom", 3, 24, modelfile=tmp_path / "net.yaml")
