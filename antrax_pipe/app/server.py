"""HTTP front of the extract-trainset app: Python's stdlib server, bound to 127.0.0.1, JSON API + three static files.

Only loopback clients are served, and only requests whose ``Host`` is a loopback name (127.0.0.1, localhost, [::1];
any port, so an ssh tunnel works), so a web page elsewhere cannot reach it through DNS rebinding. Writes are POSTs with a JSON body, which a foreign page
cannot send without a CORS preflight that this server never answers, so no other site can export or mark.

API (all answers JSON, errors as ``{"error": "..."}`` with a 4xx status):

- ``GET  /api/info`` — experiment, labels, movies, default seed
- ``GET  /api/pool?movie=1|all&autoid=PB&seed=7`` — tracklets in a seeded random order
- ``GET  /api/tracklet?movie=&tracklet=`` — one tracklet's info
- ``GET  /api/frames?movie=&tracklet=`` — its images as base64 PNGs
- ``GET  /api/image?movie=&tracklet=&i=`` — one image as ``image/png``
- ``GET  /api/stats?movie=&autoid=`` — validation counters
- ``POST /api/export`` ``{"movie", "tracklet", "label", "frames": [i, ...] | null}``
- ``POST /api/mark`` ``{"movie", "tracklet", "mark": "correct" | ... | null}``
"""

from __future__ import annotations

import json
import logging
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
MAX_BODY = 1 << 20
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


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


class AppHandler(BaseHTTPRequestHandler):
    server: AppServer
    server_version = "antrax-pipe-app"
    protocol_version = "HTTP/1.1"

    # -- plumbing -------------------------------------------------------------------------------------------------

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
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
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: object, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode("utf-8"), "application/json; charset=utf-8", extra)

    def _error(self, status: int, message: str) -> None:
        # a refused POST may leave its body unread: close rather than parse it as the next request of this connection
        extra = {"Connection": "close"} if self.command == "POST" else None
        self._json(status, {"error": message, "status": status}, extra)

    def _host_ok(self) -> bool:
        """Loopback client, and a loopback name in ``Host`` (any port: an ssh tunnel may forward another one)."""
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_NAMES and self.client_address[0] in ("127.0.0.1", "::1")

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
        except Exception as exc:  # a bug must not kill the server; the user sees the message
            log.exception("%s %s failed", self.command, self.path)
            self._error(500, f"internal error: {type(exc).__name__}: {exc}")

    # -- verbs ----------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._dispatch(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self._post)

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
            "/api/pool": lambda: app.pool(q.get("movie"), q.get("autoid"), q.get("seed")),
            "/api/tracklet": lambda: app.tracklet(q.get("movie"), q.get("tracklet")),
            "/api/frames": lambda: app.frames(q.get("movie"), q.get("tracklet")),
            "/api/stats": lambda: app.stats(q.get("movie"), q.get("autoid")),
        }
        if url.path == "/api/image":
            self._send(200, app.image_png(q.get("movie"), q.get("tracklet"), q.get("i")), "image/png")
            return
        if url.path not in routes:
            raise AppError(404, f"no such page or API: {url.path}")
        self._json(200, routes[url.path]())

    def _body(self) -> dict:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise AppError(415, "POST bodies must be JSON (Content-Type: application/json)")
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise AppError(400, "bad Content-Length") from None
        if n > MAX_BODY:
            raise AppError(413, f"request body too large ({n} bytes)")
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AppError(400, f"request body is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise AppError(400, "request body must be a JSON object")
        return body

    def _post(self) -> None:
        url = urlsplit(self.path)
        app = self.server.app
        if url.path not in ("/api/export", "/api/mark"):
            readonly = url.path in GET_APIS or url.path in STATIC_FILES
            raise AppError(405 if readonly else 404, f"no POST API at {url.path}")
        b = self._body()
        for key in ("movie", "tracklet"):
            if key not in b:
                raise AppError(400, f"missing {key!r} in the request body")
        if url.path == "/api/export":
            if "label" not in b:
                raise AppError(400, "missing 'label' in the request body")
            self._json(200, app.export(b["movie"], b["tracklet"], b["label"], b.get("frames")))
        else:
            if "mark" not in b:
                raise AppError(400, "missing 'mark' in the request body (null removes the mark)")
            self._json(200, app.mark(b["movie"], b["tracklet"], b["mark"]))


def make_server(app: TrainsetApp, port: int = 0, quiet: bool = True) -> AppServer:
    """A server on 127.0.0.1 (``port=0``: the OS picks a free port); call ``serve_forever()`` on it."""
    return AppServer(app, "127.0.0.1", port, quiet)


def serve(expdir: str | Path, session: str | None = None, port: int = 0, movlist: list[int] | None = None,
          seed: int | None = None, open_browser: bool = False, quiet: bool = True) -> None:
    """``antrax-pipe extract-trainset``: open the experiment, print the address, serve until Ctrl-C."""
    app = TrainsetApp(expdir, session, movlist, seed)
    httpd = make_server(app, port, quiet)
    print(f"antrax-pipe extract-trainset: {app.experiment.name} (session {app.experiment.session}) at {httpd.url}",
          flush=True)
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
