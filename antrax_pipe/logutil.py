"""Logging for stages run by Snakemake scripts and the CLI: one format, to the rule's log file and stderr."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


@contextlib.contextmanager
def stage_logging(logfile: str | Path | None, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send ``antrax_pipe`` log records (and Python warnings) to ``logfile`` and stderr for the duration of a stage.

    An exception is logged with its traceback before it propagates, so a failed job's log names the cause.
    """
    log = logging.getLogger("antrax_pipe")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w", encoding="utf-8"))
    fmt = logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
    old_level = log.level
    log.setLevel(level)
    logging.captureWarnings(True)
    try:
        yield log
    except Exception:
        log.exception("stage failed")
        raise
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()
        log.setLevel(old_level)
