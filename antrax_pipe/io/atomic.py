"""Atomic file output and the one file-content hash.

Atomic file output: write to a temporary file in the target's directory, then rename over the target.

A crash or a killed cluster job therefore never leaves a half-written ``autoids_<m>.csv`` (or model, or report) that
a later step would take for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed to ``target``, on error removed.

    ``suffix`` defaults to the target's own suffix, because some writers (Keras, h5py) decide the format by it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.tmp-", suffix=target.suffix if suffix is None else suffix, dir=target.parent
    )
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by the lab
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically, with LF line ends exactly as given (no newline translation)."""
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
    return Path(target)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Content hash of a file, read in 1 MiB blocks: what names a classifier, an example or a result exactly (the one
    hash helper; provenance, trainset fingerprints and manifests all use it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
