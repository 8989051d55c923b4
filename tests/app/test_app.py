"""extract-trainset app (issue 7): the HTTP API over a real experiment, with urllib against a real server thread.

The experiment is a copy of the ``tiny_experiment`` (real blob images; movie 1 plain, movie 2 parted in two) with an
``autoids_1.csv`` written here, so movie 1 is classified (one correct ID, one wrong ID, Unknown, NoAnt) and movie 2
is not. Browser tests driving the page live in ``test_app_browser.py``.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures.experiments import BuiltExperiment
from fixtures.faults import corrupt_chunk
from antrax_pipe.app.core import TrainsetApp
from antrax_pipe.app.server import make_server
from antrax_pipe.io.marks import read_validation_rows
from antrax_pipe.io.autoids import write_autoids
from antrax_pipe.io.experiment import read_movies_info
from antrax_pipe.model import AntraxFormatError, AutoID, TrackletName
from antrax_pipe.io.marks import load_validation_marks
from antrax_pipe.io.manifest import read_manifest

# ---------------------------------------------------------------------------------------------------------- helpers


@dataclass
class AppExp:
    """A writable experiment for the app and what the tests know about it."""

    expdir: Path
    built: BuiltExperiment
    autoids: dict[str, str]  # movie-1 tracklet → autoID written to autoids_1.csv
    fi: dict[int, int]  # movie → first absolute frame (movies_info.txt)

    @property
    def sessiondir(self) -> Path:
        return self.expdir / self.built.session

    @property
    def examples(self) -> Path:
        return self.sessiondir / "classifier" / "examples"

    @property
    def validation_csv(self) -> Path:
        return self.sessiondir / "classifier" / "validation.csv"

    def tracklet_with(self, truth: str, movie: int = 1, single: bool = False) -> str:
        """The tracklet of ``movie`` with true label ``truth`` and the most images (with ``single``: one image)."""
        ts = [t for t in self.built.sorted_tracklets(movie) if self.built.truth[movie][t] == truth
              and (not single or len(self.built.images[movie][t]) == 1)]
        if not ts:
            raise LookupError(f"no {truth} tracklet in movie {movie}")
        return max(ts, key=lambda t: len(self.built.images[movie][t]))

    def images(self, movie: int, tracklet: str) -> np.ndarray:
        return self.built.images[movie][tracklet]

    def export_names(self, movie: int, tracklet: str, idx: list[int] | None = None) -> list[str]:
        n = len(self.images(movie, tracklet))
        first = self.fi[movie] + TrackletName.parse(tracklet).first_frame - 1
        return [f"{self.expdir.name}.{tracklet}.{first + i}.png" for i in (range(n) if idx is None else idx)]


def make_app_experiment(tmp_path: Path, built: BuiltExperiment) -> AppExp:
    """Copy the built experiment and classify movie 1: PB→PB (correct), PG→PB (wrong), Unknown, NoAnt, 1-frame→PG."""
    expdir = tmp_path / built.name
    shutil.copytree(built.expdir, expdir)
    copy = BuiltExperiment(expdir, built.session, built.labels, built.truth, built.images, built.passed,
                           {m: [expdir / built.session / "images" / p.name for p in fs] for m, fs in built.files.items()},
                           built.sources, built.nframes)
    app_exp = AppExp(expdir, copy, {}, {})
    autoid = {"PB": "PB", "PG": "PB", "Unknown": "Unknown", "NoAnt": "NoAnt"}
    for t in copy.sorted_tracklets(1):
        one_frame_pb = copy.truth[1][t] == "PB" and len(copy.images[1][t]) == 1
        app_exp.autoids[t] = "PG" if one_frame_pb else autoid[copy.truth[1][t]]
    rows = [AutoID(t, lab, 12.5 if lab in ("PB", "PG") else 0.0, 2 if lab in ("PB", "PG") else 0)
            for t, lab in app_exp.autoids.items()]
    write_autoids(expdir / built.session / "labels" / "autoids_1.csv", rows)
    df = read_movies_info(expdir / built.session / "parameters" / "movies_info.txt")
    app_exp.fi = {int(m): int(v) for m, v in zip(df["index"], df["fi"])}
    return app_exp


@contextlib.contextmanager
def running_server(app: TrainsetApp) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields the base URL (``http://127.0.0.1:<port>``)."""
    httpd = make_server(app)
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    th.start()
    try:
        yield httpd.url.rstrip("/")
    finally:
        httpd.shutdown()
        httpd.server_close()
        th.join(5)


class Client:
    def __init__(self, base: str):
        self.base = base

    def request(self, path: str, body: object = None, *, method: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, bytes, str]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")

    def get(self, path: str, **params) -> dict:
        q = urllib.parse.urlencode(params)
        status, body, ctype = self.request(path + ("?" + q if q else ""))
        assert status == 200, (status, body)
        assert ctype.startswith("application/json")
        return json.loads(body)

    def post(self, path: str, body: dict) -> dict:
        status, out, _ = self.request(path, body)
        assert status == 200, (status, out)
        return json.loads(out)

    def error(self, path: str, body: object = None, **kw) -> tuple[int, str]:
        status, out, ctype = self.request(path, body, **kw)
        assert 400 <= status < 500, (status, out)
        assert ctype.startswith("application/json"), ctype
        return status, json.loads(out)["error"]


def decode_png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img[:, :, ::-1]  # BGR → RGB


@pytest.fixture
def app_exp(tmp_path, tiny_experiment) -> AppExp:
    return make_app_experiment(tmp_path, tiny_experiment)


@pytest.fixture
def client(app_exp) -> Iterator[Client]:
    with running_server(TrainsetApp(app_exp.expdir, seed=5)) as base:
        yield Client(base)


# ---------------------------------------------------------------------------------------------------- info, pool


def test_info_lists_labels_movies_and_classification(client, app_exp):
    info = client.get("/api/info")
    assert info["expname"] == "tinyexp" and info["session"] == "antrax"
    assert [x["label"] for x in info["labels"]] == ["PB", "PG", "NoAnt", "Unknown"]  # tag colours are not labels
    assert {x["label"]: x["category"] for x in info["labels"]}["NoAnt"] == "noant_labels"
    assert info["movies"] == [{"movie": 1, "classified": True, "parted": False},
                              {"movie": 2, "classified": False, "parted": True}]
    assert info["frame_warning"] is None and info["seed"] == 5


def test_pool_is_seeded_filterable_and_covers_parted_movies(client, app_exp):
    p1 = client.get("/api/pool", movie=1, seed=11)
    assert sorted(r["tracklet"] for r in p1["tracklets"]) == app_exp.built.sorted_tracklets(1)
    assert p1 == client.get("/api/pool", movie=1, seed=11)  # same seed, same order: survives a reload
    orders = {tuple(r["tracklet"] for r in client.get("/api/pool", movie=1, seed=s)["tracklets"]) for s in range(8)}
    assert len(orders) > 1
    by_name = {r["tracklet"]: r for r in p1["tracklets"]}
    for t, lab in app_exp.autoids.items():
        assert by_name[t]["autoID"] == lab
        assert by_name[t]["n"] == len(app_exp.images(1, t))
    filtered = client.get("/api/pool", movie=1, seed=11, autoid="PB")["tracklets"]
    assert [r["tracklet"] for r in filtered] == [r["tracklet"] for r in p1["tracklets"] if r["autoID"] == "PB"]
    assert len(filtered) == 2
    p2 = client.get("/api/pool", movie=2, seed=11)
    assert not p2["classified"] and {r["autoID"] for r in p2["tracklets"]} == {""}
    assert sorted(r["tracklet"] for r in p2["tracklets"]) == sorted(app_exp.built.truth[2])  # both parts
    everything = client.get("/api/pool", movie="all", seed=11)["tracklets"]
    assert len(everything) == len(app_exp.built.truth[1]) + len(app_exp.built.truth[2])


def test_images_are_the_experiment_images_in_rgb_with_white_background(client, app_exp):
    for movie in (1, 2):
        t = app_exp.tracklet_with("PG", movie)
        want = app_exp.images(movie, t)
        assert len(want) == 8
        status, data, ctype = client.request(f"/api/image?movie={movie}&tracklet={t}&i=1")
        assert status == 200 and ctype == "image/png"
        np.testing.assert_array_equal(decode_png(data), want[1])
        frames = client.get("/api/frames", movie=movie, tracklet=t)
        assert frames["frame_mode"] == "absolute" and len(frames["frames"]) == len(want)
        first = app_exp.fi[movie] + TrackletName.parse(t).first_frame - 1
        assert [f["frame"] for f in frames["frames"]] == list(range(first, first + len(want)))
        for f in frames["frames"]:
            np.testing.assert_array_equal(decode_png(base64.b64decode(f["png"])), want[f["i"]])
    assert (want == 255).all(axis=-1).any()  # the background is white, as exported


def test_tracklet_info(client, app_exp):
    t = app_exp.tracklet_with("PG")
    info = client.get("/api/tracklet", movie=1, tracklet=t)
    tn = TrackletName.parse(t)
    assert info["autoID"] == "PB" and info["score"] == 12.5 and info["best_frame"] == 2
    assert info["movie_frames"] == [tn.first_frame, tn.last_frame]
    assert info["frames"] == [app_exp.fi[1] + tn.first_frame - 1, app_exp.fi[1] + tn.last_frame - 1]
    assert info["allowed_marks"] == ["correct", "wrong", "ambig"] and info["mark"] == "" and info["exported"] == {}
    noant = client.get("/api/tracklet", movie=1, tracklet=app_exp.tracklet_with("NoAnt"))
    assert noant["allowed_marks"] == ["falseneg", "trueneg"]
    assert client.get("/api/tracklet", movie=1, tracklet=app_exp.tracklet_with("Unknown"))["allowed_marks"] == []
    t2 = app_exp.tracklet_with("PB", 2)
    info2 = client.get("/api/tracklet", movie=2, tracklet=t2)
    assert not info2["classified"] and info2["allowed_marks"] == [] and info2["frames"][0] == app_exp.fi[2] + \
        TrackletName.parse(t2).first_frame - 1


# -------------------------------------------------------------------------------------------------------- export


def test_export_all_writes_anTraX_names_white_bg_and_manifest(client, app_exp):
    t = app_exp.tracklet_with("PG")
    r = client.post("/api/export", {"movie": 1, "tracklet": t, "label": "PG", "frames": None})
    names = app_exp.export_names(1, t)
    assert r["written"] == names and r["skipped"] == [] and r["exported"] == {"PG": len(names)}
    for i, name in enumerate(names):
        np.testing.assert_array_equal(decode_png((app_exp.examples / "PG" / name).read_bytes()), app_exp.images(1, t)[i])
    manifest = read_manifest(app_exp.sessiondir / "classifier" / "trainset_manifest.tsv")
    assert sorted(e.path for e in manifest.entries) == [f"examples/PG/{n}" for n in sorted(names)]
    assert {e.tracklet for e in manifest.entries} == {t} and {e.exp for e in manifest.entries} == {"tinyexp"}

    again = client.post("/api/export", {"movie": 1, "tracklet": t, "label": "PG"})
    assert again["written"] == [] and sorted(again["skipped"]) == sorted(names)

    status, msg = client.error("/api/export", {"movie": 1, "tracklet": t, "label": "PB"})
    assert status == 409 and "already exported under another label" in msg and "PG/" in msg
    assert not (app_exp.examples / "PB").exists()


def test_export_selected_frames_and_parted_movie(client, app_exp):
    t = app_exp.tracklet_with("PB", 2)
    r = client.post("/api/export", {"movie": 2, "tracklet": t, "label": "PB", "frames": [3, 0, 3]})
    assert r["written"] == app_exp.export_names(2, t, [0, 3])
    assert sorted(p.name for p in (app_exp.examples / "PB").iterdir()) == sorted(app_exp.export_names(2, t, [0, 3]))
    one = app_exp.tracklet_with("PB", 1, single=True)  # one-frame tracklet, (3,W,H) dataset
    r1 = client.post("/api/export", {"movie": 1, "tracklet": one, "label": "PB", "frames": None})
    assert r1["written"] == app_exp.export_names(1, one)
    for bad in ([], [99], ["1"], [True], "all"):
        status, msg = client.error("/api/export", {"movie": 2, "tracklet": t, "label": "PB", "frames": bad})
        assert status == 400 and "frame" in msg


def test_export_never_overwrites_a_different_file(client, app_exp):
    t = app_exp.tracklet_with("PG")
    names = app_exp.export_names(1, t)
    target = app_exp.examples / "PG" / names[2]
    target.parent.mkdir(parents=True)
    cv2.imwrite(str(target), np.zeros((5, 5, 3), np.uint8))
    before = target.read_bytes()
    status, msg = client.error("/api/export", {"movie": 1, "tracklet": t, "label": "PG"})
    assert status == 409 and str(target) in msg and "refusing to overwrite" in msg
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == [names[2]]  # nothing else written either
    # the same pixels written by another PNG encoder count as the same file: skipped, not refused
    img = app_exp.images(1, t)[2]
    cv2.imwrite(str(target), np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    r = client.post("/api/export", {"movie": 1, "tracklet": t, "label": "PG"})
    assert r["skipped"] == [names[2]] and len(r["written"]) == len(names) - 1


# -------------------------------------------------------------------------------------------------- bad requests


def test_bad_requests_are_refused_with_a_clear_json_error(client, app_exp):
    t = app_exp.tracklet_with("PB")
    cases = [
        ("/api/tracklet?movie=7&tracklet=" + t, None, 404, "unknown movie 7"),
        ("/api/tracklet?movie=x&tracklet=" + t, None, 400, "movie must be a movie number"),
        ("/api/tracklet?movie=1&tracklet=trj_id1_ti1_1_tf1_2", None, 404, "unknown tracklet 'trj_id1_ti1_1_tf1_2'"),
        ("/api/tracklet?movie=1&tracklet=..%2F..%2Fparameters", None, 400, "is not a tracklet name"),
        ("/api/frames?movie=1&tracklet=%2Fetc%2Fpasswd", None, 400, "is not a tracklet name"),
        (f"/api/image?movie=1&tracklet={t}&i=999", None, 404, "out of range"),
        ("/api/export", {"movie": 1, "tracklet": t, "label": "XX"}, 400, "label 'XX' is not in"),
        ("/api/export", {"movie": 1, "tracklet": t, "label": "../PB"}, 400, "label '../PB' is not in"),
        ("/api/export", {"movie": 1, "tracklet": t, "label": "B"}, 400, "label 'B' is not in"),  # a tag colour
        ("/api/export", {"movie": 1, "tracklet": t}, 400, "missing 'label'"),
        ("/api/mark", {"movie": 1, "tracklet": t, "mark": "great"}, 400, "mark must be one of"),
        ("/api/nothing", None, 404, "no such page or API"),
        ("/static/../antrax_pipe/app/core.py", None, 404, "no such page"),
        ("/static/app.py", None, 404, "no such page"),
    ]
    for path, body, want_status, want_msg in cases:
        status, msg = client.error(path, body)
        assert status == want_status and want_msg in msg, (path, status, msg)
    assert client.error("/api/export", raw=b"{not json")[0] == 400
    assert client.error("/api/export", raw=b"[1]")[0] == 400
    status, msg = client.error("/api/export", raw=b"movie=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and "JSON" in msg
    assert client.error("/api/info", {"x": 1})[0] == 405
    status, msg = client.error("/api/info", headers={"Host": "attacker.example:80"})
    assert status == 403 and "Host" in msg
    status, msg = client.error("/api/info", headers={"Host": "127.0.0.1.attacker.example"})
    assert status == 403
    assert client.request("/api/info", headers={"Host": "localhost:9000"})[0] == 200  # an ssh tunnel's port
    assert not app_exp.examples.exists()  # nothing of the above wrote anything


def test_refused_post_does_not_poison_a_kept_alive_connection(client):
    """A POST refused before its body is read must close the connection: otherwise the body (here a smuggled
    request) would be answered as the next request of the connection."""
    import socket

    netloc = urllib.parse.urlsplit(client.base).netloc
    host, port = netloc.split(":")
    smuggled = f"GET /api/nothing HTTP/1.1\r\nHost: {netloc}\r\n\r\n".encode()
    head = (f"POST /api/export HTTP/1.1\r\nHost: {netloc}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(smuggled)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + smuggled)
        data = b""
        while chunk := sock.recv(65536):  # the server closes: recv returns b"" instead of timing out
            data += chunk
    assert data.startswith(b"HTTP/1.1 415") and data.count(b"HTTP/1.1 ") == 1, data


def test_static_page_and_assets_are_served(client):
    for path, ctype in (("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")):
        status, body, got = client.request(path)
        assert status == 200 and got.startswith(ctype) and len(body) > 500
    html = client.request("/")[1].decode()
    assert "Export all" in html and "Should not have an ID" in html and "<kbd>e</kbd>" in html


def test_unreadable_tracklet_is_refused_alone(app_exp):
    bad = app_exp.tracklet_with("PG")
    corrupt_chunk(app_exp.built.files[1][0], bad)
    with running_server(TrainsetApp(app_exp.expdir)) as base:
        c = Client(base)
        status, msg = c.error(f"/api/frames?movie=1&tracklet={bad}")
        assert status == 422 and bad in msg and "cannot be read" in msg
        good = app_exp.tracklet_with("PB")
        assert len(c.get("/api/frames", movie=1, tracklet=good)["frames"]) == len(app_exp.images(1, good))


# ------------------------------------------------------------------------------------------------ validation marks


def test_marks_are_saved_at_once_updated_in_place_and_read_by_the_report(client, app_exp):
    pb, pg = app_exp.tracklet_with("PB"), app_exp.tracklet_with("PG")
    noant, unknown = app_exp.tracklet_with("NoAnt"), app_exp.tracklet_with("Unknown")
    assert client.post("/api/mark", {"movie": 1, "tracklet": pb, "mark": "correct"})["mark"] == "correct"
    cols, rows = read_validation_rows(app_exp.validation_csv)
    # issue 15: the classifier judged and the annotator are appended after the original six columns
    assert cols == ["tracklet", "movie", "autoID", "mark", "n_frames", "timestamp", "classifier_sha256", "annotator"]
    assert [(r["tracklet"], r["movie"], r["autoID"], r["mark"], r["n_frames"]) for r in rows] == \
        [(pb, "1", "PB", "correct", str(len(app_exp.images(1, pb))))]
    assert rows[0]["annotator"] == client.get("/api/info")["annotator"] != ""
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", rows[0]["timestamp"])
    client.post("/api/mark", {"movie": 1, "tracklet": pg, "mark": "correct"})
    client.post("/api/mark", {"movie": 1, "tracklet": pg, "mark": "wrong"})  # re-marking moves it
    client.post("/api/mark", {"movie": 1, "tracklet": noant, "mark": "trueneg"})
    with open(app_exp.validation_csv, newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert [(r["tracklet"], r["mark"]) for r in raw] == [(pb, "correct"), (pg, "wrong"), (noant, "trueneg")]

    status, msg = client.error("/api/mark", {"movie": 1, "tracklet": unknown, "mark": "correct"})
    assert status == 409 and "does not apply to autoID 'Unknown'" in msg
    status, msg = client.error("/api/mark", {"movie": 1, "tracklet": noant, "mark": "correct"})
    assert status == 409 and "allowed: falseneg, trueneg" in msg
    t2 = app_exp.tracklet_with("PB", 2)
    status, msg = client.error("/api/mark", {"movie": 2, "tracklet": t2, "mark": "correct"})
    assert status == 409 and "not classified" in msg

    marks = load_validation_marks(app_exp.validation_csv)
    assert dict(zip(marks["tracklet"], marks["mark"])) == {pb: "correct", pg: "wrong", noant: "trueneg"}
    assert dict(zip(marks["tracklet"], marks["n_frames"]))[pg] == len(app_exp.images(1, pg))

    s = client.get("/api/stats", movie=1)
    assert s["checked"]["tracklets"] == 3
    assert s["counts"] == {"correct": 1, "wrong": 1, "ambig": 0, "falseneg": 0, "trueneg": 1}
    assert s["wrong_id"]["tracklets"]["value"] == 0.5
    npb, npg = len(app_exp.images(1, pb)), len(app_exp.images(1, pg))
    assert s["wrong_id"]["frames"]["value"] == pytest.approx(npg / (npb + npg))
    assert s["false_negative"]["tracklets"]["value"] == 0.0
    assert s["false_positive"]["tracklets"]["value"] == 0.0
    n_assigned = sum(lab in ("PB", "PG", "NoAnt") for lab in app_exp.autoids.values())
    assert s["pool"]["assigned_tracklets"] == n_assigned and s["pool"]["tracklets"] == len(app_exp.autoids)
    assert {r["tracklet"]: r["mark"] for r in client.get("/api/pool", movie=1)["tracklets"]}[pg] == "wrong"

    assert client.post("/api/mark", {"movie": 1, "tracklet": pg, "mark": None})["mark"] == ""
    assert [r["tracklet"] for r in read_validation_rows(app_exp.validation_csv)[1]] == [pb, noant]


def test_existing_validation_file_is_kept(app_exp):
    app_exp.validation_csv.parent.mkdir(parents=True, exist_ok=True)
    pb = app_exp.tracklet_with("PB")
    app_exp.validation_csv.write_text("tracklet,mark,note\nother_exp_tracklet,ambig,from an earlier session\n")
    app = TrainsetApp(app_exp.expdir)
    app.mark(1, pb, "correct")
    cols, rows = read_validation_rows(app_exp.validation_csv)
    assert "note" in cols and rows[0] == {**rows[0], "tracklet": "other_exp_tracklet", "mark": "ambig",
                                          "note": "from an earlier session"}
    assert rows[1]["tracklet"] == pb and rows[1]["mark"] == "correct"
    damaged = "tracklet,mark\nx,maybe\n"
    app_exp.validation_csv.write_text(damaged)
    with pytest.raises(AntraxFormatError, match=r"validation.csv: line 2: .* 'maybe'"):
        TrainsetApp(app_exp.expdir)
    with pytest.raises(AntraxFormatError):
        app.mark(1, pb, "wrong")  # an app already running never overwrites a file it cannot read
    assert app_exp.validation_csv.read_text() == damaged


# ------------------------------------------------------------------------------------------ movies_info, the CLI


def test_without_movies_info_export_uses_movie_frames_and_says_so(app_exp):
    (app_exp.sessiondir / "parameters" / "movies_info.txt").unlink()
    app = TrainsetApp(app_exp.expdir)
    assert "movies_info.txt not found" in app.frame_warning and "within the movie" in app.frame_warning
    t = app_exp.tracklet_with("PB", 2)
    r = app.export(2, t, "PB", [0])
    first = TrackletName.parse(t).first_frame
    assert r["frame_mode"] == "movie" and r["written"] == [f"tinyexp.{t}.{first}.png"]


def test_cli_serves_on_localhost_and_prints_its_address(app_exp):
    proc = subprocess.Popen([sys.executable, "-m", "antrax_pipe.cli", "extract-trainset", str(app_exp.expdir),
                             "--session", "antrax", "--movlist", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert m, line
        info = Client(m.group(1)).get("/api/info")
        assert [x["movie"] for x in info["movies"]] == [2]
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run([sys.executable, "-m", "antrax_pipe.cli", "extract-trainset", str(app_exp.expdir),
                          "--session", "nosuch"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "session 'nosuch' not found" in bad.stderr
    with running_server(TrainsetApp(app_exp.expdir)) as base:  # the port is taken
        port = base.rsplit(":", 1)[1]
        taken = subprocess.run([sys.executable, "-m", "antrax_pipe.cli", "extract-trainset", str(app_exp.expdir),
                                "--port", port], capture_output=True, text=True, timeout=60)
    assert taken.returncode == 2 and f"cannot serve on 127.0.0.1:{port}" in taken.stderr
