"""Running Snakemake for the CLI so that a user never needs Snakemake's expert flags.

- **One run per work folder.** The CLI holds an exclusive ``fcntl`` lock on ``<workdir>/.antrax-pipe.lock`` while
  Snakemake runs; a second command on the same folder says plainly that another run is active (and its pid) instead
  of failing later with Snakemake's ``LockException``.
- **After a crash the same command works again.** Holding that lock proves that no other antrax-pipe run uses the
  folder, so a Snakemake lock left by a killed run (``kill -9``, a lost ssh session) is stale: it is removed with
  ``snakemake --unlock`` (said on the terminal), and every run passes ``--rerun-incomplete``, so files a killed job
  left half-done are made again instead of stopping the run with ``IncompleteFilesException``.
- **Ctrl-C stops cleanly.** Snakemake runs in its own process group, so the terminal's SIGINT reaches the CLI only;
  the CLI forwards exactly one SIGINT (or SIGTERM) per signal it receives and waits for Snakemake to stop its jobs
  (on a cluster profile Snakemake cancels the submitted jobs). It is never SIGKILLed: that would leave locks and
  running cluster jobs behind. Finished outputs stay; the same command continues where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows is not a target
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".antrax-pipe.lock"
#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


class RunActiveError(RuntimeError):
    """Another antrax-pipe run holds the work folder."""


@contextlib.contextmanager
def run_lock(workdir: Path) -> Iterator[None]:
    """Hold the work folder's run lock for the duration, or raise :class:`RunActiveError` naming the other run."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown pid"
                raise RunActiveError(
                    f"another antrax-pipe run is active in {workdir} ({other}); wait for it to finish, or use "
                    f"another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def stale_snakemake_lock(workdir: Path) -> bool:
    """Whether Snakemake left a lock in the work folder (only stale while :func:`run_lock` is held)."""
    locks = workdir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def _forward(proc: subprocess.Popen, received: list[int]) -> Callable:
    def handler(signum, _frame) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    return handler


def run_interruptible(cmd: Sequence[str], on_line: Callable[[str], None] | None = None) -> tuple[int, bool]:
    """Run ``cmd`` in its own process group, forwarding SIGINT/SIGTERM to it one for one; (exit code, interrupted).

    ``on_line`` receives every line the command prints (stdout and stderr merged); without it the output goes to
    this process's stderr unchanged.
    """
    proc = subprocess.Popen(
        list(cmd), start_new_session=True, stdout=subprocess.PIPE if on_line else None,
        stderr=subprocess.STDOUT if on_line else None, text=True, errors="replace", bufsize=1,
    )
    received: list[int] = []
    old = {s: signal.signal(s, _forward(proc, received)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_line is not None:
            for line in proc.stdout:  # type: ignore[union-attr]
                on_line(line.rstrip("\n"))
        while True:
            try:
                rc = proc.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return rc, bool(received)
