"""parameters/labels.csv (docs/antrax-format.md#labelscsv): tab format, old comma format + labels.mat, aliases, defaults, errors."""

from __future__ import annotations

import os

import pytest

from fixtures.experiments import JS16_LABELS_TEXT, make_labelset, write_labels_files
from fixtures.mat import mat5_bytes
from antrax_pipe.io.labels import format_labels, parse_labels, read_labels, write_labels
from antrax_pipe.model import AntraxFormatError, LabelSet

JS16_IDS = tuple(a + c for a in "BGOP" for c in "BGOP")


def _write(tmp_path, text: str, old: bool = False):
    pdir = tmp_path / "parameters"
    pdir.mkdir(exist_ok=True)
    (pdir / "labels.csv").write_bytes(text.encode())
    if old:
        (pdir / "labels.mat").write_bytes(mat5_bytes("labels", {"x": "y"}))
    return pdir / "labels.csv"


def test_real_js16_file_reads_and_rewrites_byte_exact(tmp_path):
    p = _write(tmp_path, JS16_LABELS_TEXT)
    labels = read_labels(p)
    assert labels.ant_labels == JS16_IDS
    assert labels.noant_labels == ("NoAnt",) and labels.other_labels == ("Unknown",)
    assert labels.tagcolors == ("B", "G", "O", "P")
    assert labels.all_labels == JS16_IDS + ("NoAnt", "Unknown")
    assert labels.multi_labels == ()
    assert labels.category_of("GO") == "ant_labels" and labels.category_of("B") is None
    assert format_labels(labels) == JS16_LABELS_TEXT
    out = write_labels(tmp_path / "out" / "labels.csv", labels)
    assert out.read_bytes() == JS16_LABELS_TEXT.encode()
    assert os.listdir(out.parent) == ["labels.csv"]  # atomic: no temp file left


def test_builder_labelset_round_trips_through_every_format(tmp_path):
    labels = make_labelset(["PB", "BB", "GP"], other=["Unknown", "Multi"])
    for fmt in ("tab", "nonant", "comma"):
        d = tmp_path / fmt
        p = write_labels_files(d, labels, fmt)
        assert (d / "labels.mat").exists() == (fmt == "comma")
        got = read_labels(p)
        assert got.categories == labels.categories, fmt


def test_old_comma_format_selected_by_labels_mat(tmp_path):
    text = "ant_labels,BB,GP,PB\nnoant_labels,NoAnt,Food\nother_labels,Unknown,MultiAnt\ntagcolors,B,G,P\n"
    p = _write(tmp_path, text, old=True)
    labels = read_labels(p)
    assert labels.ant_labels == ("BB", "GP", "PB")
    assert labels.noant_labels == ("NoAnt", "Food")
    assert labels.multi_labels == ("MultiAnt",)
    (p.parent / "labels.mat").unlink()  # same text without labels.mat is a malformed new-format file
    with pytest.raises(AntraxFormatError) as ei:
        read_labels(p)
    msg = str(ei.value)
    assert str(p) in msg and "line 1" in msg and "labels.mat" in msg


@pytest.mark.parametrize("old", [False, True])
def test_nonant_labels_alias(tmp_path, old):
    text = ("ant_labels,AA\nnonant_labels,Food,NoAnt\n" if old
            else "AA\tant_labels\nFood\tnonant_labels\nNoAnt\tnonant_labels\n")
    labels = read_labels(_write(tmp_path, text, old=old))
    assert labels.noant_labels == ("Food", "NoAnt")
    assert "nonant_labels" not in labels.categories


def test_noant_and_unknown_defaults_like_matlab(tmp_path):
    labels = read_labels(_write(tmp_path, "BB\tant_labels\nGG\tant_labels\n"))
    assert labels.noant_labels == ("NoAnt",) and labels.other_labels == ("Unknown",)
    assert labels.tagcolors == ()
    assert labels.category_of("Unknown") == "other_labels" and labels.category_of("NoAnt") == "noant_labels"
    # present ones are not duplicated, extra ones kept in file order
    labels = read_labels(_write(tmp_path, "BB\tant_labels\nLarva\tnoant_labels\nNoAnt\tnoant_labels\n"
                                          "Multi\tother_labels\n"))
    assert labels.noant_labels == ("Larva", "NoAnt") and labels.other_labels == ("Multi", "Unknown")


def test_multi_classes_are_recognised_by_name_only(tmp_path):
    labels = read_labels(_write(tmp_path, "BB\tant_labels\nMulti\tother_labels\nmulti\tother_labels\n"
                                          "MultiAnt\tother_labels\nmultiple\tother_labels\n"))
    assert labels.multi_labels == ("Multi", "multi", "MultiAnt")
    assert LabelSet({"ant_labels": ("A",), "weird": ("MultiAnt",)}).multi_labels == ()  # not an all_labels category


def test_crlf_bom_blank_lines_and_spaces_are_tolerated(tmp_path):
    text = "\ufeffBB\tant_labels\r\n\r\n GP \tant_labels\r\nNoAnt\tnoant_labels\r\n"
    labels = read_labels(_write(tmp_path, text))
    assert labels.ant_labels == ("BB", "GP")


def test_duplicates_within_a_category_are_dropped():
    labels = parse_labels("BB\tant_labels\nBB\tant_labels\n")
    assert labels.ant_labels == ("BB",)


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("BB\tant_labels\nGG\tant_labels\textra\n", 2, "label<TAB>category"),
        ("BB\tant_labels\nGG\n", 2, "label<TAB>category"),
        ("BB\tant_labels\n\tant_labels\n", 2, "label<TAB>category"),
        ("BB,ant_labels\n", 1, "old comma format"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, text, line, what):
    p = _write(tmp_path, text)
    with pytest.raises(AntraxFormatError) as ei:
        read_labels(p)
    msg = str(ei.value)
    assert str(p) in msg and f"line {line}" in msg and what in msg


@pytest.mark.parametrize(
    "text, what",
    [
        ("", "no labels"),
        ("\n\n", "no labels"),
        ("NoAnt\tnoant_labels\nUnknown\tother_labels\n", "ant_labels"),
        ("BB\tant_labels\nBB\tother_labels\n", "two categories"),
        ("BB\tant_labels\nNoAnt\tant_labels\n", "two categories"),  # clashes with the NoAnt default
    ],
)
def test_invalid_label_sets_name_the_file(tmp_path, text, what):
    p = _write(tmp_path, text)
    with pytest.raises(AntraxFormatError, match=what) as ei:
        read_labels(p)
    assert str(p) in str(ei.value)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(AntraxFormatError, match="not found"):
        read_labels(tmp_path / "labels.csv")
    p = tmp_path / "labels.csv"
    p.write_bytes(b"B\xff\tant_labels\n")
    with pytest.raises(AntraxFormatError, match="UTF-8") as ei:
        read_labels(p)
    assert str(p) in str(ei.value)


def test_write_replaces_atomically_and_keeps_old_file_on_error(tmp_path, monkeypatch):
    p = tmp_path / "labels.csv"
    p.write_text("old\n")
    import antrax_pipe.io.atomic as atomic

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_labels(p, make_labelset(["BB"]))
    assert p.read_text() == "old\n" and os.listdir(tmp_path) == ["labels.csv"]
