"""HTTP front of the extract-trainset app: Python's stdlib server, bound to 127.0.0.1, JSON API + three static files.

Only loopback clients are served, and only requests whose ``Host`` is a loopback name (127.0.0.1, localhost, [::1];
any port, so an ssh tunnel works), so a web page elsewhere cannot reach it through DNS rebinding. Writes are POSTs with
a JSON body, and every POST is refused (403) unless its ``Origin`` is absent or this app's own (a loopback name and the
server's or the ``Host``'s port) and its ``Sec-Fetch-Site`` is absent, ``same-origin`` or ``none``: no other site, and
no other local web server's page, can export or mark, even where a browser would send a cross-site JSON POST.

Requests are read with bounds: a POST needs a ``Content-Length`` (absent: 411; negative, not a number, conflicting,
or with ``Transfer-Encoding``: 400; over :data:`MAX_BODY`: 413), a body shorter than announced times out after
:attr:`AppHandler.timeout` seconds (408) instead of holding a thread forever, and a body that is not a flat JSON
object (bad JSON, nested deeper than :data:`MAX_JSON_DEPTH`, too deep for the parser) is a 400. Every error answer,
including those the stdlib server makes itself (bad request line, unsupported method), is one JSON line
``{"error": "...", "status": N}``; only a real bug (500) logs a traceback, and a client that hangs up is no error.

API (all answers JSON, errors as ``{"error": "...", "status": N}`` with a 4xx status):

- ``GET  /api/info`` — experiment, labels, movies, default seed, annotator, which review lists exist
- ``GET  /api/pool?movie=1|all&autoid=PB&seed=7`` — tracklets in a seeded random order;
  ``?source=review_plan|label_next|stale`` — the workflow's review plan / label-next list in file order, or the
  tracklets whose marks are stale (re-check list)
- ``GET  /api/tracklet?movie=&tracklet=`` — one tracklet's info (its marks, ``stale``, the best frame as a movie frame)
- ``GET  /api/frames?movie=&tracklet=[&step=k&start=a&stop=b]`` — its images as base64 PNGs (every k-th of [a, b)),
  with movie frames and, when the probabilities file is reachable, each image's top-2 classes
- ``GET  /api/image?movie=&tracklet=&i=`` — one image as ``image/png``
- ``GET  /api/stats?movie=&autoid=`` — validation counters over current marks, stale count, per classifier, the
  review plan's weighted estimates
- ``POST /api/export`` ``{"movie", "tracklet", "label", "frames": [i, ...] | null}``
- ``POST /api/correct_export`` ``{"movie", "tracklet"}`` — export all images as the autoID and mark it right
- ``POST /api/undo_export`` ``{}`` — take back the newest export (files, manifest, the mark it made)
- ``POST /api/mark`` ``{"movie", "tracklet", "mark": "correct" | ... | null}``
"""

from __future__ import annotations

import json
import logging
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..model import AntraxFormatError
from .core import AppError, TrainsetApp

log = logging.getLogger(__name__)

STATIC_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
GET_APIS: tuple[str, ...] = ("/api/info", "/api/pool", "/api/tracklet", "/api/frames", "/api/stats", "/api/image")
POST_APIS: tuple[str, ...] = ("/api/export", "/api/mark", "/api/correct_export", "/api/undo_export")
MAX_BODY = 1 << 20
#: Deepest nesting of a POST body (``{"frames": [..]}`` is 2); deeper bodies are refused before any lookup.
MAX_JSON_DEPTH = 8
#: Longest error message sent back (a huge value echoed in a message is cut).
MAX_ERROR_CHARS = 2000
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: ``Sec-Fetch-Site`` values a write is accepted with (the app's own page sends ``same-origin``).
FETCH_SITES_OK = ("same-origin", "none")
#: Errors of a client that went away or stalled: the connection is closed, nothing is logged as a failure.
CLIENT_GONE = (ConnectionError, TimeoutError)
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")
#: Slowest client (bytes/s) an answer is still sent to in full: a send may take ``timeout + size / MIN_SEND_RATE`` s.
MIN_SEND_RATE = 32_000


def static_file(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class AppServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries its :class:`TrainsetApp` (handlers reach it as ``self.server.app``)."""

    daemon_threads = True

    def __init__(self, app: TrainsetApp, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        self.app = app
        self.quiet = quiet
        super().__init__((host, port), AppHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def handle_error(self, request, client_address) -> None:
        """An exception that escaped a handler: a client that hung up or stalled is routine (debug log); anything
        else is a bug and is logged once with its traceback (the stdlib would print it to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, CLIENT_GONE):
            log.debug("client %s: connection dropped (%s)", client_address, exc)
        else:
            log.error("request from %s failed", client_address, exc_info=exc)


class AppHandler(BaseHTTPRequestHandler):
    server: AppServer
    server_version = "antrax-pipe-app"
    protocol_version = "HTTP/1.1"
    #: Socket timeout (s) of every read and write: a client that announces more body than it sends, or stops
    #: reading, frees its thread after this long instead of never.
    timeout = 10
    _close_after = False

    # -- plumbing -------------------------------------------------------------------------------------------------

    def log_message(self, format: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self._close_after and "Connection" not in (extra or {}):
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            # a big answer (all frames of a long tracklet) over a slow ssh tunnel may take longer than the socket
            # timeout; allow at least MIN_SEND_RATE, then restore the timeout for the next request
            if self.timeout is not None:
                self.connection.settimeout(self.timeout + len(body) / MIN_SEND_RATE)
            try:
                self.wfile.write(body)
            finally:
                if self.timeout is not None:
                    self.connection.settimeout(self.timeout)

    def _json(self, status: int, obj: object, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode("utf-8"), "application/json; charset=utf-8", extra)

    def _error(self, status: int, message: str) -> None:
        # a refused POST may leave its body unread: close rather than parse it as the next request of this connection
        extra = {"Connection": "close"} if self.command == "POST" or status >= 500 else None
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS] + " …"
        self._json(status, {"error": message, "status": status}, extra)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the stdlib answers itself (bad request line, too long a header, unsupported method): JSON too, and
        the connection is closed (what is left of the request cannot be trusted)."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a request line the stdlib could not parse: answer with a status line
            self.request_version = "HTTP/1.0"
        text = message or self.responses.get(code, ("error",))[0]
        try:
            self._json(code, {"error": f"{text}{f' ({explain})' if explain else ''}", "status": code},
                       {"Connection": "close"})
        except CLIENT_GONE:
            pass

    def _host_ok(self) -> bool:
        """Loopback client, and a loopback name in ``Host`` (any port: an ssh tunnel may forward another one)."""
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_NAMES and self.client_address[0] in ("127.0.0.1", "::1")

    @staticmethod
    def _port_of(netloc_url: str) -> int | None:
        u = urlsplit(netloc_url)
        try:
            return u.port or 80
        except ValueError:
            return None

    def _write_ok(self) -> None:
        """Refuse (403) a write another web page could have sent: ``Origin`` must be absent or this app's own (http,
        a loopback name, the server's port or the port the ``Host`` names — an ssh tunnel's); ``Sec-Fetch-Site``
        absent, ``same-origin`` or ``none`` (typed or bookmarked)."""
        origins = self.headers.get_all("Origin") or []
        if len(origins) > 1:
            raise AppError(403, "cross-origin write refused: more than one Origin header")
        if origins:
            origin = origins[0].strip()
            u = urlsplit(origin)
            ports = {self.server.server_address[1], self._port_of("//" + self.headers.get("Host", ""))}
            host = f"[{u.hostname}]" if u.hostname and ":" in u.hostname else u.hostname
            if (u.scheme != "http" or host not in LOOPBACK_NAMES or self._port_of(origin) not in ports
                    or u.username is not None or u.path not in ("", "/") or u.query or u.fragment):
                raise AppError(403, f"cross-origin write refused: Origin {origin!r} is not this app "
                                    f"({self.server.url.rstrip('/')}); exports and marks are only accepted from the "
                                    f"app's own page")
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() not in FETCH_SITES_OK:
            raise AppError(403, f"cross-site write refused: Sec-Fetch-Site {site!r} (accepted: absent, "
                                f"{', '.join(FETCH_SITES_OK)}); exports and marks are only accepted from the app's own "
                                f"page")

    def _dispatch(self, fn) -> None:
        try:
            if not self._host_ok():
                raise AppError(403, f"requests must come from this machine and address the server by a loopback "
                                    f"name such as {self.server.url} (Host {self.headers.get('Host')!r} refused)")
            fn()
        except AppError as exc:
            self._error(exc.status, exc.message)
        except AntraxFormatError as exc:
            self._error(422, str(exc))
        except CLIENT_GONE as exc:  # the client hung up or stalled mid-answer: nobody to answer, nothing broken
            log.debug("%s %s: client gone (%s)", self.command, self.path, exc)
            self.close_connection = True
        except Exception as exc:  # a bug must not kill the server; the user sees the message
            log.exception("%s %s failed", self.command, self.path)
            try:
                self._error(500, f"internal error: {type(exc).__name__}: {exc}")
            except CLIENT_GONE:
                self.close_connection = True

    # -- verbs ----------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        # a GET/HEAD carrying a body is answered, but its body is never read: close rather than parse it as the next
        # request of this connection
        self._close_after = (self.headers.get("Content-Length", "0").strip() not in ("", "0")
                             or "Transfer-Encoding" in self.headers)
        self._dispatch(self._get)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _not_allowed(self) -> None:
        self._close_after = True
        self._dispatch(self._refuse_method)

    def _refuse_method(self) -> None:
        raise AppError(405, f"{self.command} is not supported (GET reads, POST with a JSON body writes)")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _get(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        app = self.server.app
        if url.path in STATIC_FILES:
            name, ctype = STATIC_FILES[url.path]
            self._send(200, static_file(name), ctype)
            return
        routes = {
            "/api/info": lambda: app.info(),
            "/api/pool": lambda: app.pool(q.get("movie"), q.get("autoid"), q.get("seed"), q.get("source")),
            "/api/tracklet": lambda: app.tracklet(q.get("movie"), q.get("tracklet")),
            "/api/frames": lambda: app.frames(q.get("movie"), q.get("tracklet"), q.get("step"), q.get("start"),
                                              q.get("stop")),
            "/api/stats": lambda: app.stats(q.get("movie"), q.get("autoid")),
        }
        if url.path == "/api/image":
            self._send(200, app.image_png(q.get("movie"), q.get("tracklet"), q.get("i")), "image/png")
            return
        if url.path not in routes:
            raise AppError(404, f"no such page or API: {url.path}")
        self._json(200, routes[url.path]())

    def _content_length(self) -> int:
        """The announced body size: present, one value, a non-negative decimal integer, at most MAX_BODY."""
        if "Transfer-Encoding" in self.headers:
            raise AppError(400, "Transfer-Encoding is not supported: send the JSON body with a Content-Length")
        values = self.headers.get_all("Content-Length") or []
        if not values:
            raise AppError(411, "a POST needs a Content-Length header (the size of its JSON body in bytes)")
        if len({v.strip() for v in values}) > 1:
            raise AppError(400, f"conflicting Content-Length headers: {', '.join(map(repr, values))}")
        raw = values[0].strip()
        if not _CONTENT_LENGTH.fullmatch(raw):
            raise AppError(400, f"bad Content-Length {raw[:40]!r}: expected a non-negative number of bytes")
        n = int(raw)
        if n > MAX_BODY:
            raise AppError(413, f"request body too large ({n} bytes; at most {MAX_BODY})")
        return n

    def _body(self) -> dict:
        n = self._content_length()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise AppError(415, "POST bodies must be JSON (Content-Type: application/json)")
        try:
            data = self.rfile.read(n)
        except TimeoutError:
            raise AppError(408, f"request body incomplete: fewer than the {n} bytes announced by Content-Length "
                                f"arrived within {self.timeout} s") from None
        if len(data) < n:
            raise AppError(400, f"request body incomplete: {len(data)} of the {n} bytes announced by "
                                f"Content-Length arrived before the client closed")
        try:
            body = json.loads(data.decode("utf-8")) if data.strip() else {}
        except RecursionError:
            raise AppError(400, "request body is nested too deeply to be read") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too long an integer
            raise AppError(400, f"request body is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise AppError(400, "request body must be a JSON object")
        if json_depth(body) > MAX_JSON_DEPTH:
            raise AppError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
        return body

    def _post(self) -> None:
        url = urlsplit(self.path)
        app = self.server.app
        self._write_ok()
        if url.path not in POST_APIS:
            readonly = url.path in GET_APIS or url.path in STATIC_FILES
            raise AppError(405 if readonly else 404, f"no POST API at {url.path}")
        b = self._body()
        if url.path == "/api/undo_export":
            self._json(200, app.undo_export())
            return
        for key in ("movie", "tracklet"):
            if key not in b:
                raise AppError(400, f"missing {key!r} in the request body")
        if url.path == "/api/export":
            if "label" not in b:
                raise AppError(400, "missing 'label' in the request body")
            self._json(200, app.export(b["movie"], b["tracklet"], b["label"], b.get("frames")))
        elif url.path == "/api/correct_export":
            self._json(200, app.correct_and_export(b["movie"], b["tracklet"]))
        else:
            if "mark" not in b:
                raise AppError(400, "missing 'mark' in the request body (null removes the mark)")
            self._json(200, app.mark(b["movie"], b["tracklet"], b["mark"]))


def json_depth(obj: object) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, ``{}`` is 1), computed without recursion."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            o = list(o.values())
        if isinstance(o, list):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in o)
    return depth


def make_server(app: TrainsetApp, port: int = 0, quiet: bool = True) -> AppServer:
    """A server on 127.0.0.1 (``port=0``: the OS picks a free port); call ``serve_forever()`` on it."""
    return AppServer(app, "127.0.0.1", port, quiet)


def serve(expdir: str | Path, session: str | None = None, port: int = 0, movlist: list[int] | None = None,
          seed: int | None = None, open_browser: bool = False, quiet: bool = True, annotator: str | None = None,
          probs_dir: str | Path | None = None) -> None:
    """``antrax-pipe extract-trainset``: open the experiment, print the address, serve until Ctrl-C. ``annotator``
    names who marks (default: the OS user); ``probs_dir``: where the movies' probabilities files are."""
    app = TrainsetApp(expdir, session, movlist, seed, annotator=annotator, probs_dir=probs_dir)
    httpd = make_server(app, port, quiet)
    print(f"antrax-pipe extract-trainset: {app.experiment.name} (session {app.experiment.session}) at {httpd.url}",
          flush=True)
    print(f"marks are saved as annotator {app.annotator!r} in {app.validation.path}", flush=True)
    if app.frame_warning:
        print(f"antrax-pipe extract-trainset: warning: {app.frame_warning}", file=sys.stderr, flush=True)
    print("press Ctrl-C to stop", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(httpd.url)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
