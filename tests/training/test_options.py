"""The recipe resolver: what each recipe decides, that the user's settings win, and the checks (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from antrax_pipe.training import AugOptions, TrainOptions, resolve_options, train_classifier
from antrax_pipe.training.options import RECIPE_DEFAULTS, RECIPES, epoch_plan


def test_antrax_recipe_defaults():
    o = resolve_options("antrax")
    assert o.is_antrax and not o.draws_tracklets
    assert (o.epochs, o.arch, o.unknown_weight, o.val_fraction) == (5, "small", 20.0, 0.0)
    assert o.steps_per_epoch == 1000 and o.patience == 10 and o.frames_per_tracklet is None
    assert o.lr_schedule == "plateau" and o.calibrate is False and o.label_smoothing == 0.0
    assert o.aug_options == AugOptions()  # anTraX's ImageDataGenerator settings, nothing added
    assert o.multi_weight == 0.1 and o.gate_penalty == 1.5


def test_default_recipe_defaults():
    o = resolve_options()
    assert o.recipe == "default" and not o.is_antrax and o.draws_tracklets
    assert (o.epochs, o.arch, o.unknown_weight, o.val_fraction) == (30, "tagnet", 1.0, 0.2)
    assert o.steps_per_epoch is None and o.patience == 10 and o.frames_per_tracklet == 8
    assert o.lr_schedule == "cosine" and o.calibrate is False and o.gate_penalty == 1.5
    assert o.aug_options == AugOptions(channel_gain_range=0.1, saturation_range=0.3)
    assert o.bn_momentum is None  # depends on the epoch's length: epoch_plan
    assert TrainOptions().resolved() == o and o.resolved() == o  # resolving twice changes nothing


def test_user_settings_beat_the_recipe():
    o = resolve_options("antrax", epochs=2, arch="tagnet", unknown_weight=1, val_fraction=0.25, steps_per_epoch=7,
                        patience=3, frames_per_tracklet=4, lr_schedule="cosine", aug_options="none")
    assert (o.epochs, o.arch, o.unknown_weight, o.val_fraction, o.steps_per_epoch) == (2, "tagnet", 1.0, 0.25, 7)
    assert (o.patience, o.frames_per_tracklet, o.lr_schedule) == (3, 4, "cosine")
    assert o.aug_options == AugOptions.none() and not o.draws_tracklets  # anTraX draws images, whatever is given
    d = resolve_options(epochs=1, unknown_weight=0, val_fraction=0, calibrate="gates", gate_penalty=4,
                        label_smoothing=0.1, aug_options="rotation_range=30,saturation_range=0")
    assert (d.epochs, d.unknown_weight, d.val_fraction, d.calibrate, d.gate_penalty) == (1, 0.0, 0.0, "gates", 4.0)
    assert d.label_smoothing == 0.1
    # the user's augmentation keys on top of the recipe's
    assert d.aug_options.rotation_range == 30 and d.aug_options.saturation_range == 0
    assert d.aug_options.channel_gain_range == 0.1
    assert resolve_options(arch="").arch == "tagnet"  # empty → the recipe's


@pytest.mark.parametrize(("user", "match"), [
    ({"recipe": "fast"}, "unknown training recipe 'fast'; choose one of default, antrax"),
    ({"class_weighting": "inverse"}, "class_weighting must be"),
    ({"background": "grey"}, "background must be"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
    ({"frames_per_tracklet": 0}, "frames_per_tracklet must be ≥ 1"),
    ({"gate_penalty": 0}, "gate_penalty must be > 0"),
    ({"calibrate": "temperature"}, "calibrate must be"),
    ({"lr_schedule": "step"}, "lr_schedule must be"),
    ({"epochs": 0}, "epochs and batch_size must be ≥ 1"),
    ({"batch_size": 0}, "epochs and batch_size must be ≥ 1"),
    ({"aug_options": "zoom=1"}, r"unknown aug option\(s\): zoom"),
])
def test_bad_settings_are_value_errors(user, match):
    with pytest.raises(ValueError, match=match):
        resolve_options(**user)


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError):
        resolve_options(epoch=3)
    assert set(RECIPE_DEFAULTS) == set(RECIPES)


def test_epoch_plan():
    # tracklet draws: one epoch = every training tracklet × frames_per_tracklet; BN momentum 1 − 4/steps in [0.5, 0.99]
    o, steps = epoch_plan(resolve_options(), n_train_tracklets=10, n_train_images=500)
    assert steps == o.steps_per_epoch == 3 and o.bn_momentum == 0.5  # ceil(10 · 8 / 32)
    o, steps = epoch_plan(resolve_options(), n_train_tracklets=400, n_train_images=5000)
    assert steps == 100 and o.bn_momentum == pytest.approx(0.96)
    o, steps = epoch_plan(resolve_options(steps_per_epoch=5, bn_momentum=0.9), 400, 5000)
    assert steps == o.steps_per_epoch == 5 and o.bn_momentum == 0.9  # the user's settings stay
    # anTraX: 1000 random draws per epoch, Keras' momentum
    o, steps = epoch_plan(resolve_options("antrax"), 400, 5000)
    assert steps == o.steps_per_epoch == 1000 and o.bn_momentum == 0.99
    # images, not draws: one pass over the training images; Keras is told no steps_per_epoch
    o, steps = epoch_plan(resolve_options(frames_per_tracklet=None), 400, 5000)
    assert o.frames_per_tracklet == 8  # None → the recipe's; only 'antrax' draws images
    o, steps = epoch_plan(dataclasses.replace(resolve_options(), frames_per_tracklet=None), 400, 5000)
    assert steps == 157 and o.steps_per_epoch is None


def test_train_classifier_takes_every_option_with_the_same_default():
    params = inspect.signature(train_classifier).parameters
    fields = {f.name: f.default for f in dataclasses.fields(TrainOptions)}
    assert set(params) - set(fields) == {"classdir", "name", "progress", "output", "examples"}
    assert set(fields) <= set(params)
    assert {k: params[k].default for k in fields} == fields
