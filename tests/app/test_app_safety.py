"""Issue 12 "Nothing lost, nothing silent", HTTP level: the extract-trainset app against real servers.

- Two ``antrax-pipe extract-trainset`` processes (two ports, as two people over ssh) on one real anTraX experiment:
  marks posted to both at the same moment are all kept, and a tracklet exported under two labels at once through
  the two apps ends up under one label only (one 200, one 409).
- A write (POST) with a foreign ``Origin`` or a cross-site ``Sec-Fetch-Site`` is refused (403) and writes nothing;
  the app's own origins (any loopback name, the server's or the tunnel's port) are accepted.
- An export never follows a symbolic link out of ``classifier/`` (``examples/``, ``examples/<label>`` or the target
  file) and never writes through a linked file.
- Request bodies are read with bounds: bad/absent/too large ``Content-Length`` is answered at once (400/411/413),
  a body shorter than announced times out (408) instead of holding a thread forever, deeply nested JSON is a 400.
- Every error answer is one JSON line; only a real 500 logs a traceback.

Raw sockets and ``http.client`` talk to a real server (in a thread, or a real process for the two-app tests); the
experiments are real anTraX format with real blob images (``tests/fixtures``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fixtures.experiments import BuiltExperiment, build_experiment

from antrax_pipe.app.core import TrainsetApp
from antrax_pipe.app.server import AppHandler, make_server
from antrax_pipe.io.autoids import write_autoids
from antrax_pipe.io.manifest import read_manifest
from antrax_pipe.io.marks import read_validation_rows
from antrax_pipe.model import AutoID

CLIENT_TIMEOUT = 8  # seconds a test waits for an answer before calling the server hung

# ---------------------------------------------------------------------------------------------------------- helpers


def classify_movie1(expdir: Path, built: BuiltExperiment, autoid_of: dict[str, str]) -> dict[str, str]:
    """Write ``labels/autoids_1.csv``: tracklet → autoID by its true label (``autoid_of``)."""
    ids = {t: autoid_of[built.truth[1][t]] for t in built.sorted_tracklets(1)}
    write_autoids(expdir / built.session / "labels" / "autoids_1.csv",
                  [AutoID(t, lab, 12.5, 2) for t, lab in ids.items()])
    return ids


def copy_experiment(tmp_path: Path, built: BuiltExperiment) -> Path:
    expdir = tmp_path / built.name
    shutil.copytree(built.expdir, expdir)
    return expdir


@contextlib.contextmanager
def running_server(app: TrainsetApp) -> Iterator[int]:
    """Serve ``app`` on a free loopback port in a thread; yields the port."""
    httpd = make_server(app)
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    th.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        th.join(5)


def request(port: int, method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
            *, raw: bytes | None = None) -> tuple[int, dict | bytes, dict[str, str]]:
    """One request on a fresh connection: (status, parsed JSON or bytes, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    try:
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        out = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()
    if hdrs.get("content-type", "").startswith("application/json"):
        return r.status, json.loads(out), hdrs
    return r.status, out, hdrs


def raw_exchange(port: int, data: bytes, *, shut_wr: bool = False,
                 timeout: float = CLIENT_TIMEOUT) -> tuple[int, bytes, dict[str, str], float]:
    """Send raw bytes, read one answer: (status, body, headers, seconds until answered). A hung server fails the
    test with the socket timeout instead of hanging it."""
    t0 = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(data)
        if shut_wr:
            sock.shutdown(socket.SHUT_WR)
        r = http.client.HTTPResponse(sock)
        try:
            r.begin()
            body = r.read()
        except TimeoutError:
            pytest.fail(f"no answer within {timeout} s: the server hangs on {data[:120]!r}")
        return r.status, body, {k.lower(): v for k, v in r.getheaders()}, time.monotonic() - t0
    finally:
        sock.close()


def assert_json_error(status: int, body: bytes, headers: dict[str, str], want_status: int, *words: str) -> str:
    """A single-line JSON error ``{"error": ..., "status": N}`` with the wanted status; returns the message."""
    assert status == want_status, (status, body)
    assert headers.get("content-type", "").startswith("application/json"), (headers, body)
    assert b"\n" not in body.strip(), body
    obj = json.loads(body)
    assert set(obj) == {"error", "status"} and obj["status"] == want_status, obj
    for w in words:
        assert w in obj["error"], (w, obj["error"])
    return obj["error"]


def post_head(port: int, path: str, content_length: str | None, extra: str = "") -> bytes:
    cl = "" if content_length is None else f"Content-Length: {content_length}\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{cl}{extra}"
            f"\r\n").encode()


# --------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def app_exp(tmp_path, tiny_experiment) -> tuple[Path, BuiltExperiment, dict[str, str]]:
    """A writable copy of the tiny real experiment with movie 1 classified (PB→PB, PG→PB, NoAnt, Unknown)."""
    expdir = copy_experiment(tmp_path, tiny_experiment)
    ids = classify_movie1(expdir, tiny_experiment, {"PB": "PB", "PG": "PB", "NoAnt": "NoAnt", "Unknown": "Unknown"})
    return expdir, tiny_experiment, ids


@pytest.fixture
def server(app_exp) -> Iterator[int]:
    with running_server(TrainsetApp(app_exp[0], seed=5)) as port:
        yield port


@pytest.fixture(scope="module")
def crowded_experiment(tmp_path_factory, real_tracklets, real_labels) -> BuiltExperiment:
    """24 tracklets in movie 1, real PB/PG blob images reused under distinct anTraX names."""
    pool = [t for lab in ("PB", "PG") for t in real_tracklets[lab]]
    items = [(t.label, t.images, t.key) for i in range(24) for t in [pool[i % len(pool)]]]
    return build_experiment(tmp_path_factory.mktemp("crowded"), "crowdexp", {1: items}, real_labels, seed=21)


@pytest.fixture
def two_app_processes(tmp_path, crowded_experiment) -> Iterator[tuple[Path, list[int]]]:
    """Two ``antrax-pipe extract-trainset`` processes on one copy of the crowded experiment: (expdir, [port, port])."""
    expdir = copy_experiment(tmp_path, crowded_experiment)
    classify_movie1(expdir, crowded_experiment, {"PB": "PB", "PG": "PB"})
    procs = [subprocess.Popen([sys.executable, "-m", "antrax_pipe.cli", "extract-trainset", str(expdir),
                               "--session", crowded_experiment.session],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        ports = []
        for p in procs:
            line = p.stdout.readline()
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            assert m, (line, p.stderr.read() if p.poll() is not None else "")
            ports.append(int(m.group(1)))
        assert ports[0] != ports[1]
        yield expdir, ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


# ------------------------------------------------------------------------------- two app processes, one experiment


def test_two_app_processes_marking_at_once_lose_no_mark(two_app_processes, crowded_experiment):
    """Three rounds: all 24 tracklets re-marked (correct, wrong, ambig), half through each app process, 4 requests
    in flight per process, all released at once. Every round, validation.csv holds all 24 marks of that round."""
    expdir, ports = two_app_processes
    csv_path = expdir / crowded_experiment.session / "classifier" / "validation.csv"
    tracklets = crowded_experiment.sorted_tracklets(1)
    lost_per_round = []
    for mark in ("correct", "wrong", "ambig"):
        go = threading.Barrier(8)

        def send(i: int, t: str, mark: str = mark, go: threading.Barrier = go) -> int:
            if i < 8:
                go.wait(30)
            status, out, _ = request(ports[i % 2], "POST", "/api/mark", {"movie": 1, "tracklet": t, "mark": mark})
            assert status == 200 and out["mark"] == mark, (status, out)
            return status

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(send, range(len(tracklets)), tracklets)) == [200] * len(tracklets)
        rows = {r["tracklet"]: r["mark"] for r in read_validation_rows(csv_path)[1]}
        lost_per_round.append(sum(rows.get(t) != mark for t in tracklets))
    assert lost_per_round == [0, 0, 0], f"marks lost per round (of {len(tracklets)}): {lost_per_round}"
    _, rows = read_validation_rows(csv_path)
    assert sorted(r["tracklet"] for r in rows) == sorted(tracklets)
    assert {r["autoID"] for r in rows} == {"PB"} and {r["movie"] for r in rows} == {"1"}


def test_two_app_processes_exporting_one_tracklet_under_two_labels(two_app_processes, crowded_experiment):
    """For 12 tracklets, app A exports as PB and app B as PG at the same moment: one 200 and one 409 ("already
    exported under another label") every time; each tracklet is under one label, on disk and in the manifest."""
    expdir, ports = two_app_processes
    built = crowded_experiment
    classdir = expdir / built.session / "classifier"
    tracklets = built.sorted_tracklets(1)[:12]
    doubles, outcomes = [], {}
    for t in tracklets:
        go = threading.Barrier(2)

        def export(port: int, label: str, t: str = t, go: threading.Barrier = go) -> tuple[int, dict]:
            go.wait(30)
            status, out, _ = request(port, "POST", "/api/export", {"movie": 1, "tracklet": t, "label": label})
            return status, out

        with ThreadPoolExecutor(2) as pool:
            res = list(pool.map(export, ports, ["PB", "PG"]))
        statuses = sorted(s for s, _ in res)
        outcomes[t] = res
        if statuses == [200, 200]:
            doubles.append(t)
            continue
        assert statuses == [200, 409], res
        refused = next(out for s, out in res if s == 409)
        assert "already exported under another label" in refused["error"] and t in refused["error"]
    assert not doubles, f"{len(doubles)} of {len(tracklets)} tracklets exported under both labels"
    examples = classdir / "examples"
    for t in tracklets:
        winner = next(out["label"] for s, out in outcomes[t] if s == 200)
        where = {d.name for d in examples.iterdir() if any(d.glob(f"{built.name}.{t}.*.png"))}
        assert where == {winner}, (t, where)
        assert len(list((examples / winner).glob(f"{built.name}.{t}.*.png"))) == len(built.images[1][t])
    manifest = read_manifest(classdir / "trainset_manifest.tsv")
    assert sorted(e.path for e in manifest.entries) == sorted(p.relative_to(classdir).as_posix()
                                                              for p in examples.rglob("*.png"))


# ---------------------------------------------------------------------------------------- cross-origin writes


def test_foreign_origin_or_cross_site_write_is_refused(server, app_exp):
    expdir, built, ids = app_exp
    t = next(t for t, a in ids.items() if a == "PB")
    classdir = expdir / built.session / "classifier"
    mark = {"movie": 1, "tracklet": t, "mark": "correct"}
    export = {"movie": 1, "tracklet": t, "label": "PB"}
    other = server + 1 if server < 65535 else server - 1
    refused = [
        {"Origin": "http://evil.example"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {"Origin": f"http://127.0.0.1:{other}"},  # another local web server's page
        {"Origin": f"https://127.0.0.1:{server}"},
        {"Origin": f"http://127.0.0.1.evil.example:{server}"},
        {"Origin": f"http://user@127.0.0.1:{server}"},
        {"Sec-Fetch-Site": "cross-site"},  # no Origin, but the browser says the page is foreign
        {"Sec-Fetch-Site": "same-site"},  # another port of this host
    ]
    for h in refused:
        for path, body in (("/api/mark", mark), ("/api/export", export)):
            status, out, hdrs = request(server, "POST", path, body, h)
            assert status == 403, (h, path, status, out)
            assert hdrs["content-type"].startswith("application/json") and "refused" in out["error"], out
            assert out["status"] == 403
    assert not (classdir / "validation.csv").exists() and not (classdir / "examples").exists()

    accepted = [
        {},  # no Origin: curl, scripts, the tests
        {"Origin": f"http://127.0.0.1:{server}", "Sec-Fetch-Site": "same-origin"},  # the app's own page
        {"Origin": f"http://localhost:{server}"},
        {"Origin": f"http://[::1]:{server}"},
        {"Sec-Fetch-Site": "none"},
        {"Host": "localhost:9000", "Origin": "http://localhost:9000", "Sec-Fetch-Site": "same-origin"},  # ssh tunnel
    ]
    for h in accepted:
        status, out, _ = request(server, "POST", "/api/mark", mark, h)
        assert status == 200 and out["mark"] == "correct", (h, status, out)
    status, out, _ = request(server, "POST", "/api/export", export,
                             {"Origin": f"http://127.0.0.1:{server}", "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and out["written"], out
    assert [r["tracklet"] for r in read_validation_rows(classdir / "validation.csv")[1]] == [t]


# ------------------------------------------------------------------------------------------- symbolic links


def test_export_never_follows_a_symlink_out_of_the_classifier_folder(tmp_path, server, app_exp):
    expdir, built, ids = app_exp
    classdir = expdir / built.session / "classifier"
    examples = classdir / "examples"
    examples.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    pb = [t for t, a in ids.items() if a == "PB"]

    def export(t: str, label: str) -> tuple[int, dict]:
        status, out, _ = request(server, "POST", "/api/export", {"movie": 1, "tracklet": t, "label": label})
        return status, out

    # examples/<label> is a link to a folder outside the classifier folder
    (examples / "PB").symlink_to(outside, target_is_directory=True)
    status, out = export(pb[0], "PB")
    assert status == 409 and str(examples / "PB") in out["error"] and "outside the classifier folder" in out["error"]
    assert list(outside.iterdir()) == []
    # ... also when the link dangles (the export would have created the folder out there)
    (examples / "PB").unlink()
    (examples / "PB").symlink_to(outside / "new", target_is_directory=True)
    assert export(pb[0], "PB")[0] == 409 and not (outside / "new").exists()
    (examples / "PB").unlink()

    # the target file is a link (to a file outside): never written through, even to "skip" it
    status, ok = export(pb[0], "PB")
    assert status == 200 and ok["written"]
    victim = outside / "victim.png"
    victim.write_bytes(b"not yours")
    first = examples / "PB" / ok["written"][0]
    first.unlink()
    first.symlink_to(victim)
    status, out = export(pb[0], "PB")
    assert status == 409 and str(first) in out["error"] and "symbolic link" in out["error"]
    assert victim.read_bytes() == b"not yours"
    first.unlink()

    # examples/ itself is a link out of the tree
    moved = tmp_path / "examples_elsewhere"
    shutil.move(examples, moved)
    examples.symlink_to(moved, target_is_directory=True)
    status, out = export(pb[1], "PG")
    assert status == 409 and "outside the classifier folder" in out["error"]
    assert not (moved / "PG").exists()

    # a link that stays inside the classifier folder is fine
    examples.unlink()
    shutil.move(moved, classdir / "examples_v2")
    examples.symlink_to("examples_v2", target_is_directory=True)
    status, ok = export(pb[1], "PG")
    assert status == 200 and (classdir / "examples_v2" / "PG" / ok["written"][0]).is_file()


# ----------------------------------------------------------------------------------------------- bounded reads


def test_bad_content_length_is_answered_at_once(server, app_exp):
    """-1 used to hang the handler (``rfile.read(-1)`` reads to EOF); every bad length is now refused at once."""
    _, _, ids = app_exp
    t = next(iter(ids))
    body = json.dumps({"movie": 1, "tracklet": t, "mark": "correct"}).encode()
    cases = [
        ("-1", "", 400, "bad Content-Length"),
        ("abc", "", 400, "bad Content-Length"),
        ("1e3", "", 400, "bad Content-Length"),
        (" ", "", 400, "bad Content-Length"),
        (None, "", 411, "Content-Length"),
        (str(1 << 30), "", 413, "too large"),
        (str(len(body)), f"Content-Length: {len(body) + 5}\r\n", 400, "conflicting Content-Length"),
        (None, "Transfer-Encoding: chunked\r\n", 400, "Transfer-Encoding"),
    ]
    for cl, extra, want, words in cases:
        status, out, hdrs, took = raw_exchange(server, post_head(server, "/api/mark", cl, extra) + body)
        assert_json_error(status, out, hdrs, want, words)
        assert hdrs.get("connection") == "close" and took < 3, (cl, extra, took)


def test_short_body_times_out_instead_of_hanging(server, monkeypatch):
    """A body shorter than its Content-Length: with the client still connected, the handler gives up after its
    socket timeout (408); with the client's side closed, at once (400)."""
    assert AppHandler.timeout is not None and 0 < AppHandler.timeout <= 30, "handlers need a finite socket timeout"
    monkeypatch.setattr(AppHandler, "timeout", 1)
    head = post_head(server, "/api/mark", "100")
    status, out, hdrs, took = raw_exchange(server, head + b'{"movie": 1')
    assert_json_error(status, out, hdrs, 408, "request body incomplete", "100 bytes")
    assert 0.9 < took < 5, took
    status, out, hdrs, took = raw_exchange(server, head + b'{"movie": 1', shut_wr=True)
    assert_json_error(status, out, hdrs, 400, "11 of the 100 bytes")
    assert took < 3


def test_deeply_nested_or_huge_json_is_a_400(server, app_exp):
    _, _, ids = app_exp
    t = next(iter(ids))
    deep = b"[" * 200_000 + b"]" * 200_000  # RecursionError in the JSON parser: used to be a 500
    status, out, hdrs, _ = raw_exchange(server, post_head(server, "/api/mark", str(len(deep))) + deep)
    assert_json_error(status, out, hdrs, 400, "nested too deeply")
    nested = json.dumps({"movie": 1, "tracklet": t, "mark": [[[[[[[[[["correct"]]]]]]]]]]}).encode()
    status, out, hdrs, _ = raw_exchange(server, post_head(server, "/api/mark", str(len(nested))) + nested)
    assert_json_error(status, out, hdrs, 400, "nested deeper than")
    long_movie = json.dumps({"movie": "9" * 100_000, "tracklet": t, "mark": "correct"}).encode()
    status, out, hdrs, _ = raw_exchange(server, post_head(server, "/api/mark", str(len(long_movie))) + long_movie)
    msg = assert_json_error(status, out, hdrs, 400, "movie must be a movie number")
    assert len(msg) < 2100  # an echoed 100 kB value is cut
    big_int = b'{"movie": ' + b"9" * 5000 + b"}"  # int too long for Python's int parser: ValueError
    status, out, hdrs, _ = raw_exchange(server, post_head(server, "/api/mark", str(len(big_int))) + big_int)
    assert_json_error(status, out, hdrs, 400, "not valid JSON")


# ------------------------------------------------------------------------------------ error answers and logging


def test_every_error_is_one_json_line_and_only_a_500_logs_a_traceback(server, app_exp, caplog, capsys,
                                                                        monkeypatch):
    caplog.set_level(logging.DEBUG, logger="antrax_pipe")
    port = server
    errors = [
        raw_exchange(port, b"GARBAGE\r\n\r\n"),  # the stdlib's own 400
        raw_exchange(port, b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n"),  # the stdlib's own 505
        raw_exchange(port, f"PUT /api/mark HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n".encode()),
        raw_exchange(port, f"DELETE /api/mark HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()),
        raw_exchange(port, f"GET /api/nothing HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                     .encode()),
        raw_exchange(port, post_head(port, "/api/mark", "-1")),
    ]
    wants = [400, 505, 405, 405, 404, 400]
    for (status, body, hdrs, _), want in zip(errors, wants):
        assert_json_error(status, body, hdrs, want)
    # a client that resets the connection right after asking for a big answer
    t = next(iter(app_exp[2]))
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        s.sendall(f"GET /api/frames?movie=1&tracklet={t} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        s.close()
    # an idle keep-alive connection is closed quietly after the handler timeout
    monkeypatch.setattr(AppHandler, "timeout", 0.5)
    idle = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    assert idle.recv(10) == b""  # closed by the server
    idle.close()
    time.sleep(0.2)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.records
    assert "Traceback" not in capsys.readouterr().err

    # a real bug: one JSON 500 answer, one logged traceback
    app_exp_info = TrainsetApp.info

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(TrainsetApp, "info", broken)
    status, body, hdrs, _ = raw_exchange(port, f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert_json_error(status, body, hdrs, 500, "internal error: RuntimeError: boom")
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info and failures[0].exc_info[0] is RuntimeError
    monkeypatch.setattr(TrainsetApp, "info", app_exp_info)
    assert request(port, "GET", "/api/info")[0] == 200  # the server lives on
