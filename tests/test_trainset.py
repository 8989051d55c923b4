"""Trainset listing, manifest, merge and image loading (no TensorFlow), on real example PNGs of the shared trainset."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from antrax_pipe.model import PreprocessSpec
from antrax_pipe.io.examples import Example, find_classes, list_examples, parse_example_name, scan_examples_dir
from antrax_pipe.io.experiment import resolve_classdir
from antrax_pipe.io.manifest import build_manifest, manifest_hash, read_manifest, write_manifest
from antrax_pipe.model import TrainsetError
from antrax_pipe.trainset import load_example_images, merge_trainset, merge_trainsets

TARBALL = Path("/work/shared/data/antrax-demo-trainset.tar.gz")
EXP = "15_10_08_15_47_56_colony_tracking_t12"


def extract_subset(dest: Path, labels: list[str], per_tracklet: int, max_tracklets: int, exp: str = EXP) -> Path:
    """Copy a few real examples of the shared trainset into ``dest/examples/<label>/`` (one pass over the tarball):
    per label the first ``max_tracklets`` tracklets (sorted) of experiment ``exp``, ``per_tracklet`` frames each,
    evenly spaced."""
    if not TARBALL.is_file():
        pytest.skip(f"{TARBALL} not available")
    found: dict[tuple[str, str], list[tuple[str, bytes]]] = defaultdict(list)
    with tarfile.open(TARBALL, "r:gz") as tar:
        for m in tar:
            parts = m.name.split("/")
            if len(parts) != 3 or parts[1] not in labels or not parts[2].startswith(exp + "."):
                continue
            key = ".".join(parts[2].split(".")[:2])
            found[(parts[1], key)].append((parts[2], tar.extractfile(m).read()))
    for label in labels:
        keys = sorted(k for (lab, k) in found if lab == label)[:max_tracklets]
        (dest / "examples" / label).mkdir(parents=True, exist_ok=True)
        for k in keys:
            files = sorted(found[(label, k)])
            step = max(1, len(files) // per_tracklet)
            for name, data in files[::step][:per_tracklet]:
                (dest / "examples" / label / name).write_bytes(data)
    return dest


@pytest.fixture(scope="module")
def real_classdir(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("ts") / "classdir"
    return extract_subset(dest, ["BB", "GG", "OO"], per_tracklet=4, max_tracklets=3)


def _counts(classdir: Path) -> dict[str, int]:
    return {d.name: len(list(d.iterdir())) for d in sorted((classdir / "examples").iterdir())}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _write_png(path: Path, rgb: tuple[int, int, int], size: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size, 3), 255, np.uint8)
    q = size // 4
    img[q : size - q, q : size - q] = rgb[::-1]  # cv2 writes BGR
    assert cv2.imwrite(str(path), img)
    return path


# ---------------------------------------------------------------------------------------------------- listing


def test_find_classes_sorted_skips_empty_and_stray(tmp_path, caplog):
    ex = tmp_path / "examples"
    for lab in ["Unknown", "BB", "b", "NoAnt", "PP"]:
        _write_png(ex / lab / f"e.trj_id1_ti1_1_tf1_2.{len(lab)}.png", (255, 0, 0))
    (ex / "EmptyLabel").mkdir()
    (ex / "OnlyText").mkdir()
    (ex / "OnlyText" / "notes.txt").write_text("x")
    (ex / "stray.png").write_bytes(b"not a label dir")
    (ex / ".DS_Store").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        classes = find_classes(ex)
    assert classes == ["BB", "NoAnt", "PP", "Unknown", "b"]  # code-point order: upper case before lower case
    assert "EmptyLabel" in caplog.text and "OnlyText" in caplog.text and "stray.png" in caplog.text
    scan = scan_examples_dir(ex)
    assert scan.empty_dirs == ["EmptyLabel", "OnlyText"]
    assert ".DS_Store" in scan.stray_files and "stray.png" in scan.stray_files


def test_find_classes_missing_dir_is_clear(tmp_path):
    with pytest.raises(TrainsetError, match="examples directory not found"):
        find_classes(tmp_path / "nope")
    with pytest.raises(TrainsetError, match="not a classifier directory"):
        list_examples(tmp_path)


@pytest.mark.parametrize(
    "name, key, exp, trk, frame",
    [
        ("JS16.trj_id7_ti3_869_tf3_908.6869.png", "JS16.trj_id7_ti3_869_tf3_908", "JS16", "trj_id7_ti3_869_tf3_908",
         6869),
        ("my.exp.v2.trj_id1_ti1_1_tf1_9.3.png", "my.exp.v2.trj_id1_ti1_1_tf1_9", "my.exp.v2", "trj_id1_ti1_1_tf1_9", 3),
        ("e.trj_id1_ti1_1_tf1_9.png", "e.trj_id1_ti1_1_tf1_9", "e", "trj_id1_ti1_1_tf1_9", None),
        ("exp1.track_17.250.jpg", "exp1.track_17", "exp1", "track_17", 250),
        ("random_image.png", "random_image", None, None, None),
        ("a.b.png", "a.b", None, None, None),
    ],
)
def test_parse_example_name(name, key, exp, trk, frame):
    assert parse_example_name(name) == (key, exp, trk, frame)


def test_list_examples_formats_and_keys(tmp_path):
    ex = tmp_path / "examples" / "BB"
    ex.mkdir(parents=True)
    img = np.full((10, 10, 3), 200, np.uint8)
    for i, suffix in enumerate([".png", ".jpg", ".jpeg", ".tif", ".tiff", ".PNG"]):
        assert cv2.imwrite(str(ex / f"E.trj_id1_ti1_1_tf1_9.{i}{suffix}"), img)
    (ex / "readme.txt").write_text("not an image")
    (ex / "x.bmp").write_bytes(b"BM")
    exs = list_examples(tmp_path)
    assert len(exs) == 6
    assert {e.tracklet_key for e in exs} == {"E.trj_id1_ti1_1_tf1_9"}
    assert all(e.label == "BB" and e.exp == "E" for e in exs)
    assert sorted(e.frame for e in exs) == [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------------- manifest


def test_manifest_deterministic_and_detects_changes(real_classdir, tmp_path):
    cd = _copy(real_classdir, tmp_path / "cd")
    m1 = build_manifest(cd)
    assert len(m1.entries) == sum(_counts(cd).values()) >= 30
    assert m1.classes == ["BB", "GG", "OO"]
    e0 = m1.entries[0]
    assert e0.path.startswith("examples/BB/") and e0.exp == EXP and e0.tracklet.startswith("trj_id")
    assert len(e0.sha256) == 64
    h1 = manifest_hash(m1)
    # deterministic: same content → same hash and byte-identical files
    write_manifest(tmp_path / "a.tsv", m1)
    write_manifest(tmp_path / "b.tsv", build_manifest(cd))
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    assert manifest_hash(read_manifest(tmp_path / "a.tsv")) == h1
    write_manifest(tmp_path / "a.json", m1)
    assert manifest_hash(read_manifest(tmp_path / "a.json")) == h1
    # mtime alone does not matter
    f = cd / e0.path
    os.utime(f, (1, 1))
    assert manifest_hash(build_manifest(cd)) == h1

    hashes = {h1}

    def changed() -> str:
        h = manifest_hash(build_manifest(cd))
        assert h not in hashes
        hashes.add(h)
        return h

    # added
    extra = cd / "examples" / "BB" / "new.trj_id99_ti1_1_tf1_2.1.png"
    shutil.copy(f, extra)
    changed()
    # relabelled (moved to another label dir)
    extra.rename(cd / "examples" / "GG" / extra.name)
    changed()
    # content edited in place
    data = bytearray((cd / "examples" / "GG" / extra.name).read_bytes())
    img = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)
    img[0, 0] = (1, 2, 3)
    cv2.imwrite(str(cd / "examples" / "GG" / extra.name), img)
    changed()
    # removed
    (cd / "examples" / "GG" / extra.name).unlink()
    assert manifest_hash(build_manifest(cd)) == h1


def test_read_manifest_rejects_other_files(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text("a\tb\n")
    with pytest.raises(TrainsetError, match="not a trainset manifest"):
        read_manifest(p)


# ---------------------------------------------------------------------------------------------------- merge


def test_merge_dedupes_renames_and_never_overwrites(real_classdir, tmp_path):
    src = _copy(real_classdir, tmp_path / "src")
    dest = tmp_path / "dest"
    # dest already holds: one identical image (same name), one different image under a source file's name
    same = sorted((src / "examples" / "BB").iterdir())[0]
    clash = sorted((src / "examples" / "GG").iterdir())[0]
    (dest / "examples" / "BB").mkdir(parents=True)
    (dest / "examples" / "OO").mkdir(parents=True)
    shutil.copy(same, dest / "examples" / "BB" / same.name)
    _write_png(dest / "examples" / "GG" / clash.name, (0, 255, 0))
    clash_before = (dest / "examples" / "GG" / clash.name).read_bytes()

    n = _counts(src)
    rep = merge_trainset(src, dest)
    assert rep.duplicates == {"BB": 1}
    assert rep.copied == {"BB": n["BB"] - 1, "GG": n["GG"], "OO": n["OO"]}
    assert (dest / "examples" / "GG" / clash.name).read_bytes() == clash_before  # not overwritten
    assert len(rep.renamed) == 1 and rep.renamed[0][0] == str(clash)
    renamed = dest / "examples" / "GG" / rep.renamed[0][1]
    assert renamed.read_bytes() == clash.read_bytes() and ".dup1" in renamed.name
    assert parse_example_name(renamed.name)[0] == parse_example_name(clash.name)[0]  # tracklet key survives
    assert f"GG: {n['GG']} copied" in rep.summary() and str(rep) == rep.summary()
    # a second merge copies nothing
    rep2 = merge_trainset(src, dest)
    assert rep2.n_copied == 0 and rep2.n_duplicates == sum(n.values())


def test_merge_refuses_unknown_labels_and_copies_nothing(real_classdir, tmp_path):
    src = _copy(real_classdir, tmp_path / "src")
    dest = tmp_path / "dest"
    for lab in ["BB", "GG", "PP"]:
        (dest / "examples" / lab).mkdir(parents=True)  # registry = label dirs (empty dirs count)
    with pytest.raises(TrainsetError, match=r"label\(s\) OO .*not known.*BB, GG, PP"):
        merge_trainset(src, dest)
    assert not any(p.is_file() for p in (dest / "examples").rglob("*"))
    # mapped → accepted
    rep = merge_trainset(src, dest, label_map={"OO": "PP"})
    n = _counts(src)
    assert rep.copied == {"BB": n["BB"], "GG": n["GG"], "PP": n["OO"]}
    assert not (dest / "examples" / "OO").exists()


def test_merge_allow_new_labels_and_labels_csv_registry(real_classdir, tmp_path):
    src = _copy(real_classdir, tmp_path / "src")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "labels.csv").write_text("BB\tant_labels\nGG\tant_labels\n")
    with pytest.raises(TrainsetError, match="OO"):
        merge_trainset(src, dest)
    rep = merge_trainset(src, dest, allow_new_labels=True)
    assert rep.new_labels == ["OO"] and rep.n_copied == sum(_counts(src).values())


def test_merge_same_image_other_label_is_conflict(real_classdir, tmp_path):
    src = _copy(real_classdir, tmp_path / "src")
    dest = tmp_path / "dest"
    img = sorted((src / "examples" / "OO").iterdir())[0]
    (dest / "examples" / "BB").mkdir(parents=True)
    shutil.copy(img, dest / "examples" / "BB" / "renamed_copy.png")
    rep = merge_trainset(src, dest, allow_new_labels=True)
    assert rep.conflicts == [(str(img), "OO", "BB")]
    assert not (dest / "examples" / "OO" / img.name).exists()
    assert "NOT copied" in rep.summary()


def test_merge_refuse_mode_and_same_dir(real_classdir, tmp_path):
    src = _copy(real_classdir, tmp_path / "src")
    dest = tmp_path / "dest"
    clash = sorted((src / "examples" / "GG").iterdir())[0]
    _write_png(dest / "examples" / "GG" / clash.name, (0, 0, 255))
    (dest / "examples" / "BB").mkdir()
    (dest / "examples" / "OO").mkdir()
    with pytest.raises(TrainsetError, match="overwrite a different file"):
        merge_trainset(src, dest, on_name_clash="refuse")
    assert sum(1 for p in (dest / "examples").rglob("*") if p.is_file()) == 1
    with pytest.raises(TrainsetError, match="same classdir"):
        merge_trainset(src, src)


def test_merge_several_sources_and_expdir(real_classdir, tmp_path):
    a = _copy(real_classdir, tmp_path / "a")
    # b: an experiment dir whose latest session's classifier/ holds a subset of a + one new image
    exp = tmp_path / "expB"
    (exp / "antrax" / "parameters").mkdir(parents=True)
    (exp / "antrax" / "parameters" / "Trck.mat").write_bytes(b"")
    (exp / "antrax" / "parameters" / "labels.csv").write_text("BB\tant_labels\nGG\tant_labels\nOO\tant_labels\n")
    b_ex = exp / "antrax" / "classifier" / "examples"
    shutil.copytree(a / "examples" / "BB", b_ex / "BB")
    _write_png(b_ex / "BB" / "expB.trj_id5_ti1_1_tf1_3.1.png", (10, 20, 250))
    assert resolve_classdir(exp) == exp / "antrax" / "classifier"
    dest = tmp_path / "dest"
    reps = merge_trainsets([a, exp], dest)
    n = _counts(a)
    assert reps[0].n_copied == sum(n.values())
    assert reps[1].copied == {"BB": 1} and reps[1].duplicates == {"BB": n["BB"]}
    assert find_classes(dest / "examples") == ["BB", "GG", "OO"]
    # an expdir as destination: its session labels.csv is the registry
    (a / "examples" / "ZZ").mkdir()
    _write_png(a / "examples" / "ZZ" / "z.png", (1, 1, 1))
    with pytest.raises(TrainsetError, match="ZZ"):
        merge_trainset(a, exp)


# ---------------------------------------------------------------------------------------------------- images


def test_load_example_images_rgb_and_resize(tmp_path):
    p = _write_png(tmp_path / "examples" / "R" / "red.png", (255, 0, 0), size=40)
    exs = [Example(p, "R", "red")]
    x = load_example_images(exs, PreprocessSpec(target_size=20))
    assert x.shape == (1, 20, 20, 3) and x.dtype == np.uint8
    centre = x[0, 10, 10]
    assert centre.tolist() == [255, 0, 0]  # RGB, not cv2's BGR
    assert x[0, 0, 0].tolist() == [255, 255, 255]
    xb = load_example_images(exs, PreprocessSpec(target_size=20, background="black"))
    assert xb[0, 0, 0].tolist() == [0, 0, 0]


def test_load_example_images_real_subset(real_classdir):
    exs = list_examples(real_classdir)
    x = load_example_images(exs, PreprocessSpec(target_size=32))
    assert x.shape == (len(exs), 32, 32, 3)
    assert x.std() > 10  # real content, not blank
    assert (x[:, 0, 0] > 200).all()  # white background in the corners


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "examples" / "BB" / "broken.trj_id1_ti1_1_tf1_2.1.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(TrainsetError, match=r"broken\.trj_id1_ti1_1_tf1_2\.1\.png: cannot be read"):
        load_example_images(list_examples(tmp_path), PreprocessSpec(target_size=16))


def test_trainset_module_does_not_import_tensorflow():
    import subprocess

    code = (
        "import sys, antrax_pipe.trainset; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_merge_killed_half_way_then_run_again_completes(real_classdir, tmp_path):
    """A merge into a new trainset stopped after a few files (a real SIGKILL of the merging process), then the same
    command again: it is not refused for labels "not known to the destination" and ends with every example once."""
    import signal
    import subprocess
    import time

    dest = tmp_path / "dest"
    code = ("import sys, shutil, time\n"
            "import antrax_pipe.trainset as t\n"
            "real = shutil.copyfile\n"
            "def slow(a, b, **k):\n"
            "    time.sleep(0.05)\n"
            "    return real(a, b, **k)\n"
            "t.shutil.copyfile = slow\n"
            f"t.merge_trainset({str(real_classdir)!r}, {str(dest)!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    def done() -> int:  # finished examples (a killed copy leaves a hidden temp file, never an example)
        return len([p for p in dest.glob("examples/*/*.png") if not p.name.startswith(".")])

    while time.time() < deadline and done() < 5:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = done()
    total = sum(_counts(real_classdir).values())
    assert 0 < partial < total, "the merge was not stopped half-way (machine too slow or too fast?)"
    report = merge_trainset(real_classdir, dest)  # no allow_new_labels: the labels were all created up front
    assert report.n_copied + report.n_duplicates == total and report.n_duplicates == partial
    examples = {lab: len([e for e in list_examples(dest) if e.label == lab]) for lab in _counts(real_classdir)}
    assert examples == _counts(real_classdir)
