"""The ``antrax-pipe`` verbs as a user types them: ``merge-trainset`` and ``train`` with every flag, bad inputs.

Real examples from the committed demo trainsets (colonyA/colonyB), real Snakemake + TensorFlow underneath ``train``
(tiny: T=32, 1–2 epochs). ``classify`` is exercised in ``test_workflow.py`` and ``extract-trainset`` in
``test_app.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from antrax_pipe.io.classifier import read_card
from antrax_pipe.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "experiments"


def demo_classdir(dest: Path, colony: str, labels: list[str], per_label: int = 12) -> Path:
    """A classdir with the first ``per_label`` examples of some labels of a demo colony's trainset."""
    for lab in labels:
        src = DEMO / colony / "antrax" / "classifier" / "examples" / lab
        (dest / "examples" / lab).mkdir(parents=True)
        for f in sorted(src.iterdir())[:per_label]:
            shutil.copy(f, dest / "examples" / lab / f.name)
    return dest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The console script's module, in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "antrax_pipe.cli", *args], capture_output=True, text=True,
                          cwd=REPO)


def files(classdir: Path) -> dict[str, bytes]:
    """The trainset's files (the hidden lock file a merge leaves next to examples/ is not content)."""
    return {str(p.relative_to(classdir)): p.read_bytes() for p in sorted(classdir.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


# ---------------------------------------------------------------------------------------------------- merge-trainset


def test_merge_trainset_cli_counts_dedupes_and_refuses(tmp_path):
    src = demo_classdir(tmp_path / "src", "colonyB", ["BB", "PB", "NoAnt"], per_label=5)
    dest = demo_classdir(tmp_path / "dest", "colonyA", ["BB", "PB"], per_label=5)
    before = files(dest)

    # NoAnt is not a label of dest: refused, nothing copied, the message names the label and the way out
    res = run_cli("merge-trainset", str(src), str(dest))
    assert res.returncode == 2
    assert "NoAnt" in res.stderr and "--allow-new-labels" in res.stderr and "--map" in res.stderr
    assert files(dest) == before

    # allowed: per-label counts printed, every source file copied, no dest file changed
    res = run_cli("merge-trainset", str(src), str(dest), "--allow-new-labels")
    assert res.returncode == 0, res.stderr
    assert "BB: 5 copied" in res.stdout and "NoAnt: 5 copied" in res.stdout and "new labels: NoAnt" in res.stdout
    after = files(dest)
    assert all(after[k] == v for k, v in before.items())
    assert len(after) == len(before) + 15

    # again: all duplicates, nothing copied
    res = run_cli("merge-trainset", str(src), str(dest))
    assert res.returncode == 0 and "total: 0 copied, 15 duplicate(s) skipped" in res.stdout
    assert files(dest) == after


def test_merge_trainset_cli_map_and_bad_map(tmp_path):
    src = demo_classdir(tmp_path / "src", "colonyB", ["PO"], per_label=4)
    dest = demo_classdir(tmp_path / "dest", "colonyA", ["PP"], per_label=2)
    res = run_cli("merge-trainset", str(src), str(dest), "--map", "PO=PP")
    assert res.returncode == 0, res.stderr
    assert "PP: 4 copied" in res.stdout and not (dest / "examples" / "PO").exists()
    bad = run_cli("merge-trainset", str(src), str(dest), "--map", "PO")
    assert bad.returncode == 2 and "--map takes OLD=NEW" in bad.stderr and "'PO'" in bad.stderr
    missing = run_cli("merge-trainset", str(tmp_path / "nope"), str(dest))
    assert missing.returncode == 2 and str(tmp_path / "nope") in missing.stderr


# ---------------------------------------------------------------------------------------------------------- train


@pytest.mark.slow
def test_train_cli_every_flag_then_incremental(tmp_path):
    """``train`` with every option, then an incremental run that continues the installed classifier."""
    cd = demo_classdir(tmp_path / "classdir", "colonyA", ["BB", "PG", "PP"], per_label=12)
    wd = tmp_path / "work"
    common = ["--workdir", str(wd), "--cores", "2", "--threads", "2", "--", "--quiet"]
    res = run_cli("train", str(cd), "--scratch", "--ne", "2", "--arch", "small", "--target-size", "32",
                  "--hsymmetry", "--aug-options", "rotation_range=10,zoom_range=0.05", "--name", "mynet",
                  "--seed", "3", *common)
    assert res.returncode == 0, res.stderr[-3000:]
    model = cd / "mynet.h5"  # where anTraX puts it (the workflow's classifier dir links to CLASSDIR)
    assert model.is_file()
    card = read_card(model)
    assert card.arch == "small" and card.target_size == 32 and sorted(card.classes) == ["BB", "PG", "PP"]
    tr = card.training
    assert card.hsymmetry is True and tr["seed"] == 3 and tr["incremental"] is False
    assert tr["epochs_run"] <= 2
    assert tr["temperature"] == 1.0 and "calibration" not in card.metrics  # default: no temperature calibration
    assert tr["aug_options"]["rotation_range"] == 10 and tr["aug_options"]["zoom_range"] == 0.05
    log = next((wd / "results" / "logs" / "train").rglob("mynet.log")).read_text()
    assert "epoch 1/" in log.lower() and "epoch 2/" in log.lower()  # per-epoch progress in the job log
    first = model.read_bytes()

    # incremental (the default): continues from CLASSDIR/mynet.h5 even from a fresh workdir, as anTraX does
    wd2 = tmp_path / "work2"
    res = run_cli("train", str(cd), "--ne", "1", "--name", "mynet", "--workdir", str(wd2),
                  "--cores", "2", "--threads", "2", "--", "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    log2 = next((wd2 / "results" / "logs" / "train").rglob("mynet.log")).read_text()
    assert f"continuing {model}" in log2 or "continuing" in log2
    card2 = read_card(model)
    assert card2.training["incremental"] is True and card2.arch == "small" and card2.target_size == 32
    assert card2.hsymmetry is True  # stored settings of the continued model are kept
    assert model.read_bytes() != first


@pytest.mark.slow
def test_train_cli_custom_modelfile(tmp_path):
    """``--arch custom --modelfile`` builds the user's Keras JSON model (its input size decides T)."""
    pytest.importorskip("keras")
    import keras

    cd = demo_classdir(tmp_path / "classdir", "colonyA", ["BB", "PG"], per_label=8)
    inp = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    mf = tmp_path / "mine.json"
    mf.write_text(keras.Model(inp, out).to_json())
    res = run_cli("train", str(cd), "--scratch", "--ne", "1", "--arch", "custom", "--modelfile", str(mf),
                  "--workdir", str(tmp_path / "work"), "--", "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    card = read_card(cd / "classifier.h5")
    assert card.arch == "custom" and card.target_size == 24


def test_train_cli_bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("train", str(empty), "--workdir", str(tmp_path / "w"))
    assert res.returncode == 2 and str(empty) in res.stderr and "examples/" in res.stderr
    cd = demo_classdir(tmp_path / "classdir", "colonyA", ["BB", "PG"], per_label=2)
    res = run_cli("train", str(cd), "--aug-options", "rotation_range=10,sparkle=1", "--workdir", str(tmp_path / "w"))
    assert res.returncode == 2 and "sparkle" in res.stderr
    res = run_cli("train", str(cd), "--arch", "resnet", "--workdir", str(tmp_path / "w"))
    assert res.returncode == 2 and "resnet" in res.stderr
    assert not (cd / "classifier.h5").exists()


def test_train_cli_dry_run_installs_nothing(tmp_path):
    cd = demo_classdir(tmp_path / "classdir", "colonyA", ["BB", "PG"], per_label=2)
    res = run_cli("train", str(cd), "--dry", "--workdir", str(tmp_path / "w"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "train" in res.stdout + res.stderr
    assert not (cd / "classifier.h5").exists()
    # the CLI wrote the workflow config it ran (for the record)
    cfgs = list((tmp_path / "w" / "cli-runs").rglob("config.yaml"))
    assert len(cfgs) == 1 and "classdir" in cfgs[0].read_text()


def test_every_option_has_help_and_every_verb_an_example():
    from antrax_pipe import __version__
    from antrax_pipe.cli import build_parser

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    assert set(verbs) == {"classify", "train", "merge-trainset", "extract-trainset"}
    for name, sp in verbs.items():
        assert [a.dest for a in sp._actions if not a.help] == [], name
        assert "example:" in sp.format_help() and f"antrax-pipe {name}" in sp.format_help()
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"antrax-pipe {__version__}"
