"""Review loop: which tracklets a person should judge (sampling plan) and which to label next (trainset growth).

**Sampling plan** (``classifier/review_plan.csv``). Error rates from validation marks are only as good as the way the
marked tracklets were chosen: browsing picks the easy, long ones. The plan draws N tracklets *at random*, stratified
by label and length bin, with **proportional allocation** (each stratum gets its share of N by largest remainders),
so the sample is self-weighting: the rates the report computes from the marks estimate the session's rates without
re-weighting (``weight`` = stratum size ÷ tracklets drawn from it is written anyway). Only tracklets a person can
judge are drawn: ID labels (Correct / Wrong / Should not have an ID) and non-ant labels (Is an ant / Not an ant),
as in anTraX's app. Reproducible and stable: within a stratum tracklets are ranked by a seeded hash of
``<experiment>:<tracklet>``, so the same seed gives the same plan, and re-classifying keeps the picks of strata
that did not change. The plan holds no judgement (those live in ``classifier/validation.csv``, written only by the
app); rebuilding it never touches the marks.

**What to label next** (``classifier/label_next.csv``): tracklets whose examples would help the classifier most,
each with its reason — ``long Unknown`` (long tracklets the rule left Unknown: many frames the solve cannot seed),
``near threshold`` (the gate value is close to ``min_conf``: a better model moves them across it), ``confused
pair`` (the two largest ID sums are a pair the validation confusion matrix confuses most). Reasons are interleaved
(round robin) so every kind of need is represented; tracklets already in the trainset are skipped. Nothing is
labelled automatically: :func:`export_labelled` exports only tracklets a person gave a label, through the same
checked export as the app (never overwrites a different file, refuses a tracklet already exported under another
label). The files themselves are :mod:`antrax_pipe.io.review_tables`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .aggregation import AggregationParams, ClassRoles, tracklet_decision
from .io.examples import parse_example_name
from .io.experiment import load_experiment, read_movies_info, select_movies
from .io.images import ImagesFile
from .io.labels import read_labels
from .io.probabilities import ProbabilitiesFile
from .io.review_tables import NEXT_COLUMNS, PLAN_COLUMNS
from .model import AntraxFormatError, LabelSet, TrackletName
from .stats import KIND_ID, KIND_NONANT, KIND_UNKNOWN, WeightedRate, most_confused, weighted_rate
from .trainset import export_frame_numbers, export_images, refresh_manifest

log = logging.getLogger(__name__)

#: Lower edges of the length bins (frames): 1–4 (below anTraX's short length 5), 5–19, 20–99, 100–499, ≥ 500.
LENGTH_EDGES: tuple[int, ...] = (1, 5, 20, 100, 500)
REVIEW_KINDS: tuple[str, ...] = (KIND_ID, KIND_NONANT)
REASON_LONG_UNKNOWN = "long Unknown"
REASON_NEAR_THRESHOLD = "near threshold"
REASON_CONFUSED = "confused pair"


def _rank(seed: int, *parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).hexdigest()


def length_bin(n_frames: int, edges: Sequence[int] = LENGTH_EDGES) -> str:
    """The length bin of a tracklet, e.g. ``5-19`` or ``>=500`` (frames)."""
    edges = sorted(edges)
    if n_frames < edges[0]:
        return f"<{edges[0]}"
    for lo, hi in zip(edges, edges[1:]):
        if lo <= n_frames < hi:
            return f"{lo}-{hi - 1}"
    return f">={edges[-1]}"


def proportional_allocation(sizes: Mapping[str, int], n: int, seed: int = 0) -> dict[str, int]:
    """Split ``n`` draws over strata in proportion to their sizes (Hamilton / largest remainders; remainder ties
    broken by a seeded hash of the stratum name), never more than a stratum holds."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    quota = {s: n * k / total for s, k in sizes.items()}
    alloc = {s: int(math.floor(q)) for s, q in quota.items()}
    left = n - sum(alloc.values())
    order = sorted(sizes, key=lambda s: (-(quota[s] - alloc[s]), _rank(seed, "stratum", s)))
    for s in order[:left]:
        alloc[s] += 1
    return alloc


def sampling_plan(tracklets: pd.DataFrame, n: int, seed: int = 0, experiment: str = "",
                  kinds: Iterable[str] = REVIEW_KINDS, edges: Sequence[int] = LENGTH_EDGES) -> pd.DataFrame:
    """Draw ``n`` tracklets for review from a tracklet table (columns ``movie``, ``tracklet``, ``label``, ``kind``,
    ``score``, ``frames``, as :func:`antrax_pipe.report.tracklet_table` makes), stratified by label × length bin.

    Returns the plan in judging order (``order`` 1…; a seeded shuffle, so a person who stops early has judged a
    random subset), with ``stratum`` (``<label>|<length bin>``), its size, the number drawn from it and ``weight`` =
    size ÷ drawn. Fewer than ``n`` rows when the session has fewer judgeable tracklets.
    """
    if n < 0:
        raise ValueError(f"review plan: n must be ≥ 0, got {n}")
    kinds = tuple(kinds)
    pool = tracklets[tracklets["kind"].isin(kinds)].copy()
    pool = pool.drop_duplicates("tracklet", keep="first")
    pool["stratum"] = [f"{lab}|{length_bin(int(f), edges)}" for lab, f in zip(pool["label"], pool["frames"])]
    pool["_rank"] = [_rank(seed, experiment, t) for t in pool["tracklet"]]
    sizes = pool.groupby("stratum").size().to_dict()
    alloc = proportional_allocation(sizes, n, seed)
    picked = []
    for s, k in sorted(alloc.items()):
        if k:
            picked.append(pool[pool["stratum"] == s].sort_values("_rank").head(k))
    if picked:
        plan = pd.concat(picked, ignore_index=True)
    else:
        plan = pool.iloc[0:0].copy()
    plan["stratum_size"] = plan["stratum"].map(sizes).astype("int64")
    plan["stratum_drawn"] = plan["stratum"].map(alloc).astype("int64")
    plan["weight"] = plan["stratum_size"] / plan["stratum_drawn"]
    plan["_order"] = [_rank(seed, "order", experiment, t) for t in plan["tracklet"]]
    plan = plan.sort_values("_order").reset_index(drop=True)
    plan["order"] = np.arange(1, len(plan) + 1, dtype=np.int64)
    plan = plan.rename(columns={"label": "autoID", "frames": "n_frames"})
    return plan[list(PLAN_COLUMNS)].astype({"movie": "int64", "n_frames": "int64", "score": "float64"})


#: The plan's estimates (anTraX's Table 2 way): name → (marks counted as the event, marks in the denominator).
PLAN_ESTIMATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "error": (("wrong",), ("correct", "wrong")),
    "false_positive": (("ambig",), ("correct", "wrong", "ambig")),
    "assignment": (("correct", "wrong"), ("correct", "wrong", "falseneg")),
    "false_negative": (("falseneg",), ("falseneg", "trueneg")),
}
#: What each estimate means, for the app and the report.
PLAN_DEFINITIONS: dict[str, str] = {
    "error": "wrong ID: wrong / (correct + wrong)",
    "false_positive": "ID that should not be: should-not-have-an-ID / (correct + wrong + should-not)",
    "assignment": "ants given an ID: (correct + wrong) / (correct + wrong + is-an-ant), among judged ant tracklets "
                  "(Unknown and multi tracklets are not in the plan)",
    "false_negative": "called non-ant, is an ant: is-an-ant / (is-an-ant + not-an-ant)",
}


def plan_estimates(plan: pd.DataFrame, marks: Mapping[str, str]) -> dict[str, Any]:
    """The review plan's estimates from the current marks (``marks``: tracklet → mark, one per tracklet): how many
    planned tracklets are judged, and per estimate of :data:`PLAN_ESTIMATES` a :class:`~antrax_pipe.stats.WeightedRate`
    with the plan's ``weight`` (stratum size ÷ drawn; 1 when the plan has none) applied — the rate of the session's
    judgeable tracklets, as anTraX estimated error from randomly drawn points (its Table 2)."""
    tracklets = plan["tracklet"].astype(str).tolist()
    w = (pd.to_numeric(plan["weight"], errors="coerce").fillna(1.0).to_numpy(float) if "weight" in plan.columns
         else np.ones(len(plan)))
    judged = [marks.get(t, "") for t in tracklets]
    out: dict[str, Any] = {"planned": len(tracklets), "judged": sum(bool(m) for m in judged),
                           "strata": int(plan["stratum"].nunique()) if "stratum" in plan.columns else None,
                           "estimates": {}}
    for name, (event, among) in PLAN_ESTIMATES.items():
        est: WeightedRate = weighted_rate([m in event for m in judged], [m in among for m in judged], w)
        out["estimates"][name] = est
    return out


# --------------------------------------------------------------------------------------------------------------------
# What to label next
# --------------------------------------------------------------------------------------------------------------------

GATE_COLUMNS: tuple[str, ...] = ("tracklet", "movie", "pred_label", "gate", "n_gate", "candidate", "runner_up",
                                 "runner_up_share")


def tracklet_gates(probs_file: str | Path, labels: LabelSet, params: AggregationParams, movie: int) -> pd.DataFrame:
    """Per tracklet of a probabilities file: the rule's ungated label, its gate value and frame count
    (:func:`antrax_pipe.aggregation.tracklet_decision`), and the two IDs with the largest probability sums over the
    ant frames (``candidate``, ``runner_up``) with the runner-up's share of the ID sum (0.5 = a coin toss)."""
    rows = []
    with ProbabilitiesFile(probs_file) as pf:
        classes = pf.classes
        roles = ClassRoles.build(classes, labels)
        for tracklet, y in pf:
            if len(y) == 0:
                rows.append((tracklet, movie, "Unknown", math.nan, 0, "", "", math.nan))
                continue
            pred, gate, n_gate = tracklet_decision(y, classes, labels, params)
            ant = roles.ant[np.asarray(y).argmax(axis=1)]
            cand = runner = ""
            share = math.nan
            if ant.any() and len(roles.ant_cols) >= 2:
                s = np.asarray(y, dtype=np.float64)[ant][:, roles.ant_cols].sum(axis=0)
                order = np.argsort(-s, kind="stable")
                cand, runner = classes[roles.ant_cols[order[0]]], classes[roles.ant_cols[order[1]]]
                share = float(s[order[1]] / s.sum()) if s.sum() > 0 else math.nan
            rows.append((tracklet, movie, pred, gate, n_gate, cand, runner, share))
    return pd.DataFrame(rows, columns=list(GATE_COLUMNS)).astype({"gate": "float64", "n_gate": "int64",
                                                                  "runner_up_share": "float64"})


def trainset_tracklets(examples_dir: str | Path, experiment: str) -> set[str]:
    """Tracklet names of ``experiment`` that already have images under ``examples_dir/<label>/`` (any label)."""
    d = Path(examples_dir)
    if not d.is_dir():
        return set()
    out = set()
    for ldir in d.iterdir():
        if ldir.is_dir():
            for p in ldir.iterdir():
                _, exp, trk, _ = parse_example_name(p.name)
                if exp == experiment and trk:
                    out.add(trk)
    return out


def label_next(tracklets: pd.DataFrame, gates: pd.DataFrame | None, params: AggregationParams,
               confused_pairs: Iterable[tuple[str, str]] = (), top: int = 50, exclude: Iterable[str] = (),
               band: tuple[float, float] = (0.15, 0.05), min_unknown_frames: int | None = None,
               min_runner_up_share: float = 0.2) -> pd.DataFrame:
    """Rank tracklets whose labelled examples would help most (see the module docstring).

    ``tracklets``: the session's tracklet table (``movie``, ``tracklet``, ``label``, ``kind``, ``score``,
    ``frames``); ``gates``: :func:`tracklet_gates` rows (None: only ``long Unknown`` is possible);
    ``confused_pairs``: (true, predicted) ID pairs, most confused first (either order matches);
    ``band`` = (below, above) ``min_conf`` that counts as near; ``min_unknown_frames`` defaults to
    ``2 × short_length``. Priority within a reason: long Unknown → frames; near threshold → frames ×
    (1 − distance/band); confused pair → frames × runner-up share × rank weight of the pair. Reasons are interleaved
    round robin; a tracklet listed for several reasons appears once, with all of them.
    """
    excl = set(exclude)
    tt = tracklets[~tracklets["tracklet"].isin(excl)].drop_duplicates("tracklet")
    min_unk = int(min_unknown_frames if min_unknown_frames is not None else max(2 * params.short_length, 1))
    cands: dict[str, list[tuple[float, str, dict[str, Any]]]] = {REASON_LONG_UNKNOWN: [], REASON_NEAR_THRESHOLD: [],
                                                                  REASON_CONFUSED: []}
    unk = tt[(tt["kind"] == KIND_UNKNOWN) & (tt["frames"] >= min_unk)]
    g = gates.set_index("tracklet") if gates is not None and len(gates) else None
    for r in unk.itertuples():
        info: dict[str, Any] = {"detail": f"{int(r.frames)} frames left Unknown"}
        if g is not None and r.tracklet in g.index and g.at[r.tracklet, "candidate"]:
            info["detail"] += f"; best ID guess {g.at[r.tracklet, 'candidate']}"
        cands[REASON_LONG_UNKNOWN].append((float(r.frames), r.tracklet, info))
    if g is not None:
        lo, hi = params.min_conf - band[0], params.min_conf + band[1]
        known = tt.set_index("tracklet")
        pairs = [tuple(p[:2]) for p in confused_pairs]
        pair_w = {}
        for i, (a, b) in enumerate(pairs):
            w = 1.0 / (1 + i)
            pair_w.setdefault(frozenset((a, b)), w)
        for t, r in g.iterrows():
            if t not in known.index or t in excl:
                continue
            frames = float(known.at[t, "frames"])
            if np.isfinite(r["gate"]) and lo <= r["gate"] < hi:
                dist = abs(r["gate"] - params.min_conf) / (band[0] if r["gate"] < params.min_conf else band[1])
                side = "below" if r["gate"] < params.min_conf else "above"
                cands[REASON_NEAR_THRESHOLD].append((frames * (1 - min(dist, 1.0)), t, {
                    "detail": f"gate {r['gate']:.3f} {side} min_conf {params.min_conf:g}"}))
            if r["candidate"] and r["runner_up"]:
                w = pair_w.get(frozenset((r["candidate"], r["runner_up"])))
                share = r["runner_up_share"]
                if w is not None and np.isfinite(share) and share >= min_runner_up_share:
                    cands[REASON_CONFUSED].append((frames * share * w, t, {
                        "detail": f"{r['candidate']} vs {r['runner_up']} (runner-up {100 * share:.0f} % of the ID "
                                  f"probability)"}))
    return _pick(cands, top, tt, g)


def _pick(cands: Mapping[str, list[tuple[float, str, dict[str, Any]]]], top: int, tt: pd.DataFrame,
          g: pd.DataFrame | None) -> pd.DataFrame:
    """Order each reason's candidates by priority (ties: tracklet name), interleave them round robin up to ``top``,
    and name every reason a picked tracklet qualifies for."""
    ordered = {k: sorted(v, key=lambda c: (-c[0], c[1])) for k, v in cands.items()}
    picked: dict[str, dict[str, Any]] = {}
    queues = [list(v) for v in ordered.values()]
    names = list(ordered)
    while len(picked) < top and any(queues):
        for reason, q in zip(names, queues):
            while q:
                prio, t, info = q.pop(0)
                if t in picked:
                    picked[t]["reason"] += f"; {reason}"
                    picked[t]["detail"] += f"; {info['detail']}"
                    continue
                picked[t] = {"tracklet": t, "reason": reason, "priority": prio, "detail": info["detail"]}
                break
            if len(picked) >= top:
                break
    # a tracklet picked for one reason may also qualify for others further down their lists: name them too
    for reason, items in ordered.items():
        for prio, t, info in items:
            if t in picked and reason not in picked[t]["reason"]:
                picked[t]["reason"] += f"; {reason}"
                picked[t]["detail"] += f"; {info['detail']}"
    if not picked:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in NEXT_COLUMNS})
    out = pd.DataFrame(list(picked.values()))
    base = tt.set_index("tracklet")
    out["movie"] = [int(base.at[t, "movie"]) for t in out["tracklet"]]
    out["autoID"] = [base.at[t, "label"] for t in out["tracklet"]]
    out["n_frames"] = [int(base.at[t, "frames"]) for t in out["tracklet"]]
    out["score"] = [float(base.at[t, "score"]) for t in out["tracklet"]]
    for col, src in (("gate", "gate"), ("candidate", "candidate"), ("runner_up", "runner_up")):
        out[col] = [g.at[t, src] if g is not None and t in g.index else (math.nan if col == "gate" else "")
                    for t in out["tracklet"]]
    out["rank"] = np.arange(1, len(out) + 1, dtype=np.int64)
    return out[list(NEXT_COLUMNS)]


def _decision_rows(decisions: Mapping[str, str] | pd.DataFrame) -> list[tuple[str, str, Any]]:
    """(tracklet, label, movie or None) of every decision; an empty label means "not decided yet"."""
    if isinstance(decisions, pd.DataFrame):
        if "tracklet" not in decisions.columns or "label" not in decisions.columns:
            raise AntraxFormatError("export_labelled: the decisions table needs 'tracklet' and 'label' columns")
        return [(str(r["tracklet"]), "" if pd.isna(r["label"]) else str(r["label"]).strip(), r.get("movie"))
                for r in decisions.to_dict("records")]
    return [(str(t), str(lab or "").strip(), None) for t, lab in decisions.items()]


def _movie_of(tracklet: str, movie: Any, suggested: Mapping[str, Any]) -> int:
    if movie is None or (isinstance(movie, float) and math.isnan(movie)) or movie == "":
        movie = suggested.get(tracklet)
    if movie is None:
        try:
            movie = TrackletName.parse(tracklet).movie
        except ValueError as exc:
            raise AntraxFormatError(f"export_labelled: tracklet {tracklet!r}: no movie given and {exc}") from exc
    return int(movie)


def _first_frames(exp: Any) -> dict[int, int]:
    """Movie → first absolute frame from movies_info.txt ({} without it: export names then use movie frames)."""
    try:
        df = read_movies_info(exp.parameters_dir / "movies_info.txt")
    except (AntraxFormatError, ValueError, TypeError):
        return {}
    return {int(m): int(v) for m, v in zip(df["index"], df["fi"])}


def _read_tracklet(exp: Any, movie: int, tracklet: str) -> np.ndarray:
    mi = select_movies(exp, None).get(movie)
    for part in (mi.parts if mi else ()):
        with ImagesFile(part) as f:
            if tracklet in f.tracklets:
                return f.read(tracklet, white_bg=True)
    raise AntraxFormatError(f"{exp.images_dir}: no tracklet {tracklet!r} in movie {movie}")


def export_labelled(expdir: str | Path, decisions: Mapping[str, str] | pd.DataFrame, session: str | None = None,
                    suggestions: pd.DataFrame | None = None) -> list[dict]:
    """Export the images of tracklets **a person gave a label** to ``classifier/examples/<label>/``.

    ``decisions``: tracklet → label, or a table with ``tracklet``, ``label`` (and ``movie``) columns; rows with an
    empty label are skipped (no decision yet). The movie comes from the table, else from ``suggestions`` (a
    label-next list), else from the tracklet name. Each export goes through the same checks as the app's
    (:func:`antrax_pipe.trainset.export_images`): labels must be in labels.csv, different files are never
    overwritten, a tracklet already exported under another label is refused. Returns one result per export.
    """
    exp = load_experiment(expdir, session)
    labels = read_labels(exp.labels_file)
    suggested = {}
    if suggestions is not None and len(suggestions):
        suggested = dict(zip(suggestions["tracklet"].astype(str), suggestions["movie"]))
    first = _first_frames(exp)
    examples_dir = exp.classdir / "examples"
    results = []
    for tracklet, label, movie in _decision_rows(decisions):
        if not label:
            continue
        if label not in labels.all_labels:
            raise AntraxFormatError(f"{exp.expdir}: tracklet {tracklet!r} → {label!r}: label {label!r} is not in "
                                    f"{exp.labels_file} (labels: {', '.join(labels.all_labels)})")
        m = _movie_of(tracklet, movie, suggested)
        images = _read_tracklet(exp, m, tracklet)
        numbers, mode = export_frame_numbers(tracklet, len(images), first.get(m))
        try:
            written, skipped = export_images(examples_dir, exp.name, tracklet, label, images, numbers)
        except AntraxFormatError as exc:
            raise AntraxFormatError(f"{exp.expdir}: tracklet {tracklet!r} → {label!r}: {exc}") from exc
        manifest = refresh_manifest(exp.classdir) if written else None
        log.info("exported %s → %s: %d written, %d already there", tracklet, label, len(written), len(skipped))
        results.append({"tracklet": tracklet, "label": label, "dir": str(examples_dir / label), "written": written,
                        "skipped": skipped, "frame_mode": mode, "manifest": manifest})
    return results


# --------------------------------------------------------------------------------------------------------------------
# Confused pairs
# --------------------------------------------------------------------------------------------------------------------


def confused_pairs_of(card: Any, labels: LabelSet, top: int = 5) -> list[tuple[str, str]]:
    """Most-confused ID pairs of a classifier card's validation confusion matrix (tracklet-level if recorded)."""
    metrics = getattr(card, "metrics", None) or {}
    val = metrics.get("validation") if isinstance(metrics.get("validation"), Mapping) else {}
    cm = val.get("confusion_tracklets") or val.get("confusion_images") or metrics.get("confusion")
    if cm is None:
        return []
    cm = np.asarray(cm, dtype=float)
    classes = list(card.classes)
    if cm.shape != (len(classes), len(classes)):
        return []
    ids = [c for c in classes if c in labels.ant_labels]
    return [(a, b) for a, b, _, _ in most_confused(cm, classes, among=ids, top=top)]


