"""The app's review lists and its statistics over marks that still judge the current classification.

Review lists (``/api/pool?source=…``): the workflow's ``classifier/review_plan.csv`` (a stratified random sample:
judge it in its order to estimate the error as anTraX's Table 2 did) and ``classifier/label_next.csv`` (what to
label next), in their file order, and ``stale`` — tracklets whose marks judged another autoID or another classifier
and were not judged again since ("re-check changed tracklets").

Statistics count one mark per tracklet (the newest current one, whoever made it); stale marks are counted apart,
and every classifier that was judged gets its own line (a retrain is compared with the classifier before it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..io.marks import latest_per_tracklet
from ..io.review_tables import read_label_next, read_review_plan
from ..review import PLAN_DEFINITIONS, plan_estimates
from ..stats import Rate, WeightedRate, validation_stats
from .errors import AppError

#: ``source`` values of ``/api/pool``: the seeded random order, the workflow's two lists, the re-check list.
SOURCES: tuple[str, ...] = ("random", "review_plan", "label_next", "stale")
LIST_FILES: dict[str, str] = {"review_plan": "review_plan.csv", "label_next": "label_next.csv"}
#: Columns of a list file passed on with each tracklet.
LIST_EXTRAS: dict[str, tuple[str, ...]] = {"review_plan": ("order", "stratum", "weight"),
                                           "label_next": ("rank", "reason", "detail")}

#: A judge: the stale reason of a mark row, None when it is current.
Judge = Callable[[Mapping[str, str]], "str | None"]


def _plain(v: Any) -> Any:
    """A JSON-safe scalar (numpy → Python; NaN → None)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read_list(classdir: Path, source: str) -> list[dict[str, Any]]:
    """The rows of a review list file in file order: ``movie``, ``tracklet`` and the list's own columns."""
    path = Path(classdir) / LIST_FILES[source]
    if not path.is_file():
        raise AppError(404, f"{path} not found: the workflow's review rule writes it (run the workflow, e.g. "
                            f"antrax-pipe classify, on this experiment)")
    df = read_review_plan(path) if source == "review_plan" else read_label_next(path)
    out = []
    for r in df.to_dict("records"):
        try:
            movie = int(r["movie"])
        except (TypeError, ValueError):
            raise AppError(422, f"{path}: tracklet {r['tracklet']!r} has movie {r['movie']!r}") from None
        out.append({"movie": movie, "tracklet": str(r["tracklet"]),
                    **{k: _plain(r[k]) for k in LIST_EXTRAS[source] if k in r}})
    return out


def read_plan(classdir: Path) -> pd.DataFrame | None:
    path = Path(classdir) / LIST_FILES["review_plan"]
    return read_review_plan(path) if path.is_file() else None


def mark_state(rows: Iterable[Mapping[str, str]], annotator: str, judge: Judge) -> dict[str, Any]:
    """What the page shows of one tracklet's marks: this annotator's own (a mark without annotator counts as own),
    whether it is stale and why, and the other annotators' marks."""
    rows = list(rows)
    own = next((r for r in rows if r.get("annotator", "") == annotator), None)
    own = own or next((r for r in rows if not r.get("annotator")), None)
    why = judge(own) if own else None
    return {"mark": own["mark"] if own else "", "stale": why is not None, "stale_reason": why,
            "marked_by": (own.get("annotator") or "") if own else "", "marked_autoID": own.get("autoID", "") if own
            else "", "marked_at": own.get("timestamp", "") if own else "",
            "others": [{"annotator": r.get("annotator", ""), "mark": r["mark"], "stale": judge(r) is not None}
                       for r in rows if r is not own]}


def rate_json(pair: tuple[Rate, Rate]) -> dict[str, Any]:
    return {k: {"value": r.value, "k": r.k, "n": r.n, "text": r.format()} for k, r in zip(("tracklets", "frames"), pair)}


def weighted_json(r: WeightedRate) -> dict[str, Any]:
    return {"value": r.value, "ci": list(r.ci) if r.ci else None, "k": r.k, "n": r.n, "n_eff": r.n_eff,
            "text": r.format()}


def _n_frames(r: Mapping[str, str]) -> int:
    try:
        return int(r.get("n_frames") or 0)
    except ValueError:
        return 0


def marks_summary(rows: list[dict[str, str]], judge: Judge) -> dict[str, Any]:
    """Current marks (one per tracklet), the stale ones apart, per classifier and per annotator."""
    verdicts = [(r, judge(r)) for r in rows]
    current = latest_per_tracklet(r for r, why in verdicts if why is None)
    stale_rows = [(r, why) for r, why in verdicts if why is not None]
    stale = {t: (r, why) for r, why in stale_rows if (t := r["tracklet"]) not in current}
    vs = validation_stats((r["mark"], _n_frames(r)) for r in current.values())
    per_clf: dict[str, list[tuple[dict[str, str], str | None]]] = {}
    for r, why in verdicts:
        per_clf.setdefault(r.get("classifier_sha256", "") or "", []).append((r, why))
    classifiers = []
    for sha, items in per_clf.items():
        latest = latest_per_tracklet(r for r, _ in items)
        cvs = validation_stats((r["mark"], _n_frames(r)) for r in latest.values())
        classifiers.append({"classifier": sha, "short": sha[:12] if sha else "unknown", "marks": len(items),
                            "tracklets": len(latest), "stale": sum(why is not None for _, why in items),
                            "counts": cvs.counts, "wrong_id": rate_json(cvs.wrong_id)})
    annotators: dict[str, int] = {}
    for r in rows:
        annotators[r.get("annotator", "") or "(none)"] = annotators.get(r.get("annotator", "") or "(none)", 0) + 1
    return {"current": current, "stale": stale, "n_stale_marks": len(stale_rows), "stats": vs,
            "classifiers": classifiers, "annotators": annotators}


def plan_json(plan: pd.DataFrame, current: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The review plan's estimates (plan weights applied) from the current marks, for the side panel."""
    est = plan_estimates(plan, {t: r["mark"] for t, r in current.items()})
    return {"planned": est["planned"], "judged": est["judged"], "strata": est["strata"],
            "estimates": {k: {**weighted_json(v), "definition": PLAN_DEFINITIONS[k]}
                          for k, v in est["estimates"].items()}}

