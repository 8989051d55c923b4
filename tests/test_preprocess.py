"""antrax_pipe.preprocess on its own (the one function training and inference share): area averaging when shrinking,
bilinear when enlarging, centre crop, black background, shape checks, filling a caller's buffer; and the
PreprocessSpec a classifier card carries (dict round trip, card fields vs recorded preprocessing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from antrax_pipe.model import ClassifierCard, PreprocessSpec
from antrax_pipe.preprocess import preprocess, resize_square

# ---------------------------------------------------------------------------------------------- resize


def test_shrinking_averages_areas():
    # 4×4, each 2×2 block holds four different values per channel: area averaging gives each block's exact mean
    block = np.array([[0, 100], [200, 40]], np.uint8)  # mean 85
    img = np.zeros((4, 4, 3), np.uint8)
    for c, off in enumerate((0, 8, 12)):
        img[:, :, c] = np.tile(block + off, (2, 2))
    out = resize_square(img, 2)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert (out == np.array([85, 93, 97], np.uint8)).all()  # not one of the block's pixels, as nearest would give


def test_enlarging_is_bilinear():
    img = np.zeros((2, 2, 3), np.uint8)
    img[:, 1] = 100
    out = resize_square(img, 4)
    # pixel centres of the 4-px row fall at x = -0.25, 0.25, 0.75, 1.25 of the 2-px row (clamped at the edges):
    # bilinear gives 0, 25, 75, 100 (nearest and area give 0, 0, 100, 100; bicubic 0, 23, 77, 111)
    assert out.shape == (4, 4, 3)
    assert (out[:, :, 0] == [0, 25, 75, 100]).all() and (out == out[:, :, :1]).all()


def test_resize_keeps_an_image_of_the_right_size_untouched():
    img = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    assert resize_square(img, 6) is img
    assert resize_square(np.zeros((9, 5, 3), np.uint8), 3).shape == (3, 3, 3)  # non-square in, square out


def test_real_images_halved_are_block_means(real_tracklets):
    imgs = real_tracklets["PB"][0].images  # real 48-px anTraX blob images, white background
    assert imgs.shape[1:] == (48, 48, 3)
    got = preprocess(imgs, PreprocessSpec(target_size=24))
    means = imgs.astype(np.float64).reshape(len(imgs), 24, 2, 24, 2, 3).mean(axis=(2, 4))
    assert got.shape == (len(imgs), 24, 24, 3) and got.dtype == np.float32
    assert np.abs(got - means).max() <= 0.5 + 1e-6  # the mean, rounded to uint8
    same = preprocess(imgs, PreprocessSpec(target_size=48))
    np.testing.assert_array_equal(same, imgs.astype(np.float32))  # float32 in 0–255, no scaling here


# ---------------------------------------------------------------------------------------------- crop, background


def test_centre_crop_then_resize():
    img = np.zeros((1, 8, 8, 3), np.uint8)
    img[0, 2:6, 2:6] = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) + 10  # distinct centre, frame of zeros
    got = preprocess(img, PreprocessSpec(target_size=4, crop_size=4))
    np.testing.assert_array_equal(got[0], img[0, 2:6, 2:6].astype(np.float32))
    # an image no larger than the crop is not cropped, only resized
    small = preprocess(img[:, 2:6, 2:6], PreprocessSpec(target_size=4, crop_size=6))
    np.testing.assert_array_equal(small, got)
    assert preprocess(img, PreprocessSpec(target_size=8, crop_size=8)).shape == (1, 8, 8, 3)


def test_black_background_turns_only_pure_white_black():
    img = np.full((1, 3, 3, 3), 255, np.uint8)
    img[0, 0, 0] = (255, 255, 254)  # near-white stays
    img[0, 1, 1] = (10, 20, 30)
    img[0, 2, 2] = (255, 0, 255)
    black = preprocess(img, PreprocessSpec(target_size=3, background="black"))
    white = preprocess(img, PreprocessSpec(target_size=3))
    np.testing.assert_array_equal(white[0], img[0].astype(np.float32))
    pure = (img[0] == 255).all(axis=-1)
    assert pure.sum() == 6
    assert (black[0][pure] == 0).all()
    np.testing.assert_array_equal(black[0][~pure], img[0][~pure].astype(np.float32))


def test_black_background_is_applied_after_resizing():
    img = np.full((1, 4, 4, 3), 255, np.uint8)
    img[0, :2, :2] = (0, 100, 200)  # one coloured 2×2 block, the rest white
    got = preprocess(img, PreprocessSpec(target_size=2, background="black"))[0]
    assert got[0, 0].tolist() == [0, 100, 200]
    assert (got[0, 1] == 0).all() and (got[1] == 0).all()  # the three white blocks averaged to white, then black


def test_black_background_on_real_images_changes_exactly_the_white_pixels(real_tracklets):
    imgs = real_tracklets["NoAnt"][0].images
    got = preprocess(imgs, PreprocessSpec(target_size=imgs.shape[1], background="black"))
    white = (imgs == 255).all(axis=-1)
    assert white.any() and not white.all()  # real blobs on anTraX's white background
    assert (got[white] == 0).all()
    np.testing.assert_array_equal(got[~white], imgs[~white].astype(np.float32))


# ---------------------------------------------------------------------------------------------- shapes, out=


def test_single_image_becomes_a_batch_of_one():
    got = preprocess(np.full((5, 7, 3), 9, np.uint8), PreprocessSpec(target_size=4))
    assert got.shape == (1, 4, 4, 3) and (got == 9).all()


@pytest.mark.parametrize("shape", [(2, 8, 8), (2, 8, 8, 1), (2, 8, 8, 4), (8, 8), (1, 2, 8, 8, 3), (8,)])
def test_non_rgb_shapes_are_refused(shape):
    with pytest.raises(ValueError, match=r"expected \(N,H,W,3\) RGB images"):
        preprocess(np.zeros(shape, np.uint8), PreprocessSpec(target_size=4))


def test_out_buffer_is_filled_in_place():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (3, 10, 10, 3), dtype=np.uint8)
    spec = PreprocessSpec(target_size=5, background="black")
    want = preprocess(imgs, spec)
    buf = np.full((3, 5, 5, 3), -1.0, np.float32)
    got = preprocess(imgs, spec, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf, want)
    big = np.full((4, 5, 5, 3), -1.0, np.float32)  # a larger batch buffer: a view of its first rows is filled
    preprocess(imgs, spec, out=big[:3])
    np.testing.assert_array_equal(big[:3], want)
    assert (big[3] == -1).all()


# ---------------------------------------------------------------------------------------------- PreprocessSpec


def test_spec_dict_round_trip():
    spec = PreprocessSpec(target_size=64, crop_size=48, background="black")
    d = spec.to_dict()
    assert d == {"target_size": 64, "crop_size": 48, "background": "black"}
    assert PreprocessSpec.from_dict(d) == spec
    assert PreprocessSpec.from_dict(json.loads(json.dumps(d))) == spec  # as stored in the card's JSON
    assert PreprocessSpec.from_dict({"target_size": 32}) == PreprocessSpec(32, None, "white")
    assert PreprocessSpec.from_dict({"target_size": 32, "scale": 2.0, "note": "x"}) == PreprocessSpec(32)


def test_card_preprocess_spec_from_card_fields_and_recorded_preprocessing():
    card = ClassifierCard(classes=["A", "B"], target_size=64)
    assert card.preprocess_spec() == PreprocessSpec(64, None, "white")
    card = ClassifierCard(classes=["A"], target_size=64, crop_size=60, background="black")
    assert card.preprocess_spec() == PreprocessSpec(64, 60, "black")
    # what training recorded wins over the card's fields; gaps are filled from the fields
    card = ClassifierCard(classes=["A"], target_size=64, background="white",
                          preprocessing={"target_size": 64, "background": "black"})
    assert card.preprocess_spec() == PreprocessSpec(64, None, "black")
    card = ClassifierCard(classes=["A"], target_size=64, crop_size=50, preprocessing={"crop_size": None})
    assert card.preprocess_spec().crop_size is None


def test_card_whose_target_sizes_disagree_is_refused():
    card = ClassifierCard(classes=["A"], target_size=64, preprocessing={"target_size": 48})
    with pytest.raises(ValueError, match="preprocessing target_size 48 != card target_size 64"):
        card.preprocess_spec()
