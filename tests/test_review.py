"""Review loop: stratified, reproducible sampling plan; 'what to label next' ranking on hand-made data; the stage on a
real (synthetic-image) experiment; export only of tracklets a person labelled; judgements never touched."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from fixtures.experiments import build_experiment, synthetic_tracklet
from antrax_pipe.aggregation import AggregationParams
from antrax_pipe.inference import PROBS_FORMAT
from antrax_pipe.io.autoids import write_autoids
from antrax_pipe.model import AntraxFormatError, AutoID, LabelSet
from antrax_pipe.io.review_tables import PLAN_COLUMNS, read_label_next, read_review_plan, write_review_plan
from antrax_pipe.review import REASON_CONFUSED, REASON_LONG_UNKNOWN, REASON_NEAR_THRESHOLD, export_labelled, label_next, length_bin, proportional_allocation, sampling_plan
from antrax_pipe.stages import review_stage

LABELS = LabelSet({"ant_labels": ("A", "B", "C"), "noant_labels": ("NoAnt",), "other_labels": ("Multi", "Unknown")})


def population(n_per: dict[tuple[str, str, int], int]) -> pd.DataFrame:
    """Tracklet table with n tracklets of (label, kind, length) each."""
    rows = []
    i = 0
    for (label, kind, frames), n in n_per.items():
        for _ in range(n):
            i += 1
            rows.append((1 + i % 3, f"trj_id{i}_ti1_1_tf1_{frames}", label, kind, float(frames) * 0.9, frames))
    return pd.DataFrame(rows, columns=["movie", "tracklet", "label", "kind", "score", "frames"])


POP = {("A", "ID", 3): 40, ("A", "ID", 50): 60, ("B", "ID", 50): 50, ("NoAnt", "non-ant", 2): 50,
       ("Unknown", "Unknown", 30): 80, ("Multi", "multi", 20): 20}


# ---------------------------------------------------------------------------------------------- plan


def test_length_bins():
    assert [length_bin(n) for n in (1, 4, 5, 19, 20, 99, 100, 499, 500, 10**6)] == [
        "1-4", "1-4", "5-19", "5-19", "20-99", "20-99", "100-499", "100-499", ">=500", ">=500"]
    assert length_bin(0) == "<1"


def test_proportional_allocation_largest_remainders():
    assert proportional_allocation({"a": 50, "b": 30, "c": 20}, 10) == {"a": 5, "b": 3, "c": 2}
    # quotas 3.5, 2.1, 1.4 → floors 3, 2, 1, one left → largest remainder (a)
    assert proportional_allocation({"a": 50, "b": 30, "c": 20}, 7) == {"a": 4, "b": 2, "c": 1}
    assert proportional_allocation({"a": 2, "b": 1}, 10) == {"a": 2, "b": 1}  # more asked than there are
    assert sum(proportional_allocation({"a": 1, "b": 1, "c": 1}, 2, seed=5).values()) == 2


def test_plan_is_stratified_proportional_and_only_judgeable():
    tt = population(POP)
    plan = sampling_plan(tt, 40, seed=1, experiment="e")
    assert list(plan.columns) == list(PLAN_COLUMNS) and len(plan) == 40
    # judgeable: ID and non-ant = 40 + 60 + 50 + 50 = 200 → 40 drawn = 1 in 5 of every stratum
    assert set(plan.autoID) == {"A", "B", "NoAnt"}
    counts = plan.groupby("stratum").size().to_dict()
    assert counts == {"A|1-4": 8, "A|20-99": 12, "B|20-99": 10, "NoAnt|1-4": 10}
    assert (plan.weight == 5.0).all() and plan.weight.sum() == 200
    assert list(plan.order) == list(range(1, 41)) and plan.tracklet.is_unique
    assert set(plan.tracklet) <= set(tt.tracklet)


def test_plan_is_reproducible_and_stable():
    tt = population(POP)
    a = sampling_plan(tt, 30, seed=1, experiment="e")
    pd.testing.assert_frame_equal(a, sampling_plan(tt, 30, seed=1, experiment="e"))
    assert set(a.tracklet) != set(sampling_plan(tt, 30, seed=2, experiment="e").tracklet)
    # rows in another order: same plan (ranks are hashes of names, not positions)
    pd.testing.assert_frame_equal(a, sampling_plan(tt.sample(frac=1, random_state=3), 30, seed=1, experiment="e"))
    # a larger plan contains the smaller one where the allocation grows in every stratum
    big = sampling_plan(tt, 60, seed=1, experiment="e")
    assert set(a.tracklet) <= set(big.tracklet)


def test_plan_small_sessions_and_bad_n():
    tt = population({("A", "ID", 10): 3, ("Unknown", "Unknown", 10): 5})
    plan = sampling_plan(tt, 200, seed=0)
    assert len(plan) == 3 and (plan.weight == 1).all()
    assert sampling_plan(tt.iloc[0:0], 10).empty
    with pytest.raises(ValueError, match="n must be"):
        sampling_plan(tt, -1)


def test_plan_file_round_trip_and_never_over_a_foreign_file(tmp_path):
    plan = sampling_plan(population(POP), 20, seed=0)
    p = write_review_plan(tmp_path / "review_plan.csv", plan)
    back = read_review_plan(p)
    assert list(back.tracklet) == list(plan.tracklet) and list(back.n_frames) == list(plan.n_frames)
    write_review_plan(p, plan.head(5))  # our own earlier plan may be replaced
    assert len(read_review_plan(p)) == 5
    foreign = tmp_path / "mine.csv"
    foreign.write_text("tracklet,comment\nx,keep me\n")
    with pytest.raises(AntraxFormatError, match="mine.csv.*not a review plan"):
        write_review_plan(foreign, plan)
    assert "keep me" in foreign.read_text()
    marks = tmp_path / "validation.csv"
    with pytest.raises(AntraxFormatError, match="validation marks"):
        write_review_plan(marks, plan)
    assert not marks.exists()


# ---------------------------------------------------------------------------------------------- label next

TT = pd.DataFrame([
    (1, "u_long", "Unknown", "Unknown", 0.0, 200),
    (1, "u_mid", "Unknown", "Unknown", 0.0, 40),
    (1, "u_short", "Unknown", "Unknown", 0.0, 6),  # below 2 × short_length = 10: not "long"
    (1, "a_near", "A", "ID", 18.0, 20),
    (1, "b_far", "B", "ID", 30.0, 30),
    (2, "c_conf", "C", "ID", 50.0, 60),
    (2, "u_near", "Unknown", "Unknown", 0.0, 12),
    (2, "in_trainset", "Unknown", "Unknown", 0.0, 500),
], columns=["movie", "tracklet", "label", "kind", "score", "frames"])
GATES = pd.DataFrame([
    ("u_long", 1, "A", 0.5, 150, "A", "B", 0.1),
    ("u_mid", 1, "B", 0.6, 40, "B", "A", 0.3),
    ("u_short", 1, "A", 0.7, 6, "A", "B", 0.1),
    ("a_near", 1, "A", 0.92, 20, "A", "C", 0.05),  # 0.02 above 0.9 (band above 0.05)
    ("b_far", 1, "B", 0.99, 30, "B", "A", 0.01),
    ("c_conf", 2, "C", 0.97, 60, "C", "A", 0.4),  # C vs A: the most confused pair
    ("u_near", 2, "A", 0.85, 12, "A", "B", 0.25),  # 0.05 below 0.9 (band below 0.15); A vs B: 2nd pair
    ("in_trainset", 2, "A", 0.3, 500, "A", "B", 0.1),
], columns=["tracklet", "movie", "pred_label", "gate", "n_gate", "candidate", "runner_up", "runner_up_share"])


def test_label_next_reasons_priorities_and_interleaving():
    nxt = label_next(TT, GATES, AggregationParams(), confused_pairs=[("A", "C"), ("A", "B")],
                     exclude={"in_trainset"})
    by = nxt.set_index("tracklet")
    assert "in_trainset" not in by.index and "u_short" not in by.index and "b_far" not in by.index
    # first of each list, round robin: long Unknown (u_long 200), near threshold (a_near: 20·(1-0.4)=12 vs
    # u_near: 12·(1-1/3)=8), confused (c_conf: 60·0.4·1 = 24 vs u_near: 12·0.25·½ = 1.5)
    assert list(nxt.tracklet[:3]) == ["u_long", "a_near", "c_conf"]
    assert list(nxt["rank"]) == list(range(1, len(nxt) + 1))
    assert by.at["a_near", "priority"] == pytest.approx(12.0)
    assert by.at["c_conf", "reason"] == REASON_CONFUSED and "C vs A" in by.at["c_conf", "detail"]
    # u_near qualifies three times and is listed once, with every reason
    assert set(by.at["u_near", "reason"].split("; ")) == {REASON_LONG_UNKNOWN, REASON_NEAR_THRESHOLD, REASON_CONFUSED}
    assert by.at["u_long", "reason"] == REASON_LONG_UNKNOWN and by.at["u_long", "n_frames"] == 200
    assert set(nxt.tracklet) == {"u_long", "u_mid", "a_near", "c_conf", "u_near"}
    assert len(label_next(TT, GATES, AggregationParams(), top=2)) == 2
    only_unknown = label_next(TT, None, AggregationParams())
    assert set(only_unknown.reason) == {REASON_LONG_UNKNOWN}


def test_label_next_empty():
    out = label_next(TT.iloc[0:0], None, AggregationParams())
    assert out.empty and "reason" in out.columns


# ---------------------------------------------------------------------------------------------- stage + export

CLASSES = ["A", "B", "C", "Multi", "NoAnt", "Unknown"]


def write_probs(path: Path, tracklets: dict[str, np.ndarray]) -> Path:
    names = list(tracklets)
    ys = [np.asarray(tracklets[n], np.float32) for n in names]
    with h5py.File(path, "w") as f:
        f.create_dataset("probs", data=np.concatenate(ys))
        f.create_dataset("offsets", data=np.cumsum([0] + [len(y) for y in ys]).astype(np.int64))
        f.create_dataset("tracklets", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("part", data=np.zeros(len(names), np.int32))
        f.create_dataset("classes", data=np.array(CLASSES, dtype=object), dtype=h5py.string_dtype())
        f.attrs["format"] = PROBS_FORMAT
        f.attrs["format_version"] = 1
        f.attrs["image_files"] = json.dumps(["images_1.mat"])
    return path


def onehot(label: str, p: float, n: int) -> np.ndarray:
    y = np.full((n, len(CLASSES)), (1 - p) / (len(CLASSES) - 1), np.float32)
    y[:, CLASSES.index(label)] = p
    return y


@pytest.fixture()
def session(tmp_path):
    items = [("A", synthetic_tracklet(12, seed=1)), ("B", synthetic_tracklet(3, seed=2)),
             ("NoAnt", synthetic_tracklet(2, seed=3)), ("Unknown", synthetic_tracklet(30, seed=4))]
    built = build_experiment(tmp_path, "expR", {1: items}, LABELS, with_passed=False)
    names = {lab: t for t, lab in built.truth[1].items()}
    probs = {names["A"]: onehot("A", 0.97, 12), names["B"]: onehot("B", 0.999, 3),
             names["NoAnt"]: onehot("NoAnt", 0.9, 2), names["Unknown"]: onehot("A", 0.6, 30)}
    pf = write_probs(tmp_path / "probs_1.h5", probs)
    write_autoids(built.sessiondir / "labels" / "autoids_1.csv",
                  [AutoID(names["A"], "A", 11.6, 3), AutoID(names["B"], "B", 3.0, 1), AutoID(names["NoAnt"], "NoAnt"),
                   AutoID(names["Unknown"], "Unknown")])
    return built, names, pf


def test_stage_writes_plan_and_label_next_and_leaves_marks_alone(session):
    built, names, pf = session
    cls = built.sessiondir / "classifier"
    cls.mkdir(exist_ok=True)
    marks = cls / "validation.csv"
    marks.write_text(f"tracklet,movie,autoID,mark,n_frames,timestamp\n{names['A']},1,A,correct,12,t\n")
    before = marks.read_bytes()
    plan_p, next_p = review_stage(built.sessiondir, built.session, [1], {1: pf}, cls / "review_plan.csv",
                                  cls / "label_next.csv", {"min_conf": 0.9}, n=200, seed=0)
    plan = read_review_plan(plan_p)
    assert set(plan.tracklet) == {names["A"], names["B"], names["NoAnt"]}  # all judgeable ones (fewer than 200)
    assert dict(zip(plan.tracklet, plan.n_frames)) == {names["A"]: 12, names["B"]: 3, names["NoAnt"]: 2}
    nxt = read_label_next(next_p)
    assert list(nxt.tracklet) == [names["Unknown"]]  # 30 frames Unknown, gate 0.6 (not near 0.9)
    assert nxt.reason[0] == REASON_LONG_UNKNOWN and nxt.candidate[0] == "A"
    assert marks.read_bytes() == before
    # a tracklet already in the trainset is not suggested again
    ex = cls / "examples" / "A"
    ex.mkdir(parents=True)
    (ex / f"expR.{names['Unknown']}.5.png").write_bytes(b"")
    review_stage(built.sessiondir, built.session, [1], {1: pf}, plan_p, next_p, {"min_conf": 0.9})
    assert read_label_next(next_p).empty


def test_export_only_what_a_person_labelled(session):
    built, names, _ = session
    decisions = pd.DataFrame({"tracklet": [names["Unknown"], names["A"]], "label": ["B", ""], "movie": [1, 1]})
    res = export_labelled(built.expdir, decisions, session=built.session)
    assert [r["tracklet"] for r in res] == [names["Unknown"]]
    ex = built.sessiondir / "classifier" / "examples"
    assert sorted(p.parent.name for p in ex.rglob("*.png")) == ["B"] * 30
    # the same images under another label are refused (one image in two classes spoils training)
    with pytest.raises(AntraxFormatError, match="already exported under another label"):
        export_labelled(built.expdir, {names["Unknown"]: "C"}, session=built.session)
    with pytest.raises(AntraxFormatError, match="not in labels.csv|label"):
        export_labelled(built.expdir, {names["A"]: "Zebra"}, session=built.session)
    assert export_labelled(built.expdir, {names["A"]: "  "}, session=built.session) == []


# ---------------------------------------------------------------------------------------------- workflow wiring

REPO = Path(__file__).resolve().parents[1]


def test_review_rules_plan_into_the_workflow(tmp_path):
    """Dry run of a copy of the workflow with rules/review.smk included (as the Snakefile will): the review, validate
    and coverage_error jobs are planned for every experiment / classifier; the rule file is snakefmt-clean."""
    import shutil
    import subprocess
    import sys

    import yaml

    for d in ("workflow", "demo", "profiles"):
        shutil.copytree(REPO / d, tmp_path / d, symlinks=True)
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "experiments.tsv", tmp_path / "config" / "experiments.tsv")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["review"] = {"n": 50, "seed": 3}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakefile = tmp_path / "workflow" / "Snakefile"
    text = snakefile.read_text()
    if "rules/review.smk" not in text:
        text = text.replace('include: "rules/report.smk"\n',
                            'include: "rules/report.smk"\ninclude: "rules/review.smk"\n')
    if "all_review()" not in text:
        text = text.replace("        report_html(),\n", "        report_html(),\n        all_review(),\n"
                                                        "        all_validation(),\n")
    snakefile.write_text(text)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(tmp_path), "-n",
           "--cores", "1", "--quiet", "rules"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    for rule in ("review", "validate", "coverage_error"):
        assert rule in res.stdout
    res = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory",
                          str(tmp_path), "-n", "--cores", "1", "--printshellcmds", "--debug-dag",
                          "--quiet", "host"],  # replaces the default profile's quiet rules: the job blocks are read
                         capture_output=True, text=True)
    assert "results/sessions/colonyA/classifier/review_plan.csv" in res.stdout + res.stderr
    assert "results/validation/general/validation.h5" in res.stdout + res.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", str(REPO / "workflow" / "rules" / "review.smk")],
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr
