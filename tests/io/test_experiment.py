"""Experiments (docs/antrax-format.md): tracklet names, sessions, EXPLIST, --movlist, movies_info.txt, and the demo."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures.experiments import add_session, make_labelset, movies_info_text, tracklet_name
from fixtures.mat import read_mat5_variables, write_trck_mat
from fixtures.trainset import EXP_T12, TRAINSET_TARBALL, extract_real_examples, read_trainset_dir, write_trainset
from antrax_pipe.io.experiment import (
    find_expdirs,
    find_sessions,
    is_expdir,
    load_experiment,
    parse_explist,
    parse_movlist,
    read_movies_info,
    select_movies,
)
from antrax_pipe.io.images import ImagesFile, find_movie_images, read_frame_passed
from antrax_pipe.io.labels import read_labels
from antrax_pipe.model import AntraxFormatError, Experiment, TrackletName

LABELS = make_labelset(["BB", "PB"])

# ------------------------------------------------------------------------------------------------ tracklet names


def test_tracklet_name_parse_and_frames():
    t = TrackletName.parse("trj_id6_ti1_57002_tf1_57060")
    assert (t.blob_id, t.movie, t.first_frame, t.last_movie, t.last_frame) == (6, 1, 57002, 1, 57060)
    assert t.n_frames == 59 and t.name == "trj_id6_ti1_57002_tf1_57060"
    # JS16.trj_id7_ti3_869_tf3_908 with fi(3) = 6001 → absolute frames 6869..6908 (example of docs/antrax-format.md#training-examples)
    assert TrackletName.parse("trj_id7_ti3_869_tf3_908").absolute_frames(6001) == (6869, 6908)
    assert TrackletName.parse("trj_id1_ti1_2291_tf1_2291").n_frames == 1
    assert tracklet_name(12, 4, 100, 40) == "trj_id12_ti4_100_tf4_139"


@pytest.mark.parametrize("bad", ["trj_id6_ti1_57002_tf1", "trj_id6_ti1_57002_tf1_57060_split1", "trj_idx_ti1_1_tf1_2",
                                 "Trj_id6_ti1_1_tf1_2", "", "#refs#", " trj_id6_ti1_1_tf1_2"])
def test_tracklet_name_rejects(bad):
    with pytest.raises(ValueError, match="not an anTraX tracklet name"):
        TrackletName.parse(bad)


def test_tracklet_names_sort_like_tuples():
    names = ["trj_id2_ti1_5_tf1_9", "trj_id10_ti1_5_tf1_9", "trj_id2_ti1_3_tf1_9"]
    assert [t.name for t in sorted(map(TrackletName.parse, names))] == [names[2], names[0], names[1]]


# ------------------------------------------------------------------------------------------------------ sessions


def _exp(tmp_path, name="exp1", sessions=(("antrax", 1_000_000),)) -> Path:
    expdir = tmp_path / name
    for s, mtime in sessions:
        add_session(expdir, s, LABELS, mtime)
    return expdir


def test_trck_mat_is_a_mat_v5_file_with_variable_trck(tmp_path):
    p = write_trck_mat(tmp_path / "Trck.mat", "exp", "antrax")
    raw = p.read_bytes()
    assert raw.startswith(b"MATLAB 5.0 MAT-file, Platform: GLNXA64") and raw[124:128] == b"\x00\x01IM"
    assert len(raw) % 8 == 0
    assert read_mat5_variables(p) == [("Trck", 2)]  # a 1×1 struct


def test_newest_trck_mat_wins_and_session_overrides(tmp_path):
    expdir = _exp(tmp_path, sessions=(("antrax", 1_000_000), ("retrack", 3_000_000), ("old", 2_000_000)))
    assert find_sessions(expdir) == ["retrack", "old", "antrax"]
    ex = load_experiment(expdir)
    assert ex == Experiment(expdir.absolute(), "retrack")
    assert ex.labels_file == expdir / "retrack" / "parameters" / "labels.csv"
    assert ex.autoids_file(3) == expdir / "retrack" / "labels" / "autoids_3.csv"
    assert load_experiment(expdir, "antrax").session == "antrax"
    os.utime(expdir / "antrax" / "parameters" / "Trck.mat", (4_000_000, 4_000_000))  # re-tracked
    assert load_experiment(expdir).session == "antrax"


def test_bad_session_and_not_an_experiment(tmp_path):
    expdir = _exp(tmp_path, sessions=(("antrax", 1), ("s2", 2)))
    with pytest.raises(AntraxFormatError) as ei:
        load_experiment(expdir, "nosuch")
    msg = str(ei.value)
    assert str(expdir) in msg and "'nosuch'" in msg and "s2, antrax" in msg
    (expdir / "images").mkdir()  # a folder without parameters/Trck.mat is not a session
    with pytest.raises(AntraxFormatError, match="session 'images' not found"):
        load_experiment(expdir, "images")
    plain = tmp_path / "plain"
    (plain / "antrax" / "parameters").mkdir(parents=True)
    assert not is_expdir(plain) and is_expdir(expdir) and not is_expdir(tmp_path / "none")
    with pytest.raises(AntraxFormatError, match="not an anTraX experiment"):
        load_experiment(plain)
    with pytest.raises(AntraxFormatError, match="not found"):
        load_experiment(tmp_path / "none")


def test_relative_expdir_is_made_absolute(tmp_path, monkeypatch):
    _exp(tmp_path)
    monkeypatch.chdir(tmp_path)
    ex = load_experiment("exp1/")
    assert ex.expdir == tmp_path / "exp1" and ex.name == "exp1"


# ------------------------------------------------------------------------------------------------------- EXPLIST


def test_explist_expdir_listfile_and_folder(tmp_path):
    root = tmp_path / "data"
    a = _exp(root, "A")
    bb = _exp(root / "batch2", "B")
    nested = _exp(a / "sub", "C")  # an experiment inside another experiment's folder
    (root / "batch2" / "notes").mkdir()
    assert parse_explist(a) == [a.absolute()]
    assert parse_explist(root) == sorted([a, bb, nested]) == find_expdirs(root)
    lst = tmp_path / "explist.txt"
    lst.write_text(f"# my experiments\n\n{a} first one\n   {bb} indented: skipped\ndata/batch2/B\n\t# tab\n")
    assert parse_explist(lst) == [a, bb]  # relative paths are relative to the list file


def test_explist_errors(tmp_path):
    a = _exp(tmp_path, "A")
    lst = tmp_path / "explist.txt"
    lst.write_text(f"{a}\n{tmp_path / 'missing'}\n")
    with pytest.raises(AntraxFormatError) as ei:
        parse_explist(lst)
    assert str(lst) in str(ei.value) and "line 2" in str(ei.value)
    lst.write_text("# only comments\n\n")
    with pytest.raises(AntraxFormatError, match="empty"):
        parse_explist(lst)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AntraxFormatError, match="no anTraX experiment found"):
        parse_explist(tmp_path / "empty")
    with pytest.raises(AntraxFormatError, match="neither"):
        parse_explist(tmp_path / "nothing-here")


# ------------------------------------------------------------------------------------------------------- movlist


@pytest.mark.parametrize(
    "spec, expected",
    [("4", [4]), ("3,5,6", [3, 5, 6]), ("1-5,7", [1, 2, 3, 4, 5, 7]), ("7,1-3,2", [1, 2, 3, 7]), (" 2 - 4 ", [2, 3, 4]),
     ("all", None), ("ALL", None), (None, None), ("0", []), (4, [4]), ([3, 1, 3], [1, 3])],
)
def test_movlist(spec, expected):
    assert parse_movlist(spec) == expected


@pytest.mark.parametrize("spec", ["", "a", "1-", "-3", "1,,2", "5-3", "1.5", "1;2"])
def test_movlist_errors(spec):
    with pytest.raises(ValueError, match="invalid movlist"):
        parse_movlist(spec)


def test_select_movies_intersects_with_movlist(tiny_experiment):
    ex = load_experiment(tiny_experiment.expdir)
    assert sorted(select_movies(ex)) == [1, 2]
    assert sorted(select_movies(ex, parse_movlist("2-9"))) == [2]
    assert select_movies(ex, parse_movlist("0")) == {}


# ------------------------------------------------------------------------------------------------- movies_info


JS16_MOVIES_INFO = (
    "index subdir name movfile container filesize width height pixel fps starttime duration nframes channels "
    "framesize_1 framesize_2 framesize_3 framebytes fi ff\n"
    "1 1_6 JS16_1 JS16_1.mp4 mov,mp4,m4a,3gp,3g2,mj2 10402940 960 720 yuvj420p 10 0 300 3000 3 960 720 3 2073600 "
    "1 3000\n"
    "2 1_6 JS16_2 JS16_2.mp4 mov,mp4,m4a,3gp,3g2,mj2 10915624 960 720 yuvj420p 10 0 300 3000 3 960 720 3 2073600 "
    "3001 6000\n"
)


def test_movies_info_real_and_built(tmp_path):
    p = tmp_path / "movies_info.txt"
    p.write_text(JS16_MOVIES_INFO)
    df = read_movies_info(p)
    assert list(df["fi"]) == [1, 3001] and list(df["ff"]) == [3000, 6000] and df.loc[2, "movfile"] == "JS16_2.mp4"
    for with_dat in (False, True):
        text = movies_info_text("exp", {1: 3000, 2: 1500, 3: 10}, with_dat=with_dat)
        assert text.splitlines()[0].split()[-2:] == ["fi", "ff"]
        p.write_text(text)
        df = read_movies_info(p)
        assert df.loc[3, "fi"] == 4501 and df.loc[3, "ff"] == 4510 and ("datfile" in df.columns) == with_dat
        assert (df["ff"] - df["fi"] + 1 == df["nframes"]).all()
    assert movies_info_text("JS16", {1: 3000, 2: 3000}).replace("1_2", "1_6").splitlines()[1].split()[-4:] == \
        JS16_MOVIES_INFO.splitlines()[1].split()[-4:]


def test_movies_info_errors(tmp_path):
    p = tmp_path / "movies_info.txt"
    with pytest.raises(AntraxFormatError, match="not found"):
        read_movies_info(p)
    p.write_text("index subdir fi\n1 1_1 1\n")
    with pytest.raises(AntraxFormatError, match="missing column.*ff") as ei:
        read_movies_info(p)
    assert str(p) in str(ei.value)


# ------------------------------------------------------------------------------------------------ built + demo


def test_builder_trainset_layout_and_rgb_order(tmp_path, real_tracklets):
    t = real_tracklets["PB"][0]
    exdir = write_trainset(tmp_path, {"PB": [t]})
    files = sorted((exdir / "PB").iterdir())
    assert len(files) == len(t.frames) and all(f.name.startswith(t.key + ".") for f in files)
    back = read_trainset_dir(exdir)
    np.testing.assert_array_equal(back["PB"][0].images, t.images)  # RGB survives cv2's BGR on disk
    assert back["PB"][0].frames == t.frames
    import cv2

    bgr = cv2.imread(str(exdir / "PB" / f"{t.key}.{t.frames[0]}.png"))
    np.testing.assert_array_equal(bgr[..., ::-1], t.images[0])


def test_real_tracklets_fixture(real_tracklets):
    assert set(real_tracklets) == {"PB", "PG", "Unknown", "NoAnt"}
    keys = [t.key for ts in real_tracklets.values() for t in ts]
    assert len(keys) == len(set(keys)) == 8
    for label, ts in real_tracklets.items():
        for t in ts:
            assert t.label == label and t.images.dtype == np.uint8 and t.images.shape[1:] == (48, 48, 3)
            assert 1 <= len(t) <= 8 and list(t.frames) == sorted(t.frames)
            assert (t.images == 255).all(-1).mean() > 0.2  # white background


@pytest.mark.parametrize("colony", ["colonyA", "colonyB"])
def test_demo_experiment_is_complete_and_matches_ground_truth(demo_dir, colony):
    expdir = demo_dir / "experiments" / colony
    ex = load_experiment(expdir)
    assert ex.session == "antrax" and read_mat5_variables(ex.parameters_dir / "Trck.mat")[0][0] == "Trck"
    labels = read_labels(ex.labels_file)
    assert labels.ant_labels == ("BB", "GP", "PB", "PG", "PO", "PP")
    assert labels.noant_labels == ("NoAnt",) and labels.other_labels == ("Unknown",)
    assert labels.tagcolors == ("B", "G", "O", "P")
    info = read_movies_info(ex.parameters_dir / "movies_info.txt")
    movies = find_movie_images(ex.images_dir)
    assert sorted(movies) == sorted(info["index"]) and len(movies) >= 2
    if colony == "colonyB":
        assert [p.name for p in movies[2].parts] == ["images_2_p1.mat", "images_2_p2.mat"]
    with open(demo_dir / "ground_truth" / f"{colony}.csv", newline="") as fh:
        truth = list(csv.DictReader(fh))
    file_rows, n_one = [], 0
    for m, mv in sorted(movies.items()):
        assert len(mv.passed_parts) == len(mv.parts)
        for part, passed_file in zip(mv.parts, mv.passed_parts):
            passed = read_frame_passed(passed_file)
            with ImagesFile(part) as f:
                for name, imgs in f:
                    tn = TrackletName.parse(name)
                    assert tn.movie == m and tn.n_frames == len(imgs) == len(passed[name]) <= 40
                    assert 1 <= tn.first_frame and tn.last_frame <= info.loc[m, "nframes"]
                    assert imgs.shape[1:] == (48, 48, 3)
                    n_one += len(imgs) == 1
                    file_rows.append((str(m), name))
    assert [(r["movie"], r["tracklet"]) for r in truth] == file_rows
    assert {r["label"] for r in truth} <= set(labels.all_labels) and n_one >= 1
    examples = ex.classdir / "examples"
    assert sorted(p.name for p in examples.iterdir()) == sorted(labels.all_labels)
    for ldir in examples.iterdir():
        pngs = list(ldir.glob("*.png"))
        assert pngs and all(p.stem.rsplit(".", 1)[1].isdigit() for p in pngs)


def test_demo_train_and_movie_tracklets_are_disjoint(demo_dir):
    with open(demo_dir / "ground_truth" / "provenance.csv", newline="") as fh:
        prov = list(csv.DictReader(fh))
    movie_sources = {r["source"] for r in prov}
    assert len(movie_sources) == len(prov)  # each source tracklet used once
    train_keys = {p.stem.rsplit(".", 1)[0] for p in demo_dir.glob("experiments/*/*/classifier/examples/*/*.png")}
    assert train_keys and movie_sources and not movie_sources & train_keys


def test_demo_is_small(demo_dir):
    """The committed demo stays small. What running it writes (autoids, a trained classifier, review lists, marks)
    is ignored by git and not counted: running the README's commands must not break this test."""
    import subprocess

    res = subprocess.run(["git", "ls-files", "-z", "--", str(demo_dir)], capture_output=True, text=True,
                         cwd=demo_dir)
    files = ([demo_dir / f for f in res.stdout.split("\0") if f] if res.returncode == 0 and res.stdout
             else [p for p in demo_dir.rglob("*") if p.is_file()])
    assert files and all(p.is_file() for p in files)
    total = sum(p.stat().st_size for p in files)
    assert 1 * 2**20 < total < 5 * 2**20


def test_session_discovery_uses_mtime_not_name(tmp_path):
    expdir = _exp(tmp_path, sessions=(("zzz", time.time() - 100), ("aaa", time.time())))
    assert load_experiment(expdir).session == "aaa"


@pytest.mark.skipif(not TRAINSET_TARBALL.is_file(), reason="trainset tarball not available")
def test_extract_real_examples_from_tarball(tmp_path):
    """Seeded, exclusion-aware, experiment-filtered selection; only the needed members are read; RGB trainset out."""
    kw = dict(labels=["GP"], n_tracklets_per_label=2, max_frames=3, seed=7, experiments=EXP_T12)
    first = extract_real_examples(tmp_path / "ts", **kw)
    again = extract_real_examples(None, **kw)
    assert [t.key for t in first["GP"]] == [t.key for t in again["GP"]]
    assert all(t.expname == EXP_T12 and t.tracklet.startswith("trj_id") and len(t) <= 3 for t in first["GP"])
    other = extract_real_examples(None, **(kw | {"exclude_tracklets": [t.key for t in first["GP"]]}))
    assert not {t.key for t in other["GP"]} & {t.key for t in first["GP"]}
    back = read_trainset_dir(tmp_path / "ts" / "examples")
    for t, r in zip(first["GP"], back["GP"]):
        assert (t.key, t.frames) == (r.key, r.frames)
        np.testing.assert_array_equal(t.images, r.images)
    with pytest.raises(ValueError, match="only"):
        extract_real_examples(None, **(kw | {"n_tracklets_per_label": 99}))
