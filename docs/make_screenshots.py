"""Screenshots of ``antrax-pipe extract-trainset`` for the README, taken in headless Chromium on a copy of the demo.

    .venv/bin/python docs/make_screenshots.py [--chromium /usr/bin/chromium] [--out docs/screenshots]

The demo experiment ``demo/experiments/colonyA`` is copied to a temporary folder (the repository is never written,
except the PNGs); two tracklets are marked there from the demo's ground truth so the statistics panel shows numbers.
Needs Debian's ``chromium`` and Python Playwright (``pip install -e '.[test]'``).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import threading
from pathlib import Path

import cv2

from antrax_pipe.app.core import TrainsetApp
from antrax_pipe.app.server import make_server

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _recompress(path: Path) -> None:
    """Chromium writes fast, loosely compressed PNGs; level 9 keeps the README light."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        expdir = Path(tmp) / "colonyA"
        shutil.copytree(REPO / "demo" / "experiments" / "colonyA", expdir)
        app = TrainsetApp(expdir, seed=12)
        with open(REPO / "demo" / "ground_truth" / "colonyA.csv", newline="") as fh:
            truth = {(int(r["movie"]), r["tracklet"]): r["label"] for r in csv.DictReader(fh)}
        marked = 0
        for row in app.pool("all")["tracklets"]:
            if marked < 3 and app.allowed_marks(row["autoID"]) and row["autoID"] in app.labels.ant_labels:
                ok = truth.get((row["movie"], row["tracklet"])) == row["autoID"]
                app.mark(row["movie"], row["tracklet"], "correct" if ok else "wrong")
                marked += 1
        httpd = make_server(app)
        th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        th.start()
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=ARGS)
                page = browser.new_page(viewport={"width": 1200, "height": 720})
                page.goto(httpd.url)
                page.wait_for_selector("body[data-state=ready]")
                page.select_option("#movie", "all")
                page.wait_for_selector("body[data-state=ready]")
                page.select_option("#autoid", "PG")
                page.wait_for_selector("body[data-state=ready]")
                page.keyboard.press("4")  # label PG
                page.screenshot(path=str(out / "extract-trainset.png"))
                for i in (3, 4, 5, 9):
                    page.click(f"#frames figure[data-i='{i}']")
                page.click("#frames figure[data-i='12']", modifiers=["Shift"])
                page.keyboard.press("s")
                page.wait_for_selector("#status.ok")
                page.click("#frames figure[data-i='20']")
                page.click("#frames figure[data-i='22']", modifiers=["Shift"])
                page.screenshot(path=str(out / "extract-trainset-select-frames.png"))
                browser.close()
        finally:
            httpd.shutdown()
            httpd.server_close()
    for p in sorted(out.glob("extract-trainset*.png")):
        _recompress(p)
        print(f"{p} ({p.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
