"""Provenance: what produced each result — the environment of a job (Python, library versions, host, GPUs,
batch-system job ids), the code version (antrax-pipe version + git commit), and the provenance document written next
to every ``autoids_<m>.csv`` (``labels/antrax-pipe/autoids_<m>.json``: classifier path + sha256, thresholds, inputs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._version import __version__
from .io.atomic import file_sha256
from .io.probabilities import ProbabilitiesFile

PROVENANCE_FORMAT = "antrax-pipe-provenance-1"
JOB_RECORD_FORMAT = "antrax-pipe-job-record-1"
#: environment variables naming the batch-system job and the GPUs it was given
_BATCH_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION", "SLURM_STEP_ID",
               "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "LSB_JOBID", "LSB_QUEUE",
               "CUDA_VISIBLE_DEVICES")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_stamp(path: Path) -> dict[str, Any]:
    """Path, size and mtime (not a hash: image files can be many GB; the classifier is hashed instead)."""
    st = Path(path).stat()
    mtime = datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(timespec="seconds")
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime": mtime}


def _package_version(*names: str) -> str | None:
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def environment_info(tf_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Python, library versions, host, GPUs and batch-system job ids of the running job (no TensorFlow import:
    versions come from the installed package metadata; ``tf_info`` is what :func:`configure_tf` found)."""
    import platform
    import socket

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": {
            "tensorflow": _package_version("tensorflow", "tensorflow-cpu", "tensorflow-macos"),
            "keras": _package_version("keras"),
            "numpy": _package_version("numpy"),
            "h5py": _package_version("h5py"),
            "snakemake": _package_version("snakemake"),
        },
        "batch": {k: os.environ[k] for k in _BATCH_VARS if k in os.environ},
    }
    if tf_info is not None:
        env["tensorflow_devices"] = dict(tf_info)
        env["gpu"] = bool(tf_info.get("gpus"))
    return env


def _git_commit(start: Path) -> str | None:
    """HEAD commit of the checkout holding ``start``, read from ``.git`` directly (no git binary needed)."""
    for d in (start, *start.parents):
        g = d / ".git"
        if g.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = g.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            g = (d / text.split(":", 1)[1].strip()).resolve()
        if not g.is_dir():
            continue
        try:
            head = (g / "HEAD").read_text(encoding="utf-8").strip()
            if not head.startswith("ref:"):
                return head or None
            ref = head[4:].strip()
            common = g
            if (g / "commondir").is_file():
                common = (g / (g / "commondir").read_text(encoding="utf-8").strip()).resolve()
            for base in (g, common):
                if (base / ref).is_file():
                    return (base / ref).read_text(encoding="utf-8").strip()
            packed = common / "packed-refs"
            if packed.is_file():
                for line in packed.read_text(encoding="utf-8").splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
        except OSError:
            return None
        return None
    return None


def code_version() -> dict[str, Any]:
    """antrax-pipe version, where it runs from and its git commit (None outside a git checkout)."""
    src = Path(__file__).resolve().parent
    return {"antrax_pipe": __version__, "source": str(src), "git_commit": _git_commit(src.parent)}


def provenance_record(autoids: Path, probs: Path, params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The provenance document of one ``autoids_<m>.csv``: classifier path + sha256 (as hashed by the
    classification job, from the probabilities file), thresholds, inputs, environments and code version."""
    with ProbabilitiesFile(probs) as pf:
        attrs, classes = dict(pf.attrs), list(pf.classes)
    clf_path = str(Path(attrs["classifier_path"]).resolve()) if attrs.get("classifier_path") else ""
    clf_hash = str(attrs.get("classifier_sha256") or "")
    job = json.loads(attrs["job_record"]) if attrs.get("job_record") else None
    doc: dict[str, Any] = {
        "format": PROVENANCE_FORMAT,
        "created": now(),
        "autoids": str(Path(autoids).resolve()),  # the real place, not the results/sessions link
        "autoids_sha256": file_sha256(autoids),
        **extra,
        "classifier": {
            "path": clf_path,
            "sha256": clf_hash,
            "classes": classes,
        },
        "aggregation": dict(params),
        "probabilities": {
            "path": str(Path(probs).absolute()),
            "created": attrs.get("created"),
            "n_images": int(attrs["n_images"]) if "n_images" in attrs else None,
            "batch_size": int(attrs["batch_size"]) if "batch_size" in attrs else None,
        },
        "images": (job or {}).get("images") or [{"path": x} for x in json.loads(attrs.get("image_files") or "[]")],
        "classify_job": {"created": job.get("created"), "threads": job.get("threads"),
                         "environment": job.get("environment"), "code": job.get("code")} if job else None,
        "aggregate_job": {"environment": environment_info(), "code": code_version()},
    }
    return doc


#: Environment variables through which a batch system hands a job its GPUs.
_GPU_VARS = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES", "LSB_BIND_GPU")


def gpu_allocation() -> str | None:
    """What the batch system says about GPUs given to this job (e.g. ``SLURM_JOB_GPUS=0``), None when it gave none.

    ``CUDA_VISIBLE_DEVICES`` empty or ``-1`` means "no GPU" and does not count."""
    for k in _GPU_VARS:
        v = os.environ.get(k, "").strip()
        if v and v not in ("-1", "0") if k == "SLURM_GPUS_ON_NODE" else v and v != "-1":
            return f"{k}={v}"
    return None
