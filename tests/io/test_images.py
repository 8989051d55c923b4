"""Blob-image files (docs/antrax-format.md#blob-image-files): MAT v7.3 layout, order, background, parts, frame_passed, malformed files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fixtures.experiments import synthetic_tracklet, tracklet_name
from fixtures.faults import MALFORMED_KINDS, make_malformed_images, truncate_file
from fixtures.mat import matlab_image_stack, write_frame_passed, write_images_mat, write_mat73, write_trck_mat
from antrax_pipe.io.images import (
    EmptyTrackletError,
    ImagesFile,
    find_movie_images,
    list_tracklets,
    read_frame_passed,
    read_tracklet_images,
    whiten,
)
from antrax_pipe.model import AntraxFormatError, TrackletName

NAMES = ["trj_id2_ti1_40_tf1_42", "trj_id10_ti1_7_tf1_8", "trj_id1_ti1_5_tf1_9", "trj_id1_ti1_100_tf1_100",
         "trj_id33_ti1_3_tf1_5"]


def _tracklets(names=NAMES, h=12, w=10):
    return {n: synthetic_tracklet(TrackletName.parse(n).n_frames, h, w, seed=i) for i, n in enumerate(names)}


# ---------------------------------------------------------------------------------------------------------- layout


def test_mat73_user_block_header_and_matlab_attrs(tmp_path):
    p = write_images_mat(tmp_path / "images_1.mat", _tracklets())
    raw = p.read_bytes()[:512]
    assert raw.startswith(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: ")
    assert b"HDF5 schema 1.00 ." in raw[:116]
    assert raw[124:126] == b"\x00\x02" and raw[126:128] == b"IM"
    with h5py.File(p, "r") as f:
        assert f.userblock_size == 512
        ds = f["trj_id10_ti1_7_tf1_8"]
        assert ds.attrs["MATLAB_class"] == b"uint8"
        assert ds.dtype == np.uint8 and ds.compression == "gzip" and ds.chunks is not None
        assert ds.shape == (2, 3, 10, 12)  # (N,3,W,H) for H=12, W=10
        assert f["trj_id1_ti1_100_tf1_100"].shape == (3, 10, 12)  # one frame: MATLAB drops the singleton dim


def test_read_non_square_stack_and_one_frame_exactly(tmp_path):
    tr = _tracklets(h=12, w=10)
    p = write_images_mat(tmp_path / "images_1.mat", tr)
    with ImagesFile(p) as f:
        for name, imgs in tr.items():
            got = f.read(name)
            assert got.shape == imgs.shape and got.dtype == np.uint8
            np.testing.assert_array_equal(got, imgs)
            assert f.n_images(name) == len(imgs)
            assert f.image_size(name) == (12, 10)
        assert f.read("trj_id1_ti1_100_tf1_100").shape == (1, 12, 10, 3)
    np.testing.assert_array_equal(read_tracklet_images(p, "trj_id33_ti1_3_tf1_5"), tr["trj_id33_ti1_3_tf1_5"])


def test_matlab_axis_convention_pixel_by_pixel(tmp_path):
    """MATLAB im(y,x,c,n) is stored at h5py [n,c,x,y]; one marked pixel pins every axis."""
    imgs = np.full((2, 5, 7, 3), 255, np.uint8)
    imgs[1, 3, 6] = (10, 20, 30)  # frame 2, row 4, column 7 (1-based) = red 10, green 20, blue 30
    p = write_images_mat(tmp_path / "images_1.mat", {"trj_id1_ti1_1_tf1_2": imgs})
    with h5py.File(p, "r") as f:
        raw = f["trj_id1_ti1_1_tf1_2"][()]
    assert raw.shape == (2, 3, 7, 5)
    assert tuple(raw[1, :, 6, 3]) == (10, 20, 30)
    assert raw[0].max() == 0  # all white → black on disk
    got = read_tracklet_images(p, "trj_id1_ti1_1_tf1_2")
    assert tuple(got[1, 3, 6]) == (10, 20, 30) and (got[0] == 255).all()


def test_tracklets_are_listed_byte_sorted_not_in_creation_order(tmp_path):
    p = write_images_mat(tmp_path / "images_1.mat", _tracklets(), seed=5)
    expected = sorted(NAMES, key=lambda s: s.encode())
    assert expected[0] == "trj_id10_ti1_7_tf1_8"  # '0' < '_': byte order, not natural order
    assert list_tracklets(p) == expected
    with ImagesFile(p) as f:
        assert [name for name, _ in f] == expected
        assert len(f) == len(NAMES)


def test_hidden_refs_and_subsystem_groups_are_skipped(tmp_path):
    p = write_images_mat(tmp_path / "images_1.mat", _tracklets(), refs=True)
    with h5py.File(p, "r") as f:
        assert "#refs#" in f and "#subsystem#" in f
    assert list_tracklets(p) == sorted(NAMES, key=str.encode)


def test_white_background_only_for_pixels_black_in_all_channels(tmp_path):
    stored = np.zeros((1, 3, 4, 1), np.uint8)  # (N,3,W,H): one image 1 row × 4 columns
    stored[0, :, 1] = [[0], [0], [1]]  # (0,0,1): nearly black, stays
    stored[0, :, 2] = [[255], [255], [255]]  # white stays white
    stored[0, :, 3] = [[7], [0], [0]]
    p = write_mat73(tmp_path / "images_1.mat", {"trj_id1_ti1_1_tf1_1": stored})
    got = read_tracklet_images(p, "trj_id1_ti1_1_tf1_1")
    assert got.shape == (1, 1, 4, 3)
    assert [tuple(px) for px in got[0, 0]] == [(255, 255, 255), (0, 0, 1), (255, 255, 255), (7, 0, 0)]
    raw = read_tracklet_images(p, "trj_id1_ti1_1_tf1_1", white_bg=False)
    assert tuple(raw[0, 0, 0]) == (0, 0, 0)
    a = np.array([[[0, 0, 0], [0, 5, 0]]], np.uint8)
    assert whiten(a) is a and a.tolist() == [[[255, 255, 255], [0, 5, 0]]]


def test_real_images_round_trip_exactly(tmp_path, real_tracklets):
    tr = {tracklet_name(i + 1, 1, 10 * i + 1, len(t)): t.images
          for i, t in enumerate(t for ts in real_tracklets.values() for t in ts)}
    p = write_images_mat(tmp_path / "images_1.mat", tr)
    with h5py.File(p, "r") as f:  # on disk the background is black, as MATLAB writes it
        some = max(tr, key=lambda k: len(tr[k]))
        raw = f[some][()]
        assert raw.ndim == 4 and raw.shape[1] == 3
        white = (tr[some] == 255).all(-1)
        assert white.any() and (raw.transpose(0, 3, 2, 1)[white] == 0).all()
        np.testing.assert_array_equal(raw, matlab_image_stack(tr[some]))
    with ImagesFile(p) as f:
        for name, imgs in tr.items():
            assert not (imgs.max(-1) == 0).any()  # exported anTraX PNGs never hold pure black
            np.testing.assert_array_equal(f.read(name), imgs)


def test_reads_one_tracklet_at_a_time_in_a_large_file(tmp_path, monkeypatch):
    names = [tracklet_name(k % 40 + 1, 3, 10 * k + 1, 2) for k in range(300)]
    p = write_mat73(tmp_path / "images_3.mat",
                    {n: matlab_image_stack(synthetic_tracklet(2, 8, 8, seed=k)) for k, n in enumerate(names)})
    touched = []
    orig = h5py.Dataset.__getitem__

    def spy(self, args, *rest, **kw):
        touched.append(self.name)
        return orig(self, args, *rest, **kw)

    with ImagesFile(p) as f:
        assert len(f) == 300
        monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
        got = f.read(names[123])
    np.testing.assert_array_equal(got, synthetic_tracklet(2, 8, 8, seed=123))
    assert touched == ["/" + names[123]]


# ---------------------------------------------------------------------------------------------------- malformed


@pytest.mark.parametrize("kind", [k for k in MALFORMED_KINDS if k != "truncated"])
def test_malformed_tracklet_error_names_file_and_tracklet(tmp_path, kind):
    good = _tracklets(NAMES[:2])
    p, bad = make_malformed_images(tmp_path / "images_4.mat", kind, good)
    with ImagesFile(p) as f:
        with pytest.raises(AntraxFormatError) as ei:
            f.read(bad)
        for name in good:  # the rest of the file stays readable
            np.testing.assert_array_equal(f.read(name), good[name])
    msg = str(ei.value)
    assert str(p) in msg and bad in msg
    if kind in ("matlab_empty", "zero_length"):
        assert isinstance(ei.value, EmptyTrackletError) and "empty" in msg


def test_truncated_file_error_names_file(tmp_path):
    p, _ = make_malformed_images(tmp_path / "images_4.mat", "truncated", _tracklets())
    with pytest.raises(AntraxFormatError, match="truncated") as ei:
        ImagesFile(p)
    assert str(p) in str(ei.value)


def test_not_hdf5_and_missing_file(tmp_path):
    v5 = write_trck_mat(tmp_path / "images_1.mat", "exp", "antrax")  # an old MAT v5 file
    with pytest.raises(AntraxFormatError, match="MAT v7.3") as ei:
        list_tracklets(v5)
    assert str(v5) in str(ei.value)
    with pytest.raises(AntraxFormatError, match="not found"):
        ImagesFile(tmp_path / "images_9.mat")


# --------------------------------------------------------------------------------------------------- frame_passed


def test_frame_passed_layout_and_reading(tmp_path):
    passed = {"trj_id1_ti1_5_tf1_9": np.array([1, 0, 1, 1, 0], bool), "trj_id1_ti1_100_tf1_100": np.array([True])}
    p = write_frame_passed(tmp_path / "frame_passed_1.mat", passed)
    with h5py.File(p, "r") as f:
        ds = f["trj_id1_ti1_5_tf1_9"]
        assert ds.shape == (1, 5) and ds.dtype == np.uint8
        assert ds.attrs["MATLAB_class"] == b"logical" and ds.attrs["MATLAB_int_decode"] == 1
        assert f["trj_id1_ti1_100_tf1_100"].shape == (1, 1)
    got = read_frame_passed(p)
    assert list(got) == sorted(passed, key=str.encode)
    for k, v in passed.items():
        assert got[k].dtype == bool
        np.testing.assert_array_equal(got[k], v)


def test_frame_passed_empty_and_group(tmp_path):
    p = write_frame_passed(tmp_path / "frame_passed_1.mat", {"trj_id1_ti1_5_tf1_6": np.ones(2, bool)})
    with h5py.File(p, "r+") as f:
        e = f.create_dataset("trj_id2_ti1_8_tf1_9", data=np.zeros(2, np.uint64))
        e.attrs["MATLAB_class"] = np.bytes_("logical")
        e.attrs["MATLAB_empty"] = np.uint8(1)
    got = read_frame_passed(p)
    assert got["trj_id2_ti1_8_tf1_9"].shape == (0,)
    with h5py.File(p, "r+") as f:
        f.create_group("trj_id3_ti1_8_tf1_9")
    with pytest.raises(AntraxFormatError) as ei:
        read_frame_passed(p)
    assert str(p) in str(ei.value) and "trj_id3_ti1_8_tf1_9" in str(ei.value)


def test_frame_passed_truncated(tmp_path):
    p = write_frame_passed(tmp_path / "frame_passed_1.mat", {f"trj_id{i}_ti1_1_tf1_50": np.ones(50, bool)
                                                             for i in range(1, 30)})
    truncate_file(p, 0.4)
    with pytest.raises(AntraxFormatError) as ei:
        read_frame_passed(p)
    assert str(p) in str(ei.value)


# ------------------------------------------------------------------------------------------------ movies and parts


def test_tiny_experiment_reads_back_exactly(tiny_experiment):
    ex = tiny_experiment
    movies = find_movie_images(ex.images_dir)
    assert sorted(movies) == [1, 2]
    assert not movies[1].is_parted and movies[2].is_parted
    assert [p.name for p in movies[2].parts] == ["images_2_p1.mat", "images_2_p2.mat"]
    assert [p.name for p in movies[2].passed_parts] == ["frame_passed_2_p1.mat", "frame_passed_2_p2.mat"]
    for m, mv in movies.items():
        seen = {}
        for part, passed_file in zip(mv.parts, mv.passed_parts):
            passed = read_frame_passed(passed_file)
            with ImagesFile(part) as f:
                assert f.tracklets == sorted(f.tracklets, key=str.encode)
                assert set(passed) == set(f.tracklets)
                for name, imgs in f:
                    seen[name] = imgs
                    assert TrackletName.parse(name).n_frames == len(imgs)
                    assert len(passed[name]) == len(imgs)
                    np.testing.assert_array_equal(passed[name], ex.passed[m][name])
        assert set(seen) == set(ex.truth[m])
        for name, imgs in seen.items():
            np.testing.assert_array_equal(imgs, ex.images[m][name])
    assert any(len(v) == 1 for v in ex.images[1].values())


def test_parts_in_numeric_order_and_other_names_ignored(tmp_path):
    tr = _tracklets(NAMES[:1])
    for k in (10, 2, 1):
        write_images_mat(tmp_path / f"images_5_p{k}.mat", tr)
    write_images_mat(tmp_path / "images_7.mat", tr)
    for k in (1, 2, 10):
        write_frame_passed(tmp_path / f"frame_passed_5_p{k}.mat", {NAMES[0]: np.ones(3, bool)})
    for junk in ("images_7.mat.bak", "images_x.mat", "images_.mat", "my_images_3.mat", "frame_score_7.mat"):
        (tmp_path / junk).write_bytes(b"")
    movies = find_movie_images(tmp_path)
    assert sorted(movies) == [5, 7]
    assert [p.name for p in movies[5].parts] == ["images_5_p1.mat", "images_5_p2.mat", "images_5_p10.mat"]
    assert len(movies[5].passed_parts) == 3
    assert movies[7].passed_parts == ()  # no frame_passed_7.mat
    (tmp_path / "frame_passed_5_p2.mat").unlink()
    assert find_movie_images(tmp_path)[5].passed_parts == ()  # incomplete → none, never a misaligned subset
    assert find_movie_images(tmp_path / "nowhere") == {}


def test_plain_and_parted_files_of_one_movie_conflict(tmp_path):
    tr = _tracklets(NAMES[:1])
    write_images_mat(tmp_path / "images_2.mat", tr)
    write_images_mat(tmp_path / "images_2_p1.mat", tr)
    with pytest.raises(AntraxFormatError, match="movie 2") as ei:
        find_movie_images(tmp_path)
    assert "images_2_p1.mat" in str(ei.value) and str(tmp_path) in str(ei.value)
