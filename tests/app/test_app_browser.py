"""extract-trainset app (issue 7) end to end in real headless Chromium: open, label, export, mark, reload — then the
files on disk are checked.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and Python Playwright (``pip install playwright``; its
own browser download, ``playwright install``, is not used). Skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from antrax_pipe.app.core import TrainsetApp
from antrax_pipe.io.marks import read_validation_rows
from antrax_pipe.io.marks import load_validation_marks
from antrax_pipe.io.manifest import read_manifest
from test_app import AppExp, decode_png, make_app_experiment, running_server

CHROMIUM = Path(os.environ.get("ANTRAX_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(),
                                reason=f"{CHROMIUM} not found: browser tests need Debian's chromium "
                                       f"(apt-get install -y chromium) or ANTRAX_CHROMIUM=/path/to/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright not installed (pip install -e '.[test]')")
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser():
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    except Exception as exc:
        pw.stop()
        pytest.skip(f"{CHROMIUM} does not start under Playwright: {exc}")
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page(browser):
    """A fresh browser context (own localStorage) and page; a JavaScript exception fails the test."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(15_000)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


@pytest.fixture
def app_exp(tmp_path, tiny_experiment) -> AppExp:
    return make_app_experiment(tmp_path, tiny_experiment)


def ready(page) -> str:
    """Wait until the page has shown a tracklet; return its name."""
    page.wait_for_selector("body[data-state=ready]")
    return page.get_attribute("#viewer", "data-tracklet")


def press_and_wait_new(page, key: str, old: str) -> str:
    page.keyboard.press(key)
    page.wait_for_function("old => document.querySelector('#viewer').dataset.tracklet !== old "
                           "&& document.body.dataset.state === 'ready'", arg=old)
    return ready(page)


def files_of(app_exp: AppExp, label: str) -> list[str]:
    d = app_exp.examples / label
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_label_export_mark_and_reload(page, app_exp, tmp_path):
    with running_server(TrainsetApp(app_exp.expdir, seed=3)) as base:
        page.goto(base + "/")
        ready(page)
        expect(page.locator("#expname")).to_contain_text("tinyexp")
        expect(page.locator("#keyhelp")).to_contain_text("export all frames")
        expect(page.locator("#position")).to_have_text(f"tracklet 1 of {len(app_exp.autoids)}")

        # Tracklets menu: filter by autoID PB → the correct PB tracklet and the PG tracklet called PB
        page.select_option("#autoid", "PB")
        t1 = ready(page)
        expect(page.locator("#position")).to_have_text("tracklet 1 of 2")
        truth1 = app_exp.built.truth[1][t1]
        expect(page.locator("#info")).to_contain_text("autoID PB")
        expect(page.locator("#frames figure")).to_have_count(len(app_exp.images(1, t1)))
        expect(page.locator("#validate button[data-mark=correct]")).to_be_enabled()
        expect(page.locator("#validate button[data-mark=trueneg]")).to_be_disabled()

        # label by digit (PB = 1, PG = 2), export all with e
        page.keyboard.press({"PB": "1", "PG": "2"}[truth1])
        expect(page.locator(f"#labels button[data-label={truth1}]")).to_have_class("cat-ant_labels chosen")
        page.keyboard.press("e")
        expect(page.locator("#status")).to_contain_text(f"exported {len(app_exp.images(1, t1))} image(s)")
        expect(page.locator("#info")).to_contain_text(f"exported: {truth1} ({len(app_exp.images(1, t1))})")
        assert files_of(app_exp, truth1) == sorted(app_exp.export_names(1, t1))

        # validate: c if the autoID is right, w if not; the mark is saved and the app moves on
        t2 = press_and_wait_new(page, "c" if truth1 == "PB" else "w", t1)
        truth2 = app_exp.built.truth[1][t2]
        assert {truth1, truth2} == {"PB", "PG"}
        expect(page.locator("#status")).to_contain_text("(saved)")

        # select frames 0-2 with click + shift-click, label typed in the label box, export with s
        page.click("#frames figure[data-i='0']")
        page.click("#frames figure[data-i='2']", modifiers=["Shift"])
        expect(page.locator("#nsel")).to_have_text("3")
        page.keyboard.press("/")
        page.keyboard.type(truth2.lower())
        page.keyboard.press("Enter")
        expect(page.locator(f"#labels button[data-label={truth2}]")).to_have_class("cat-ant_labels chosen")
        page.keyboard.press("s")
        expect(page.locator("#status")).to_contain_text("exported 3 image(s)")
        assert set(app_exp.export_names(1, t2, [0, 1, 2])) <= set(files_of(app_exp, truth2))

        # the same frames under another label are refused, the message is shown, nothing is written
        other = "PG" if truth2 == "PB" else "PB"
        before = files_of(app_exp, other)
        page.keyboard.press({"PB": "1", "PG": "2"}[other])
        page.keyboard.press("e")
        expect(page.locator("#status")).to_have_class("error")
        expect(page.locator("#status")).to_contain_text("already exported under another label")
        assert files_of(app_exp, other) == before

        page.keyboard.press("c" if truth2 == "PB" else "w")  # last tracklet: stays, shows the mark
        expect(page.locator("#info")).to_contain_text("mark: " + ("correct" if truth2 == "PB" else "wrong"))
        expect(page.locator("#stats")).to_have_attribute("data-checked", "2")
        expect(page.locator("#stats")).to_contain_text("50.0% of tracklets")  # one right, one wrong ID
        page.screenshot(path=str(tmp_path / "validate.png"))

        # reload: same movie, filter, tracklet, label; marks and stats come back from disk
        page.reload()
        assert ready(page) == t2
        expect(page.locator("#autoid")).to_have_value("PB")
        expect(page.locator("#info")).to_contain_text("mark: " + ("correct" if truth2 == "PB" else "wrong"))
        expect(page.locator(f"#labels button[data-label={other}]")).to_have_class("cat-ant_labels chosen")
        expect(page.locator("#stats")).to_have_attribute("data-checked", "2")
        # a bare URL in the same browser resumes too (localStorage)
        page.goto(base + "/")
        assert ready(page) == t2

    assert (tmp_path / "validate.png").stat().st_size > 10_000
    marks = load_validation_marks(app_exp.validation_csv)
    want = {t1: "correct" if truth1 == "PB" else "wrong", t2: "correct" if truth2 == "PB" else "wrong"}
    assert dict(zip(marks["tracklet"], marks["mark"])) == want
    assert [r["autoID"] for r in read_validation_rows(app_exp.validation_csv)[1]] == ["PB", "PB"]
    for i, name in enumerate(app_exp.export_names(1, t1)):
        np.testing.assert_array_equal(decode_png((app_exp.examples / truth1 / name).read_bytes()),
                                      app_exp.images(1, t1)[i])
    manifest = read_manifest(app_exp.sessiondir / "classifier" / "trainset_manifest.tsv")
    assert len(manifest.entries) == len(app_exp.images(1, t1)) + 3
    assert manifest.counts() == {truth1: len(app_exp.images(1, t1)), truth2: 3}


def test_unclassified_parted_movie_export_advances(page, app_exp):
    with running_server(TrainsetApp(app_exp.expdir, seed=8)) as base:
        page.goto(base + "/")
        ready(page)
        page.select_option("#movie", "2")  # Tracklets menu: another movie (parted in two files)
        t1 = ready(page)
        n = len(app_exp.built.truth[2])
        expect(page.locator("#position")).to_have_text(f"tracklet 1 of {n}")
        expect(page.locator("#autoid")).to_be_disabled()
        for mark in ("correct", "wrong", "ambig", "falseneg", "trueneg"):
            expect(page.locator(f"#validate button[data-mark={mark}]")).to_be_disabled()
        expect(page.locator("#validatehint")).to_contain_text("not classified")
        page.keyboard.press("c")
        expect(page.locator("#status")).to_contain_text("not classified")
        page.keyboard.press("e")
        expect(page.locator("#status")).to_contain_text("choose a label first")

        width = page.locator("#frames img").first.get_attribute("width")
        page.keyboard.press("+")
        assert int(page.locator("#frames img").first.get_attribute("width")) > int(width)

        label = app_exp.built.truth[2][t1]
        page.click(f"#labels button[data-label={label}]")
        t2 = press_and_wait_new(page, "e", t1)  # not classified: export all moves on, as in anTraX
        expect(page.locator("#position")).to_have_text(f"tracklet 2 of {n}")
        assert files_of(app_exp, label) == sorted(app_exp.export_names(2, t1))
        assert press_and_wait_new(page, "b", t2) == t1
        expect(page.locator("#info")).to_contain_text(f"exported: {label} ({len(app_exp.images(2, t1))})")
    assert not app_exp.validation_csv.exists()
