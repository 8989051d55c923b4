"""labels/autoids_<m>.csv (docs/antrax-format.md#autoids): byte-exact anTraX rows, atomic writes, refusal to touch manual IDs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from antrax_pipe.io.atomic import atomic_path, atomic_write_text
from antrax_pipe.io.autoids import format_autoids, read_autoids, write_autoids
from antrax_pipe.io.images import list_tracklets
from antrax_pipe.model import AntraxFormatError, AutoID

# the real JS16 autoids_1.csv rows quoted in the spec
REAL = (
    "tracklet,label,score,best_frame\n"
    "trj_id1_ti1_1258_tf1_1275,BP,17.99948501586914,11\n"
    "trj_id1_ti1_1_tf1_272,GB,247.40692138671875,122\n"
    "trj_id1_ti1_2291_tf1_2291,OG,1.0,1\n"
    "trj_id3_ti1_1322_tf1_1322,Unknown,0,0\n"
)


def _float32_sum_to(target: float, n: int) -> np.float32:
    """A float32 per-frame probability vector of length n whose float32 sum is float32(target), as predict makes."""
    t = np.float32(target)
    k = int(t) - 1 if float(t).is_integer() else int(t)
    frames = np.array([1.0] * k + [t - np.float32(k)] + [0.0] * (n - k - 1), np.float32)
    s = frames.sum(dtype=np.float32)
    assert s == t
    return s


def real_rows() -> list[AutoID]:
    return [
        AutoID("trj_id1_ti1_1258_tf1_1275", "BP", float(_float32_sum_to(17.99948501586914, 18)), 11),
        AutoID("trj_id1_ti1_1_tf1_272", "GB", _float32_sum_to(247.40692138671875, 272), 122),  # np.float32 as is
        AutoID("trj_id1_ti1_2291_tf1_2291", "OG", float(np.float32(1.0)), 1),
        AutoID("trj_id3_ti1_1322_tf1_1322", "Unknown"),
    ]


def test_format_is_byte_exact_against_real_anTraX_rows():
    assert format_autoids(real_rows()) == REAL


def test_write_is_byte_exact_lf_and_atomic(tmp_path):
    p = write_autoids(tmp_path / "labels" / "autoids_1.csv", real_rows())
    data = p.read_bytes()
    assert data == REAL.encode("ascii")
    assert b"\r" not in data and b'"' not in data and data.endswith(b"0,0\n")
    assert os.listdir(p.parent) == ["autoids_1.csv"]
    assert oct(p.stat().st_mode & 0o777) == "0o644"


def test_non_id_rows_write_literal_zeros():
    rows = [AutoID("trj_id4_ti2_5_tf2_9", "NoAnt"), AutoID("trj_id5_ti2_5_tf2_9", "MultiAnt", 0, 0),
            AutoID("trj_id6_ti2_5_tf2_9", "Unknown", 0.0, 0)]
    assert format_autoids(rows).splitlines()[1:] == [
        "trj_id4_ti2_5_tf2_9,NoAnt,0,0", "trj_id5_ti2_5_tf2_9,MultiAnt,0,0", "trj_id6_ti2_5_tf2_9,Unknown,0,0"]


def test_header_only_when_no_rows():
    assert format_autoids([]) == "tracklet,label,score,best_frame\n"


@pytest.mark.parametrize("bad", ["a,b", 'a"b', "a\nb"])
def test_fields_that_would_need_quoting_are_refused(bad):
    with pytest.raises(ValueError, match="comma, quote or newline"):
        format_autoids([AutoID("trj_id1_ti1_1_tf1_1", bad, 1.0, 1)])


def test_read_back(tmp_path):
    p = write_autoids(tmp_path / "autoids_1.csv", real_rows())
    rows = read_autoids(p)
    assert [(r.tracklet, r.label, r.best_frame) for r in rows] == [(r.tracklet, r.label, r.best_frame)
                                                                  for r in real_rows()]
    assert rows[0].score == pytest.approx(17.99948501586914, abs=0) and rows[3].score == 0
    assert format_autoids(rows) == REAL  # read → write is the identity


@pytest.mark.parametrize(
    "text, what",
    [
        ("tracklet,label,score\n", "header"),
        ("", "header"),
        ("tracklet,label,score,best_frame\ntrj_id1_ti1_1_tf1_1,BB,1.0\n", "line 2"),
        ("tracklet,label,score,best_frame\ntrj_id1_ti1_1_tf1_1,BB,x,1\n", "line 2"),
        ("tracklet,label,score,best_frame\ntrj_id1_ti1_1_tf1_1,BB,1.0,1\nt,BB,1.0,1.5\n", "line 3"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path, text, what):
    p = tmp_path / "autoids_2.csv"
    p.write_text(text)
    with pytest.raises(AntraxFormatError, match=what) as ei:
        read_autoids(p)
    assert str(p) in str(ei.value)
    with pytest.raises(AntraxFormatError, match="not found"):
        read_autoids(tmp_path / "autoids_9.csv")


def test_refuses_manualids(tmp_path):
    p = tmp_path / "manualids.csv"
    p.write_text("user data\n")
    with pytest.raises(ValueError, match="manual"):
        write_autoids(p, real_rows())
    assert p.read_text() == "user data\n"


def test_failure_while_producing_rows_keeps_old_file(tmp_path):
    p = write_autoids(tmp_path / "autoids_1.csv", real_rows())

    def rows():
        yield AutoID("trj_id1_ti1_1_tf1_2", "BB", 2.0, 1)
        raise RuntimeError("classifier crashed")

    with pytest.raises(RuntimeError):
        write_autoids(p, rows())
    assert p.read_text() == REAL and os.listdir(tmp_path) == ["autoids_1.csv"]


def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    p = atomic_write_text(tmp_path / "autoids_1.csv", REAL)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(p) as tmp:
            assert tmp.parent == p.parent and tmp.suffix == ".csv" and tmp != p
            tmp.write_text("tracklet,label,score,best_frame\ntrj_id1_ti1_1_tf1_2,BB,")  # half a file
            raise KeyboardInterrupt  # killed job
    assert p.read_text() == REAL and os.listdir(tmp_path) == ["autoids_1.csv"]


def test_rows_in_images_file_order(tiny_experiment, tmp_path):
    """One row per image dataset, in the file's byte-sorted order (the validate app relies on it)."""
    f = tiny_experiment.files[1][0]
    names = list_tracklets(f)
    p = write_autoids(tmp_path / "autoids_1.csv", [AutoID(n, tiny_experiment.truth[1][n]) for n in names])
    assert [r.tracklet for r in read_autoids(p)] == names == sorted(names, key=str.encode)
