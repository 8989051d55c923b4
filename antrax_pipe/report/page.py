"""The report page: first the verdict per session (:mod:`.verdict`: the numbers to decide on, what to do next), then
one section per session (the blobs behind the numbers, classification per movie, ground truth, validation marks with
the stale ones apart, review plan, what to label next), the model card, the definitions, and :func:`build_report`,
which writes the page. Only marks that judge the current classification are counted anywhere."""

from __future__ import annotations

import datetime as _dt
import functools
import html
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._version import __version__
from ..io.atomic import atomic_write_text
from ..io.heldout import read_validation
from ..model import ClassifierCard
from ..results import (
    KIND_SLUG,
    MarkStatus,
    SessionResult,
    mark_status,
    marks_table,
    summarize_session,
    summary_totals,
    tracklet_table,
)
from ..review import PLAN_DEFINITIONS, plan_estimates
from ..stats import (
    KIND_ID,
    KIND_MULTI,
    KIND_NONANT,
    KIND_UNKNOWN,
    KIND_UNLISTED,
    KINDS,
    annotator_agreement,
    fmt_pct,
    rate_pair,
    truth_stats,
    validation_stats,
)
from .card import card_section
from .html import RATE_HEADER, Html, fmt_param, is_missing, kv_table, note, pct, rate_rows, table
from .plots import plot_label_distribution, plot_lengths, plot_per_movie, plot_scores
from .verdict import MAX_ERROR, blobs_section, session_conflicts, verdict_screen

#: Parameter names under which the aggregation's short-tracklet length (anTraX: < 5 ant frames → ``min_conf_short``)
#: is looked up, to mark it on the tracklet-length plot.
SHORT_LEN_KEYS: tuple[str, ...] = ("short_len", "min_conf_short_len", "short_frames", "short_length")


@functools.cache
def _css() -> str:
    """The page's style sheet (package data, inlined so that the page needs no other file)."""
    return resources.files(__package__).joinpath("style.css").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------------
# Session sections
# --------------------------------------------------------------------------------------------------------------------


def per_movie_distributions(tt: pd.DataFrame) -> pd.DataFrame:
    """Per movie: tracklet length quartiles (all tracklets and ID tracklets) and the quartiles of score ÷ frames of ID
    tracklets (NaN where a movie has none)."""
    rows = []
    for m, sub in tt.groupby("movie", sort=True):
        ids = sub[sub.kind == KIND_ID]
        conf = (ids.score / ids.frames.clip(lower=1)).clip(0, 1)
        q = (lambda v, p: float(np.percentile(v, p)) if len(v) else math.nan)
        rows.append({"movie": int(m), "tracklets": len(sub), "length_p25": q(sub.frames, 25),
                     "length_median": q(sub.frames, 50), "length_p75": q(sub.frames, 75),
                     "length_max": int(sub.frames.max()), "id_tracklets": len(ids),
                     "id_length_median": q(ids.frames, 50), "id_conf_p25": q(conf, 25),
                     "id_conf_median": q(conf, 50), "id_conf_p75": q(conf, 75)})
    return pd.DataFrame(rows, columns=["movie", "tracklets", "length_p25", "length_median", "length_p75",
                                       "length_max", "id_tracklets", "id_length_median", "id_conf_p25",
                                       "id_conf_median", "id_conf_p75"])


def _short_len(params: Mapping[str, Any] | None) -> float | None:
    """The short-tracklet length among the parameters (the first of :data:`SHORT_LEN_KEYS` given), else None."""
    for key in SHORT_LEN_KEYS:
        v = (params or {}).get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not is_missing(v):
            return float(v)
    return None


def _summary_section(session: SessionResult, summary: pd.DataFrame, tt: pd.DataFrame,
                     params: Mapping[str, Any] | None) -> str:
    kinds_shown = [k for k in KINDS if k in (KIND_ID, KIND_NONANT, KIND_MULTI, KIND_UNKNOWN)
                   or summary[f"tracklets_{KIND_SLUG[k]}"].fillna(0).sum() > 0]
    header = ["movie", "status", "tracklets", "frames"]
    for k in kinds_shown:
        header += [f"{k} tracklets", f"{k} frames"]
    header += ["assignment rate (frames)", "assignment rate (tracklets)"]

    def row(r: Mapping[str, Any], movie: Any, status: Any) -> list[Any]:
        cells = [movie, status, r["tracklets"], r["frames"]]
        for k in kinds_shown:
            cells += [r[f"tracklets_{KIND_SLUG[k]}"], r[f"frames_{KIND_SLUG[k]}"]]
        return cells + [pct(r["assignment_rate"]), pct(r["assignment_rate_tracklets"])]

    rows = [row(r, r["movie"], r["status"]) for r in summary.to_dict("records")]
    classes = [("bad" if s in ("failed", "missing") else "warn" if s == "empty" else "") for s in summary.status]
    if len(summary):
        rows.append(row(summary_totals(summary), Html("<b>all</b>"), ""))
        classes.append("total")
    parts = [table(header, rows, cls="num", row_classes=classes)]
    failed = summary[summary.status.isin(["failed", "missing"])]
    if len(failed):
        items = "".join(f"<li>movie {int(r.movie)} ({html.escape(r.status)}): <code>{html.escape(str(r.error))}"
                        f"</code></li>" for r in failed.itertuples())
        parts.append(note(f"<b>{len(failed)} movie(s) without classification:</b><ul>{items}</ul>", "bad"))
    empty = summary[summary.status == "empty"]
    if len(empty):
        parts.append(note("autoids file without rows for movie(s) " + ", ".join(str(m) for m in empty.movie)
                          + " — anTraX's MATLAB reader stops at such a file.", "warn"))
    conflicts = session_conflicts(session)
    if conflicts:
        ex = conflicts[0]
        parts.append(note(f"<b>{len(conflicts)} ID conflict(s)</b>: the same ID on two tracklets whose frames overlap "
                          f"(one ant cannot be in two places), e.g. {html.escape(ex.label)} on "
                          f"<code>{html.escape(ex.tracklet)}</code> and <code>{html.escape(ex.other)}</code> "
                          f"({ex.overlap_frames} frames). anTraX's solve has to undo each.", "warn"))
    unlisted = sorted(tt.label[tt.kind == KIND_UNLISTED].unique())
    if unlisted:
        parts.append(note("labels in no labels.csv category (classifier and labels.csv out of sync?): "
                          + ", ".join(f"<code>{html.escape(u)}</code>" for u in unlisted), "warn"))
    if tt.empty:
        parts.append(note("no classified tracklet in this session: no plots."))
        return "".join(parts)
    parts.append(plot_label_distribution(tt, session.labels, session.name))
    score = plot_scores(tt, session.name)
    parts.append(score if score else note("no tracklet was given an ID: no score plot."))
    lengths = plot_lengths(tt, session.name, _short_len(params))
    if lengths:
        parts.append(lengths)
    dist = per_movie_distributions(tt)
    if len(dist):
        parts.append("<p>Per movie: tracklet length (frames) and, for ID tracklets, score ÷ frames (quartiles):</p>")
        parts.append(table(
            ["movie", "tracklets", "length 25 %", "length median", "length 75 %", "longest", "ID tracklets",
             "ID length median", "ID score÷frames 25 %", "median", "75 %"],
            [[r.movie, r.tracklets, r.length_p25, r.length_median, r.length_p75, r.length_max, r.id_tracklets,
              r.id_length_median, r.id_conf_p25, r.id_conf_median, r.id_conf_p75] for r in dist.itertuples()],
            cls="num"))
        per_movie = plot_per_movie(tt, session.name)
        if per_movie:
            parts.append(per_movie)
    return "".join(parts)


def _truth_section(session: SessionResult, tt: pd.DataFrame) -> str:
    predicted = dict(zip(tt.tracklet, tt.label))
    frames = dict(zip(tt.tracklet, tt.frames.astype(int)))
    ts = truth_stats(predicted, frames, session.truth or {}, session.labels)
    parts = [kv_table([("tracklets compared (classified and in the truth)", ts.n_compared),
                       ("in the truth but not classified", ts.n_truth_only),
                       ("classified but not in the truth", ts.n_predicted_only)])]
    parts.append(table(RATE_HEADER, rate_rows([
        ("ID error", "given ID ≠ true ID, among true-ID tracklets given an ID", ts.id_error),
        ("assignment", "given any ID, among true-ID tracklets", ts.assignment),
        ("correct ID", "given the true ID, among true-ID tracklets", ts.correct_id),
        ("non-ID given ID", "given an ID, among tracklets whose true label is not an ID", ts.non_id_given_id),
    ])))
    kinds = [k for k in KINDS if sum(ts.crosstab[k].values()) or sum(ts.crosstab[a][k] for a in KINDS)]
    if kinds:
        parts.append("<p>Tracklets by true kind (rows) and predicted kind (columns):</p>")
        parts.append(table(["true \\ predicted", *kinds], [[a, *(ts.crosstab[a][b] for b in kinds)] for a in kinds],
                           cls="num"))
    return "".join(parts)


def _validation_section(session: SessionResult, status: MarkStatus, tt: pd.DataFrame) -> str:
    """Counts and rates over the current marks (one per tracklet), the stale ones apart, per classifier, the review
    plan's estimates, agreement between annotators."""
    marks = status.current
    vs = validation_stats(zip(marks["mark"], marks["n_frames"]))
    parts = []
    if len(status.stale):
        reasons = status.stale["reason"].value_counts()
        parts.append(note(f"<b>{len(status.stale)} marked tracklet(s) are stale</b> ({status.n_stale_marks} mark(s) "
                          f"judged another autoID or classifier than the current one, e.g. "
                          f"<code>{html.escape(str(status.stale['tracklet'].iloc[0]))}</code>: "
                          f"{html.escape(str(reasons.index[0]))}): not counted below. Re-check them in the app "
                          f"(List: re-check changed tracklets).", "warn"))
    parts.append(f"<p>{len(marks)} tracklets with a current mark (one mark per tracklet: the newest), "
                 f"{len(status.stale)} stale.</p>")
    parts.append(table(["mark", "meaning", "tracklets", "frames"], [
        ["correct", "ID label correct", vs.counts["correct"], vs.frames["correct"]],
        ["wrong", "ID label wrong", vs.counts["wrong"], vs.frames["wrong"]],
        ["ambig", "has an ID but should not", vs.counts["ambig"], vs.frames["ambig"]],
        ["falseneg", "called non-ant, is an ant", vs.counts["falseneg"], vs.frames["falseneg"]],
        ["trueneg", "called non-ant, is not an ant", vs.counts["trueneg"], vs.frames["trueneg"]],
        [Html("<b>all</b>"), "", sum(vs.counts.values()), sum(vs.frames.values())],
    ], cls="num"))
    parts.append(table(RATE_HEADER, rate_rows([
        ("wrong ID", "wrong / (correct + wrong)", vs.wrong_id),
        ("false positive", "ambig / (ambig + correct + wrong)", vs.false_positive),
        ("false negative", "falseneg / (falseneg + trueneg)", vs.false_negative),
    ])))
    if not tt.empty:
        kinds = tt.kind.to_numpy()
        assigned = np.isin(kinds, [KIND_ID, KIND_NONANT])
        r = rate_pair(assigned, np.ones(len(tt), bool), tt.frames.to_numpy())
        parts.append(table(RATE_HEADER, rate_rows([
            ("classified (validate-app 'assigned')", "ID or non-ant label, among all classified tracklets", r)])))
    if session.review_plan is not None:
        parts.append(_review_plan_part(session.review_plan, marks))
    parts.append(_classifier_part(session, status))
    parts.append(_agreement_part(status))
    kind_of = dict(zip(tt.tracklet, tt.kind))
    inconsistent = [t for t, m in zip(marks.tracklet, marks.mark) if t in kind_of and (
        (m in ("correct", "wrong", "ambig") and kind_of[t] != KIND_ID)
        or (m in ("falseneg", "trueneg") and kind_of[t] != KIND_NONANT))]
    if inconsistent:
        parts.append(note(f"{len(inconsistent)} mark(s) without a recorded autoID do not fit the tracklet's current "
                          f"label kind (e.g. <code>{html.escape(inconsistent[0])}</code>): the classification "
                          f"changed since validation?", "warn"))
    return "".join(parts)


def _classifier_part(session: SessionResult, status: MarkStatus) -> str:
    """Marks per classifier they judged (a retrain is compared with the classifier before it)."""
    allm = pd.concat([status.current_rows.assign(_stale=False), status.stale.assign(_stale=True)],
                     ignore_index=True)
    if allm.empty or set(allm["classifier_sha256"]) == {""}:
        return ""
    now = set(session.classifiers.values())
    rows = []
    for sha, sub in allm.groupby("classifier_sha256", sort=False):
        vs = validation_stats(zip(sub["mark"], sub["n_frames"]))
        rows.append([Html(f"<code>{html.escape(sha[:12])}</code>") if sha else "not recorded",
                     "yes" if sha in now else "no", len(sub), int(sub["_stale"].sum()), vs.wrong_id[0].format()])
    return ("<p>Marks per classifier they judged (<i>current</i> = produced the autoIDs now in "
            "<code>labels/</code>):</p>" + table(["classifier (sha256)", "current", "tracklets marked", "stale",
                                                 "wrong ID (per tracklet, exact 95 % CI)"], rows, cls="num"))


def _agreement_part(status: MarkStatus) -> str:
    """Agreement between annotators on the tracklets two of them marked (current marks only)."""
    rows = status.current_rows
    names = sorted({a for a in rows["annotator"] if a})
    if len(names) < 2:
        return ""
    agree = annotator_agreement(zip(rows["tracklet"], rows["annotator"], rows["mark"]))
    if not agree:
        return (f"<p>Agreement between annotators: {len(names)} annotators, but no tracklet was marked by two of "
                f"them.</p>")
    return ("<p><b>Agreement between annotators</b> (tracklets both marked, current marks):</p>"
            + table(["annotators", "tracklets both marked (n)", "same mark (exact 95 % CI)", "Cohen's kappa"],
                    [[f"{a.first} & {a.second}", a.n, a.percent.format(),
                      "n/a" if a.kappa is None else f"{a.kappa:.2f}"] for a in agree], cls="num"))


def _review_plan_part(plan: pd.DataFrame, marks: pd.DataFrame | None) -> str:
    """How far the random review plan is judged, and its estimates from the planned tracklets only, plan weights
    applied (a random sample: unlike marks given while browsing, these estimate the session's rates)."""
    current = dict(zip(marks["tracklet"], marks["mark"])) if marks is not None else {}
    est = plan_estimates(plan, current)
    n, k = est["planned"], est["judged"]
    parts = [f"<p><b>Review plan</b> (<code>classifier/review_plan.csv</code>, random, stratified by label and "
             f"length): {k} of {n} planned tracklets judged ({fmt_pct(k / n if n else None)}); "
             f"{est['strata'] if est['strata'] is not None else 'no'} strata.</p>"]
    if k:
        parts.append("<p>Rates over the planned tracklets only, plan weights applied (anTraX's Table 2 way):</p>")
        parts.append(table(["estimate", "definition", "rate (judged tracklets, exact 95 % CI)"],
                           [[name.replace("_", " "), PLAN_DEFINITIONS[name], r.format()]
                            for name, r in est["estimates"].items()]))
    return "".join(parts)


def _label_next_section(session: SessionResult, top: int = 25) -> str:
    nxt = session.label_next
    if nxt is None:
        return ("<p>What to label next (<code>classifier/label_next.csv</code>, written by the <code>review</code> "
                "rule): not available.</p>")
    if nxt.empty:
        return "<p>What to label next: no candidate (no long Unknown, near-threshold or confused-pair tracklet).</p>"
    reasons = nxt["reason"].astype(str).str.split("; ").explode().value_counts()
    parts = [f"<p>{len(nxt)} tracklets whose labelled examples would help the classifier most (reasons: "
             + ", ".join(f"{html.escape(str(r))}: {int(c)}" for r, c in reasons.items())
             + "). Label them in the app (its export adds them to <code>classifier/examples/</code>); nothing is "
               "labelled automatically.</p>"]
    cols = [c for c in ("rank", "movie", "tracklet", "autoID", "n_frames", "reason", "detail") if c in nxt.columns]
    parts.append(table(cols, nxt[cols].head(top).itertuples(index=False), cls="num"))
    if len(nxt) > top:
        parts.append(f'<p class="small">… and {len(nxt) - top} more in the file.</p>')
    return "".join(parts)


_DEFINITIONS = """
<ul>
<li><b>Label kinds</b>: ID = in <code>ant_labels</code>; non-ant = in <code>noant_labels</code>; multi = named MultiAnt,
Multi or multi (recognised by name, as anTraX does); Unknown = the hard-coded "no decision" label; other = other
<code>other_labels</code>; unlisted = in no labels.csv category.</li>
<li><b>Frames</b> of a tracklet = its number of blob images (falls back to the frame span in its name).</li>
<li><b>Assignment rate</b> = frames of tracklets labelled with an ID ÷ frames of all classified tracklets that are not
non-ant (ID + multi + Unknown + other + unlisted): the share of ant-tracklet time the classifier identifies before
graph propagation. The per-tracklet version counts tracklets instead of frames. n/a when the denominator is 0.</li>
<li><b>Validation rates</b> (anTraX's validate app): wrong ID = W/(C+W); false positive = A/(A+C+W);
false negative = FN/(FN+TN), with C, W, A, FN, TN the tracklets marked correct, wrong, ambig (should not have an ID),
falseneg (called non-ant, is an ant), trueneg. Frame-weighted: each tracklet weighted by its frames. A tracklet marked
twice counts once (last mark).</li>
<li><b>Intervals</b>: per-tracklet rates carry the exact Clopper–Pearson 95 % interval. Frames of one tracklet share
its label, so they are not independent trials; frame-weighted rates carry a Clopper–Pearson interval computed with the
Korn–Graubard effective sample size (tracklets as clusters, capped at the number of tracklets) — approximate, but not
falsely narrow. 0/0 is shown as "n/a (n = 0)".</li>
<li><b>Coverage–error curve</b> (model card): on the classifier's held-out tracklets, the tracklet rule without its
gate, then the gate at each <code>min_conf</code>: coverage = tracklets whose true label is an ID and that are given an
ID ÷ tracklets whose true label is an ID; error = tracklets given an ID other than their true label ÷ tracklets given an
ID. Intervals: exact Clopper–Pearson (tracklets).</li>
<li><b>Review plan</b>: tracklets drawn at random for judging, stratified by label × length bin with proportional
allocation, so rates over the planned tracklets estimate the session's rates; marks given while browsing need not.
Each judged tracklet is weighted by the plan's <code>weight</code> (stratum size ÷ tracklets drawn); the interval is
the exact Clopper–Pearson interval at the Kish effective sample size (Σw)²/Σw² — with equal weights exactly the
interval of k of n.</li>
<li><b>Current and stale marks</b>: a mark records the autoID it judged and the sha256 of the classifier that produced
it. After re-classification a mark whose autoID or classifier changed is stale: it no longer judges what is in
<code>labels/</code> and is not counted (the app lists such tracklets for a re-check). A tracklet marked by several
annotators counts once (the newest current mark); <b>agreement</b> compares annotators on the tracklets both marked
(percent with the same mark, and Cohen's kappa = (observed − chance agreement) ÷ (1 − chance agreement)).</li>
<li><b>ID conflict</b>: the same ID on two tracklets of one movie whose frame ranges overlap — one ant cannot be in two
places; anTraX's solve has to undo each.</li>
<li><b>Score</b> = Σ P(label) over the frames whose top class is an ID (anTraX); it grows with tracklet length and is
solve's propagation priority, so "score ÷ frames" is shown as a length-free confidence.</li>
</ul>
"""


# --------------------------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------------------------


#: (session, per-movie summary, tracklet table, validation marks or None, the marks against the current classification)
Prepared = tuple[SessionResult, pd.DataFrame, pd.DataFrame, pd.DataFrame | None, MarkStatus | None]


def _overview(prepared: Sequence[Prepared]) -> str:
    """One row per session: movies, failures, tracklets, frames, assignment rates, which inputs it has."""
    if not prepared:
        return note("No session was given.")
    rows, rcls = [], []
    for s, summary, tt, marks, status in prepared:
        tot = summary_totals(summary)
        nfail = int(summary.status.isin(["failed", "missing"]).sum())
        rows.append([s.experiment, s.session, len(summary), nfail, tot["tracklets"], tot["frames"],
                     pct(tot["assignment_rate"]), pct(tot["assignment_rate_tracklets"]),
                     "yes" if s.truth else "no",
                     f"{len(status.current)} current, {len(status.stale)} stale" if status is not None else "no"])
        rcls.append("bad" if nfail else "")
    return table(["experiment", "session", "movies", "failed/missing", "tracklets", "frames",
                  "assignment rate (frames)", "assignment rate (tracklets)", "ground truth",
                  "validation marks"], rows, cls="num", row_classes=rcls)


def _session_part(i: int, prepared: Prepared, params: Mapping[str, Any] | None,
                  card: ClassifierCard | None = None) -> list[str]:
    """A session's heading and sections: the blobs behind the numbers, classification per movie, ground truth,
    validation marks (or the review plan alone), what to label next."""
    s, summary, tt, _marks, status = prepared
    body = [f'<h2 id="s{i}">{html.escape(s.name)}</h2>', blobs_section(s, status, tt, card),
            "<h3>Classification per movie</h3>",
            _summary_section(s, summary, tt, params), "<h3>Against the ground truth</h3>",
            _truth_section(s, tt) if s.truth else "<p>Ground truth: not available.</p>", "<h3>Validation marks</h3>",
            _validation_section(s, status, tt) if status is not None
            else "<p>Validation marks (<code>classifier/validation.csv</code>): not available.</p>"]
    if status is None and s.review_plan is not None:
        body.append(_review_plan_part(s.review_plan, None))
    body.append("<h3>What to label next</h3>")
    body.append(_label_next_section(s))
    return body


def build_report(sessions: Sequence[SessionResult], card: ClassifierCard | None, out_html: str | Path,
                 params: Mapping[str, Any] | None = None,
                 title: str = "antrax-pipe classification report", validation: Any = None,
                 max_error: float = MAX_ERROR) -> Path:
    """Write the self-contained HTML validation report atomically and return its path.

    ``validation``: the classifier's held-out evaluation (:class:`antrax_pipe.io.heldout.ClassifierValidation` or
    the path of its ``validation.h5``) for the coverage–error curve; None → "not available". ``max_error``: the
    largest acceptable ID error of the verdict (ready for solve when the whole 95 % interval is below it).
    """
    if isinstance(validation, (str, Path)):
        validation = read_validation(validation)
    prepared: list[Prepared] = []
    for s in sessions:
        tt = tracklet_table(s)
        marks = marks_table(s)
        prepared.append((s, summarize_session(s), tt, marks, mark_status(s, marks, tt) if marks is not None
                         else None))

    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body: list[str] = [f"<h1>{html.escape(title)}</h1>",
                       f'<p class="small">antrax-pipe {__version__}, generated {html.escape(now)}.</p>']
    body.append(verdict_screen([(i, s, summ, st) for i, (s, summ, _, _, st) in enumerate(prepared)], max_error))
    toc = ['<li><a href="#overview">Overview</a></li>', '<li><a href="#params">Thresholds in use</a></li>']
    toc += [f'<li><a href="#s{i}">{html.escape(s.name)}</a></li>' for i, (s, *_) in enumerate(prepared)]
    toc += ['<li><a href="#card">Classifier model card</a></li>', '<li><a href="#defs">Definitions</a></li>']
    body.append(f'<ul class="toc">{"".join(toc)}</ul>')

    body.append('<h2 id="overview">Overview</h2>')
    body.append(_overview(prepared))
    body.append('<h2 id="params">Thresholds in use</h2>')
    if params:
        body.append(kv_table((str(k), fmt_param(v)) for k, v in params.items()))
    else:
        body.append("<p>Aggregation parameters: not available.</p>")
    for i, p in enumerate(prepared):
        body.extend(_session_part(i, p, params, card))

    body.append('<h2 id="card">Classifier model card</h2>')
    body.append(card_section(card, prepared[0][0].labels if prepared else None, validation, params))
    body.append(f'<h2 id="defs">Definitions</h2>{_DEFINITIONS}')

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>\n{_css()}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    return atomic_write_text(out_html, page)
