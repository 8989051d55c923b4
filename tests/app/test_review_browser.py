"""Issue 15 in real headless Chromium: the review plan judged in its order with the weighted estimates in the side
panel, re-classification making the marks stale and the re-check list; the export label resetting per tracklet
(or pre-set to the autoID), "Correct + export as autoID" and its undo, long tracklets as every k-th frame with the
rest on demand, movie frame numbers, per-frame top-2 probabilities and the frames that disagree.

Needs Debian's ``chromium`` and Python Playwright, as ``test_app_browser.py`` (skipped with the reason otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest

from antrax_pipe.app.core import TrainsetApp
from antrax_pipe.io.manifest import read_manifest
from antrax_pipe.io.marks import read_validation_rows
from antrax_pipe.model import TrackletName
from test_app import AppExp, make_app_experiment, running_server
import test_app_browser
from test_app_browser import CHROMIUM, press_and_wait_new, ready
from test_review_loop import SHA_A, SHA_B, reclassify, set_classifier, write_plan, write_probs

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not found")
expect = pytest.importorskip("playwright.sync_api", reason="Playwright not installed").expect


#: the Chromium of test_app_browser (module scope) and a fresh page per test, failing on JavaScript errors
browser = test_app_browser.browser
page = test_app_browser.page


@pytest.fixture
def app_exp(tmp_path, tiny_experiment) -> AppExp:
    return make_app_experiment(tmp_path, tiny_experiment)


def test_review_plan_in_order_estimates_then_stale_after_reclassification(page, app_exp):
    set_classifier(app_exp, SHA_A)
    pb, pg, noant = app_exp.tracklet_with("PB"), app_exp.tracklet_with("PG"), app_exp.tracklet_with("NoAnt")
    write_plan(app_exp, [pg, pb, noant], [1.0, 1.0, 1.0])
    with running_server(TrainsetApp(app_exp.expdir, seed=3, annotator="alice")) as base:
        page.goto(base + "/")
        ready(page)
        expect(page.locator("#annotator")).to_have_text("annotator: alice")
        expect(page.locator("#source option[value=label_next]")).to_be_disabled()  # not written yet
        page.select_option("#source", "review_plan")
        assert ready(page) == pg  # the plan's order
        expect(page.locator("#position")).to_have_text("review plan: tracklet 1 of 3")
        expect(page.locator("#movie")).to_be_disabled()
        assert press_and_wait_new(page, "w", pg) == pb  # PG called PB: wrong
        assert press_and_wait_new(page, "c", pb) == noant
        page.keyboard.press("o")  # NoAnt, not an ant; last of the list: stays
        expect(page.locator("#planstats")).to_have_attribute("data-judged", "3")
        plan = page.locator("#planstats")
        expect(plan).to_contain_text("3 of 3 planned tracklets")
        expect(plan).to_contain_text("50.0 % (1/2 tracklets; 95 % CI 1.3–98.7 %)")  # error, equal weights: exact
        expect(page.locator("#stats")).to_have_attribute("data-stale", "0")

        reclassify(app_exp, SHA_B, {pg: "PG"})  # re-classified by another classifier
        page.reload()
        ready(page)
        expect(page.locator("#stats")).to_have_attribute("data-stale", "3")
        expect(page.locator("#stats")).to_have_attribute("data-checked", "0")
        expect(page.locator("#planstats")).to_have_attribute("data-judged", "0")  # stale marks are not counted
        expect(page.locator("#viewer")).to_have_attribute("data-stale", "1")
        expect(page.locator("#info")).to_contain_text("STALE, re-check")
        page.click("#stats button.link")  # "open the list": re-check changed tracklets
        page.wait_for_function("document.querySelector('#position').textContent.startsWith('re-check')")
        first = ready(page)
        assert first == pg  # validation.csv order; its autoID is PG now, and right
        expect(page.locator("#position")).to_have_text("re-check: tracklet 1 of 3")
        expect(page.locator("#info")).to_contain_text("autoID PG")
        expect(page.locator("#info")).to_contain_text("autoID is PG now; the mark judged PB")
        assert press_and_wait_new(page, "c", pg) == pb
        expect(page.locator("#stats")).to_have_attribute("data-stale", "2")
        expect(page.locator("#stats")).to_contain_text("classifier bbbbbbbbbbbb (now)")
    rows = {r["tracklet"]: r for r in read_validation_rows(app_exp.validation_csv)[1]}
    assert (rows[pg]["autoID"], rows[pg]["mark"], rows[pg]["classifier_sha256"]) == ("PG", "correct", SHA_B)
    assert (rows[pb]["mark"], rows[pb]["classifier_sha256"]) == ("correct", SHA_A)  # still stale: not re-checked


def test_label_reset_confirm_export_undo_long_tracklets_and_probabilities(page, app_exp, tmp_path):
    classes = ["NoAnt", "PB", "PG", "Unknown"]
    pg = app_exp.tracklet_with("PG")  # 8 images, autoID PB
    y = np.zeros((8, 4), np.float32)
    y[:, 1], y[:, 2], y[:, 3] = 0.8, 0.15, 0.05
    y[[2, 6], 1], y[[2, 6], 2] = 0.3, 0.65  # images 2 and 6: PG on top, they disagree with the autoID PB
    probs_dir = tmp_path / "probs" / app_exp.expdir.name
    write_probs(probs_dir / "probs_1.h5", app_exp, {pg: y}, classes, SHA_A)
    first = TrackletName.parse(pg).first_frame
    app = TrainsetApp(app_exp.expdir, seed=3, annotator="carol", probs_dir=probs_dir, max_frames_shown=4)
    with running_server(app) as base:
        page.goto(base + "/")
        ready(page)
        page.select_option("#autoid", "PB")
        t = ready(page)
        if t != pg:
            t = press_and_wait_new(page, "n", t)
        assert t == pg
        # long tracklet: every 2nd image and the last (0 2 4 6 7), the rest on demand
        expect(page.locator("#frames figure")).to_have_count(5)
        expect(page.locator("#framebar")).to_be_visible()
        expect(page.locator("#frames figure[data-i='0'] figcaption")).to_have_text(f"{first}#1")  # movie frame, index
        expect(page.locator("#info")).to_contain_text(f"best frame {first + 1} (image 2)")
        page.locator("#frames button.gap").first.click()  # images between 0 and 2
        expect(page.locator("#frames figure")).to_have_count(6)
        expect(page.locator("#frames figure.best")).to_have_attribute("data-i", "1")
        page.click("#showall")
        expect(page.locator("#frames figure")).to_have_count(8)
        expect(page.locator("#framebar")).to_be_hidden()
        # top-2 on hover; images whose top class is not the autoID are outlined
        title = page.locator("#frames figure[data-i='2']").get_attribute("title")
        assert title == f"frame {first + 2} (image 3 of 8)\nPG 65.0 % · PB 30.0 %"
        assert sorted(int(x) for x in page.locator("#frames figure.disagree").evaluate_all(
            "els => els.map(e => e.dataset.i)")) == [2, 6]

        # the export label belongs to one tracklet
        page.keyboard.press("2")  # PG
        expect(page.locator("#labels button.chosen")).to_have_count(1)
        pos = page.locator("#position").text_content().split()  # "tracklet k of N"
        away, back = ("n", "b") if int(pos[1]) < int(pos[3]) else ("b", "n")
        other = press_and_wait_new(page, away, pg)
        expect(page.locator("#labels button.chosen")).to_have_count(0)
        expect(page.locator("#exportall")).to_be_disabled()
        page.keyboard.press("e")
        expect(page.locator("#status")).to_contain_text("choose a label first")
        page.check("#presetlabel")  # … or is pre-set to the autoID
        assert press_and_wait_new(page, back, other) == pg
        expect(page.locator("#labels button[data-label=PB]")).to_have_class("cat-ant_labels chosen")

        # correct + export as autoID in one key, then undo
        page.keyboard.press("x")
        page.wait_for_function("document.querySelector('#status').textContent.includes('exported 8 image(s)')")
        names = app_exp.export_names(1, pg)
        assert sorted(p.name for p in (app_exp.examples / "PB").iterdir()) == sorted(names)
        ready(page)
        expect(page.locator("#undo")).to_be_enabled()
        page.keyboard.press("z")
        expect(page.locator("#status")).to_contain_text(f"undone: removed 8 image(s) of {pg}")
        expect(page.locator("#status")).to_contain_text("mark back to none")
        assert not (app_exp.examples / "PB").exists()
        manifest = app_exp.sessiondir / "classifier" / "trainset_manifest.tsv"
        assert not read_manifest(manifest).entries
        expect(page.locator("#undo")).to_be_disabled()
    assert read_validation_rows(app_exp.validation_csv)[1] == []  # the mark "correct" was taken back too
