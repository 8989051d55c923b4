"""Logging for stages run by Snakemake scripts: everything to the rule's log file, little to the terminal.

A workflow run has many jobs, so the terminal gets only what a person follows: progress lines (per movie, per
epoch, with an ETA), warnings, and an error as **one line** naming the file or input. Everything else — INFO detail,
Python warnings (Keras' legacy-HDF5 notice, deprecations), the traceback of a failure — goes to the job's log file,
which the error line and Snakemake's error block name. TensorFlow's C++ start-up lines are silenced before it is
imported (``TF_CPP_MIN_LOG_LEVEL``), and antrax_pipe's records do not propagate to the root logger, so a handler
another library installs there (absl does) cannot print every line twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .model import USER_ERRORS

FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(message)s"
#: ``extra=`` for a log record that should also reach the terminal (progress, where results are).
CONSOLE = {"console": True}


def progress(logger: logging.Logger, msg: str, *args: object) -> None:
    """An INFO line for the terminal as well as the log file (per-movie / per-epoch progress, final summaries)."""
    logger.info(msg, *args, extra=CONSOLE)


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or bool(getattr(record, "console", False))


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ INFO/WARNING start-up lines (set before TensorFlow is imported; a user's own
    setting wins)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)


def _handlers(logfile: str | Path | None, level: int) -> tuple[logging.Handler, list[logging.Handler]]:
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    console.addFilter(_ConsoleFilter())
    files: list[logging.Handler] = []
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(logfile, mode="w", encoding="utf-8")
        fh.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        fh.setLevel(level)
        files.append(fh)
    return console, files


@contextlib.contextmanager
def stage_logging(logfile: str | Path | None, level: int = logging.INFO,
                  expected: tuple[type[BaseException], ...] | None = None) -> Iterator[logging.Logger]:
    """Send ``antrax_pipe`` log records (and Python warnings) to ``logfile``, progress and warnings to stderr.

    An error is logged with its traceback to the file; on the terminal it is one line. An ``expected`` error (by
    default the project's own error classes and OSError, e.g. a full disk) then ends the process with exit status 1
    and no traceback; anything else (a bug) is re-raised.
    """
    quiet_tensorflow()
    expected = USER_ERRORS if expected is None else expected
    log = logging.getLogger("antrax_pipe")
    warn_log = logging.getLogger("py.warnings")
    console, files = _handlers(logfile, level)
    old = (log.level, log.propagate, warn_log.propagate)
    for h in (console, *files):
        log.addHandler(h)
    for h in files:
        warn_log.addHandler(h)
    log.setLevel(level)
    log.propagate = warn_log.propagate = False
    logging.captureWarnings(True)
    try:
        yield log
    except expected as exc:
        _log_failure(log, exc)
        raise SystemExit(1) from None
    except Exception as exc:
        _log_failure(log, exc)
        raise
    finally:
        logging.captureWarnings(False)
        for h in (console, *files):
            log.removeHandler(h)
            warn_log.removeHandler(h)
            h.close()
        log.setLevel(old[0])
        log.propagate, warn_log.propagate = old[1], old[2]


def one_line(exc: BaseException) -> str:
    """An error as the one line a user sees: its message with line breaks folded, or its class name if it has none."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _log_failure(log: logging.Logger, exc: BaseException) -> None:
    """The error as one line everywhere, then the traceback in the log file only (``stage failed`` marks it)."""
    log.error("%s", one_line(exc))
    for h in log.handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "stage failed", (), sys.exc_info()))
