"""Inter-process locks on shared files: ``fcntl.flock`` on a lock file next to the target.

Two ``extract-trainset`` apps may be open on one experiment at once (two people over ssh, two ports), and the review
loop may export while an app is open. Every read-modify-write of a shared file (``classifier/validation.csv``, the
trainset under ``classifier/examples`` and its manifest) therefore runs under an exclusive lock on a lock file next to
it (``classifier/.validation.csv.lock``, ``classifier/.export.lock``), and re-reads the file under that lock.

- The lock is held by the kernel on an open file: a process that dies releases it; the lock file itself is left in
  place (deleting lock files races) and holds nothing.
- It is re-entrant within a thread (the export check, the writes and the manifest refresh nest) and serialises the
  threads of one process too (one ``threading.RLock`` per lock file).
- It is opened read-only (``flock`` needs no write access), so two users of a group-writable classifier folder can
  both take it whoever created the file; a lock file that is a symbolic link is never followed.
- Waiting is bounded (``timeout``, default :data:`LOCK_TIMEOUT` s): :class:`LockTimeoutError` names the lock file.
- Without ``fcntl`` (Windows) only the threads of one process are serialised; a warning says so once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX only; Windows is not a target, but importing the package must not fail there
    import fcntl
except ImportError:  # pragma: no cover - exercised only on Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Seconds to wait for a lock held by another process before giving up with :class:`LockTimeoutError`.
LOCK_TIMEOUT = 60.0
#: Whether locks reach other processes (False only where ``fcntl`` is missing).
INTERPROCESS = fcntl is not None


class LockTimeoutError(TimeoutError):
    """Another process held the lock for longer than the timeout; nothing was written."""

    def __init__(self, path: Path, timeout: float):
        super().__init__(f"{path}: still locked by another process after {timeout:g} s; nothing was written "
                         f"(another extract-trainset app or export is busy on this experiment; try again)")
        self.path = path


class _PathLock:
    """State of one lock file in this process: a re-entrant thread lock, the nesting depth, the open descriptor."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_REGISTRY: dict[str, _PathLock] = {}
_REGISTRY_LOCK = threading.Lock()
_WARNED = False


def lock_path_for(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` in the same folder."""
    t = Path(target)
    return t.parent / f".{t.name}.lock"


def _open_and_lock(path: Path, timeout: float) -> int | None:
    global _WARNED
    if fcntl is None:
        if not _WARNED:
            log.warning("fcntl is not available: %s only serialises threads of this process, not other processes",
                        path)
            _WARNED = True
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o666)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(path, timeout) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, timeout: float | None = None) -> Iterator[Path]:
    """Hold the exclusive lock on the lock file ``path`` (created if missing) for the ``with`` block.

    Re-entrant in the holding thread; other threads of this process and other processes wait (at most ``timeout``
    seconds, default :data:`LOCK_TIMEOUT`, then :class:`LockTimeoutError`)."""
    p = Path(os.path.abspath(path))
    with _REGISTRY_LOCK:
        state = _REGISTRY.setdefault(str(p), _PathLock())
    wait = LOCK_TIMEOUT if timeout is None else float(timeout)
    if not state.rlock.acquire(timeout=wait):
        raise LockTimeoutError(p, wait)
    try:
        if state.depth == 0:
            state.fd = _open_and_lock(p, wait)
        state.depth += 1
        try:
            yield p
        finally:
            state.depth -= 1
            if state.depth == 0 and state.fd is not None:
                fd, state.fd = state.fd, None
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
    finally:
        state.rlock.release()


def locked_for(target: str | os.PathLike, timeout: float | None = None) -> contextlib.AbstractContextManager[Path]:
    """:func:`file_lock` on the lock file of ``target`` (:func:`lock_path_for`)."""
    return file_lock(lock_path_for(target), timeout)
