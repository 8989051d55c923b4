"""The report's first screen: per experiment session, the numbers a biologist decides on and what to do next.

The numbers: assignment rate (the classifier alone, before solve), the estimated ID error with its exact interval
and n (from the review plan when it has judged ID tracklets — a random sample, plan weights applied — else from all
current marks, which need not be random), current and stale marks, ID conflicts (one ID on two tracklets seen at the
same time) and failed movies. The decision (:func:`decide`) compares the error with :data:`MAX_ERROR`: ready for
anTraX's solve when the whole 95 % interval is below it, "label next, retrain" when the estimate is above it, "judge
more" when the interval still straddles it. Then the blobs behind the numbers (:func:`blobs_section`): thumbnails of
the wrongly marked tracklets, of the most confused ID pairs and of the top of "label next".
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..conflicts import Conflict, find_conflicts
from ..model import ClassifierCard, TrackletName
from ..results import MarkStatus, SessionResult, summary_totals
from ..review import plan_estimates
from ..stats import WeightedRate, fmt_pct, most_confused, weighted_rate
from .html import pct
from .thumbs import thumb

#: Largest acceptable ID error (fraction): "ready for solve" needs the upper end of the 95 % interval below it.
MAX_ERROR = 0.05
#: Thumbnails per block.
MAX_WRONG_THUMBS = 8
MAX_NEXT_THUMBS = 6
MAX_PAIRS = 3
MARK_WORDS = {"correct": "correct", "wrong": "wrong ID", "ambig": "should not have an ID", "falseneg": "is an ant",
              "trueneg": "not an ant"}


@dataclass
class ErrorEstimate:
    """The ID error (wrong / (correct + wrong)) the verdict uses and where it comes from."""

    rate: WeightedRate | None
    source: str  # "review plan" | "marks" | ""
    plan: dict[str, Any] | None = None


@dataclass
class Verdict:
    """The decision for one session: ``level`` ok / warn / bad, a headline and the next steps (HTML)."""

    level: str
    headline: str
    steps: list[str] = field(default_factory=list)


def error_estimate(session: SessionResult, status: MarkStatus | None) -> ErrorEstimate:
    """From the review plan's judged ID tracklets (weighted) when there are any, else from every current mark."""
    if status is None:
        return ErrorEstimate(None, "")
    current = dict(zip(status.current["tracklet"], status.current["mark"]))
    plan = None
    if session.review_plan is not None and len(session.review_plan):
        plan = plan_estimates(session.review_plan, current)
        if plan["estimates"]["error"].n:
            return ErrorEstimate(plan["estimates"]["error"], "review plan", plan)
    m = status.current["mark"].to_numpy()
    rate = weighted_rate(m == "wrong", np.isin(m, ["correct", "wrong"]), np.ones(len(m)))
    return ErrorEstimate(rate if rate.n else None, "marks" if rate.n else "", plan)


def session_conflicts(session: SessionResult) -> list[Conflict]:
    """ID conflicts of the session's autoIDs (:func:`antrax_pipe.conflicts.find_conflicts`)."""
    rows = [a for m in sorted(session.autoids) for a in session.autoids[m]]
    return find_conflicts(rows, session.labels.ant_labels)


def _where(session: SessionResult) -> str:
    """The experiment directory for a command line (relative to the working directory when inside it)."""
    if session.expdir is None:
        return "EXPDIR"
    try:
        return html.escape(str(Path(session.expdir).resolve().relative_to(Path.cwd().resolve())))
    except ValueError:
        return html.escape(str(session.expdir))


def _app(session: SessionResult) -> str:
    return f"<code>antrax-pipe extract-trainset {_where(session)}</code>"


def decide(session: SessionResult, n_failed: int, est: ErrorEstimate, n_stale: int, n_conflicts: int,
           max_error: float = MAX_ERROR) -> Verdict:
    """What to do next (see the module docstring); steps in the order to do them."""
    v = Verdict("ok", "Ready for anTraX solve")
    where = _where(session)
    n_next = len(session.label_next) if session.label_next is not None else 0
    plan = est.plan
    progress = f" ({plan['judged']} of {plan['planned']} judged so far)" if plan else ""
    r = est.rate
    if n_failed:
        v = Verdict("bad", f"{n_failed} movie(s) failed: fix them first")
        v.steps.append(f"Re-run the failed movie(s) (reasons under “Classification per movie”): "
                       f"<code>antrax-pipe classify {where} --missing</code>.")
    if r is None:
        if v.level == "ok":
            v = Verdict("warn", "ID error not measured yet")
        v.steps.append(f"Judge the tracklets of the review plan in the app ({_app(session)}, List: review plan)"
                       f"{progress}; anTraX judged 200 random points per dataset." if session.review_plan is not None
                       else f"Mark tracklets in the app ({_app(session)}); the workflow's review rule writes a "
                            f"random review plan for an unbiased estimate.")
    elif r.value is not None and r.value > max_error:
        if v.level == "ok":
            v = Verdict("warn", f"ID error above {fmt_pct(max_error, 0)}: not ready for solve")
        v.steps.append(f"Label the top of “label next” in the app (List: label next; {n_next} suggested), retrain "
                       f"(<code>antrax-pipe train CLASSDIR</code>), re-classify (<code>antrax-pipe classify "
                       f"{where}</code>), then re-check the changed tracklets (List: re-check changed tracklets).")
    elif r.ci is None or r.ci[1] > max_error:
        if v.level == "ok":
            v = Verdict("warn", f"ID error probably below {fmt_pct(max_error, 0)}, not yet sure")
        hi = fmt_pct(r.ci[1]) if r.ci else "n/a"
        if plan and plan["judged"] >= plan["planned"]:
            v.steps.append(f"All {plan['planned']} planned tracklets are judged and the 95 % interval still reaches "
                           f"{hi}: draw a larger review plan (workflow option <code>review: n</code>) and judge it "
                           f"in the app, or mark more tracklets ({_app(session)}).")
        else:
            done = f"; {plan['judged']} of {plan['planned']} judged so far" if plan else ""
            v.steps.append(f"Judge more tracklets of the review plan (the 95 % interval reaches {hi}{done}): "
                           f"{_app(session)}, List: review plan.")
    if n_stale:
        if v.level == "ok":
            v = Verdict("warn", "Re-check the re-classified tracklets first")
        v.steps.append(f"{n_stale} marked tracklet(s) were re-classified since: re-check them in the app "
                       f"(List: re-check changed tracklets); their old marks are not counted.")
    if n_conflicts:
        v.steps.append(f"{n_conflicts} ID conflict(s): one ID on two tracklets seen at the same time; anTraX's solve "
                       f"has to undo each (see “Classification per movie”).")
    if v.level == "ok":
        v.steps.append("Run anTraX's solve on this experiment: the autoIDs are in <code>labels/</code>.")
    return v


def _tile(title: str, big: str, small: str, level: str = "") -> str:
    return (f'<div class="tile{f" tile-{level}" if level else ""}"><div class="tile-title">{html.escape(title)}</div>'
            f'<div class="tile-big">{big}</div><div class="tile-small">{small}</div></div>')


def verdict_section(i: int, session: SessionResult, summary: pd.DataFrame, status: MarkStatus | None,
                    max_error: float = MAX_ERROR) -> str:
    """The first-screen block of one session: verdict, the numbers as tiles, the next steps."""
    tot = summary_totals(summary)
    n_failed = int(summary.status.isin(["failed", "missing"]).sum())
    est = error_estimate(session, status)
    n_stale = len(status.stale) if status is not None else 0
    conflicts = session_conflicts(session)
    v = decide(session, n_failed, est, n_stale, len(conflicts), max_error)
    tiles = [_tile("assignment rate", pct(tot["assignment_rate"]),
                   f"of ant-tracklet frames given an ID ({pct(tot['assignment_rate_tracklets'])} of tracklets), "
                   f"before solve")]
    r = est.rate
    if r is None:
        tiles.append(_tile("estimated ID error", "not measured", "no judged ID tracklet yet", "warn"))
    else:
        ci = f"95 % CI {fmt_pct(r.ci[0])[:-2]}–{fmt_pct(r.ci[1])}" if r.ci else "no interval"
        src = ("from the review plan (random sample, weighted)" if est.source == "review plan"
               else "from all current marks (not a random sample)")
        tiles.append(_tile("estimated ID error", fmt_pct(r.value),
                           f"{ci}; n = {r.n} judged ID tracklets; {src}",
                           "bad" if r.value is not None and r.value > max_error else ""))
    n_cur = len(status.current) if status is not None else 0
    who = sorted({a for a in status.current_rows["annotator"] if a}) if status is not None else []
    tiles.append(_tile("validation marks", f"{n_cur} current",
                       f"{n_stale} stale (re-classified since, not counted)"
                       + (f"; by {html.escape(', '.join(who))}" if who else ""), "warn" if n_stale else ""))
    if conflicts:
        movies = len({TrackletName.parse(c.tracklet).movie for c in conflicts})
        tiles.append(_tile("ID conflicts", str(len(conflicts)),
                           f"pairs of overlapping tracklets with one ID, in {movies} movie(s)", "warn"))
    if n_failed:
        tiles.append(_tile("failed movies", f"{n_failed} of {len(summary)}", "movies without autoIDs", "bad"))
    steps = "".join(f"<li>{s}</li>" for s in v.steps)
    return (f'<section class="verdict verdict-{v.level}" id="v{i}"><h2 class="verdict-head">'
            f'<a href="#s{i}">{html.escape(session.name)}</a>: {html.escape(v.headline)}</h2>'
            f'<div class="tiles">{"".join(tiles)}</div><div class="next"><b>What to do next</b><ol>{steps}</ol>'
            f"</div></section>")


# --------------------------------------------------------------------------------------------------------------------
# The blobs behind the numbers
# --------------------------------------------------------------------------------------------------------------------


def _best_of(tt: pd.DataFrame, label: str) -> tuple[int, str] | None:
    sub = tt[tt.label == label]
    if sub.empty:
        return None
    r = sub.sort_values(["score", "tracklet"], ascending=[False, True]).iloc[0]
    return int(r.movie), str(r.tracklet)


def _confused_pairs(card: ClassifierCard | None, session: SessionResult) -> list[tuple[str, str, int, float]]:
    if card is None:
        return []
    metrics = card.metrics if isinstance(card.metrics, dict) else {}
    val = metrics.get("validation") if isinstance(metrics.get("validation"), dict) else {}
    conf = val.get("confusion_tracklets") or val.get("confusion_images") or metrics.get("confusion")
    try:
        cm = np.asarray(conf, dtype=float)
    except (TypeError, ValueError):
        return []
    classes = list(card.classes)
    if cm.ndim != 2 or cm.shape != (len(classes), len(classes)):
        return []
    return most_confused(cm, classes, among=session.labels.ant_labels, top=4 * MAX_PAIRS)


def blobs_section(session: SessionResult, status: MarkStatus | None, tt: pd.DataFrame,
                  card: ClassifierCard | None) -> str:
    """Thumbnails of wrongly marked tracklets, of the most confused ID pairs (the best-scored tracklet of each ID)
    and of the top of "label next"; "" when the session's images are not available or there is nothing to show."""
    if not session.images:
        return ""
    movie = dict(zip(tt.tracklet, tt.movie))
    blocks = []
    if status is not None:
        bad = status.current[status.current["mark"].isin(["wrong", "ambig", "falseneg"])].head(MAX_WRONG_THUMBS)
        figs = [thumb(session.images, movie.get(r.tracklet, -1), r.tracklet,
                      f"<b>{html.escape(MARK_WORDS[r.mark])}</b>: autoID {html.escape(r.autoID)}<br>"
                      f"<small>{html.escape(r.tracklet)}</small>") for r in bad.itertuples()]
        if any(figs):
            blocks.append(f"<h4>Marked wrong ({len(bad)} shown)</h4><div class=\"thumbs\">{''.join(figs)}</div>")
    pairs: dict[frozenset, list[tuple[str, str, int, float]]] = {}
    for cell in _confused_pairs(card, session):  # both directions of a pair shown once
        if frozenset(cell[:2]) in pairs or len(pairs) < MAX_PAIRS:
            pairs.setdefault(frozenset(cell[:2]), []).append(cell)
    rows = []
    for cells in pairs.values():
        a, b = cells[0][:2]
        figs = [thumb(session.images, *best, f"<b>{html.escape(lab)}</b> (its best-scored tracklet)<br><small>"
                      f"{html.escape(best[1])}</small>") for lab in (a, b) if (best := _best_of(tt, lab))]
        if any(figs):
            what = "; ".join(f"{html.escape(x)} taken for {html.escape(y)}: {n} validation cases ({fmt_pct(f)} of "
                             f"{html.escape(x)})" for x, y, n, f in cells)
            rows.append(f"<p>{what}</p><div class=\"thumbs\">{''.join(figs)}</div>")
    if rows:
        blocks.append("<h4>Most confused ID pairs</h4>" + "".join(rows))
    if session.label_next is not None and len(session.label_next):
        figs = [thumb(session.images, int(r["movie"]), str(r["tracklet"]),
                      f"<b>#{html.escape(str(r.get('rank', k + 1)))}</b> {html.escape(str(r.get('reason', '')))}"
                      f"<br><small>{html.escape(str(r.get('detail', '')))}</small>")
                for k, r in enumerate(session.label_next.head(MAX_NEXT_THUMBS).to_dict("records"))]
        if any(figs):
            blocks.append(f"<h4>Top of “label next”</h4><div class=\"thumbs\">{''.join(figs)}</div>")
    if not blocks:
        return ""
    return "<h3>The blobs behind the numbers</h3>" + "".join(blocks)


def verdict_screen(items: Sequence[tuple[int, SessionResult, pd.DataFrame, MarkStatus | None]],
                   max_error: float = MAX_ERROR) -> str:
    """The report's first screen: one verdict block per session."""
    if not items:
        return ""
    head = (f'<p class="small">Ready for anTraX solve = the whole 95 % interval of the ID error is below '
            f"{fmt_pct(max_error, 0)}; only marks that judge the current classification are counted.</p>")
    return '<div id="verdict">' + "".join(verdict_section(i, s, summ, st, max_error)
                                         for i, s, summ, st in items) + head + "</div>"

