"""``antrax-pipe extract-trainset``: anTraX's training-set / validation app as a local web app (stdlib server).

:class:`TrainsetApp` holds the logic (pool, images, export, marks, stats) and is usable without HTTP;
:func:`make_server`/:func:`serve` put it behind a loopback-only HTTP server with a small HTML/JS page (``static/``).
"""

from __future__ import annotations

from .core import AppError, TrainsetApp
from .server import AppServer, make_server, serve
from ..io.marks import VALIDATION_FIELDS, ValidationFile, read_validation_rows

__all__ = ["AppError", "AppServer", "TrainsetApp", "VALIDATION_FIELDS", "ValidationFile", "make_server",
           "read_validation_rows", "serve"]
