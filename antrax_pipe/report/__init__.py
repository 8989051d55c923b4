"""Validation report: one self-contained HTML page (tables + plots as base64 PNG) over classified sessions.

The page opens offline and can be mailed around: no external CSS/JS, every plot is embedded.

* :mod:`.html` — HTML primitives (escaped cells, tables, notes; a missing value is "—" or "n/a", never "nan");
* :mod:`.plots` — every plot (matplotlib object API: ``Figure`` + Agg canvas, never ``pyplot``);
* :mod:`.card` — the classifier's model card and the coverage–error section;
* :mod:`.page` — the session sections and :func:`build_report`; ``style.css`` is inlined into the page.

Definitions used throughout (also printed on the page):

* **kind** of a label — ID (``ant_labels``), non-ant (``noant_labels``), multi (by name, as anTraX), Unknown, other
  (other ``other_labels``), unlisted (in no labels.csv category: classifier and labels.csv out of sync).
* **frames** of a tracklet — its number of images (``SessionResult.n_images``), falling back to the frame span in its
  name (exact unless the video was downsampled).
* **assignment rate** — frames of tracklets labelled with an ID ÷ frames of all classified tracklets that are *not*
  non-ant (ID + multi + Unknown + other + unlisted): the share of ant-tracklet time the classifier alone identifies,
  before graph propagation. Also given per tracklet. 0/0 (a movie with only non-ant tracklets) is "n/a".
* rates against validation marks and against a ground truth: see :mod:`antrax_pipe.stats`.
"""

from __future__ import annotations

from .page import build_report, per_movie_distributions
from .plots import coverage_error_figure

__all__ = ["build_report", "coverage_error_figure", "per_movie_distributions"]
