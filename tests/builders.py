"""Write anTraX experiment directories the way anTraX/MATLAB does, from real labelled blob images.

Why: readers and the workflow must be tested against files that look like the real thing (MAT v7.3 = HDF5 behind a
512-byte user block, one dataset per tracklet, MATLAB's transposed black-background layout, byte-sorted keys,
``frame_passed`` logicals, parted movies, several sessions) and against real images with known ground truth, not
against synthetic noise. Spec: /work/shared/reference/antrax-spec.md §1-§5, §11.

Everything here is deterministic for a given seed. The only process-wide state is an ``lru_cache`` of the trainset
tarball's member index (reading the index costs ~1.5 s).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import struct
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import h5py
import numpy as np

from antrax_pipe.io.labels import format_labels
from antrax_pipe.model import LabelSet, TrackletName

#: The shared real trainset (anTraX example data, GPL-3.0; see /work/shared/data/README.md).
TRAINSET_TARBALL = Path(os.environ.get("ANTRAX_TRAINSET_TARBALL", "/work/shared/data/antrax-demo-trainset.tar.gz"))
#: 48-px experiment with the most ID tracklets in the tarball, and the experiment holding most NoAnt tracklets.
EXP_T12 = "15_10_08_15_47_56_colony_tracking_t12"
EXP_FOR1 = "FOR1_1-8_2018_05_22_09_53_07_cam_1"

#: A fixed creation date keeps the written files byte-identical between runs.
DEFAULT_CREATED = datetime(2020, 4, 30, 12, 0, 0)

JS16_LABELS_TEXT = (
    "".join(f"{a}{b}\tant_labels\n" for a in "BGOP" for b in "BGOP")
    + "NoAnt\tnoant_labels\nUnknown\tother_labels\n"
    + "".join(f"{c}\ttagcolors\n" for c in "BGOP")
)


def make_labelset(ids: Sequence[str], noant: Sequence[str] = ("NoAnt",), other: Sequence[str] = ("Unknown",),
                  tagcolors: Sequence[str] = ("B", "G", "O", "P")) -> LabelSet:
    """A LabelSet as MATLAB's save_labels would order it (sorted within each category)."""
    return LabelSet({
        "ant_labels": tuple(sorted(ids)),
        "noant_labels": tuple(sorted(noant)),
        "other_labels": tuple(sorted(other)),
        "tagcolors": tuple(sorted(tagcolors)),
    })


# --------------------------------------------------------------------------------------------------------------------
# MAT v7.3 (HDF5 + user block)
# --------------------------------------------------------------------------------------------------------------------


def mat73_header(created: datetime | None = None) -> bytes:
    """The 512-byte user block MATLAB puts in front of a v7.3 file: 116 bytes of text, 8 bytes subsystem offset,
    version 0x0200 and the endian indicator ``IM`` (little-endian writer), zero-padded."""
    created = created or DEFAULT_CREATED
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created:%a %b %d %H:%M:%S %Y} HDF5 schema 1.00 ."
    head = text.encode("ascii").ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0200) + b"IM"
    return head.ljust(512, b"\x00")


def _matlab_class_attr(obj: h5py.HLObject, cls: str) -> None:
    # MATLAB writes MATLAB_class as a fixed-length ASCII string; np.bytes_ makes h5py do the same.
    obj.attrs.create("MATLAB_class", np.bytes_(cls))


def write_mat73(
    path: str | Path,
    datasets: Mapping[str, np.ndarray],
    attrs_class: str = "uint8",
    *,
    extra_attrs: Mapping[str, object] | None = None,
    refs: bool = False,
    seed: int = 0,
    created: datetime | None = None,
    compression: int | None = 3,
) -> Path:
    """Write ``datasets`` (already in h5py layout) as a MATLAB v7.3 file, one top-level dataset per key.

    Keys are created in a seed-shuffled order on purpose: HDF5 (old-style groups, as MATLAB writes) iterates them
    byte-sorted regardless, and readers must not depend on creation order. Non-empty arrays are chunked (one leading
    slice per chunk) and gzip-compressed like MATLAB does. ``refs`` adds ``#refs#``/``#subsystem#`` groups, which
    MATLAB creates when a file holds cells or objects and which readers must skip.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(datasets)
    order = np.random.default_rng(seed).permutation(len(keys))
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        for i in order:
            key = keys[i]
            a = np.asarray(datasets[key])
            kwargs: dict = {"track_times": False}
            if a.size and compression is not None:
                kwargs.update(chunks=(1,) + a.shape[1:] if a.ndim > 1 else a.shape, compression="gzip",
                              compression_opts=compression)
            ds = f.create_dataset(key, data=a, **kwargs)
            _matlab_class_attr(ds, attrs_class)
            for k, v in (extra_attrs or {}).items():
                ds.attrs[k] = v
        if refs:
            g = f.create_group("#refs#")
            e = g.create_dataset("a", data=np.zeros(2, np.uint64), track_times=False)
            _matlab_class_attr(e, "double")
            e.attrs["MATLAB_empty"] = np.uint8(1)
            s = f.create_group("#subsystem#")
            m = s.create_dataset("MCOS", data=np.arange(6, dtype=np.uint32).reshape(1, 6), track_times=False)
            _matlab_class_attr(m, "FileWrapper__")
    with open(path, "r+b") as fh:
        fh.write(mat73_header(created))
    return path


def matlab_image_stack(images: np.ndarray) -> np.ndarray:
    """(N,H,W,3) white-background RGB → what MATLAB stores: black background, h5py shape (N,3,W,H), or (3,W,H)
    for a one-frame tracklet (MATLAB drops the trailing singleton dimension of [H W 3 1])."""
    a = np.array(images, dtype=np.uint8, copy=True)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected (N,H,W,3) images, got {a.shape}")
    a[(a == 255).all(axis=-1)] = 0  # inverse of anTraX's make_white_bg
    stored = np.ascontiguousarray(a.transpose(0, 3, 2, 1))
    return stored[0] if stored.shape[0] == 1 else stored


def antrax_view(images: np.ndarray) -> np.ndarray:
    """What anTraX (and our reader) returns for images written with :func:`matlab_image_stack`: black→white in
    all channels. Equal to the input unless the input had pure-black pixels."""
    a = np.array(images, dtype=np.uint8, copy=True)
    if a.ndim == 3:
        a = a[None]
    a[(a == 255).all(axis=-1)] = 0
    a[a.max(axis=-1) == 0] = 255
    return a


def write_images_mat(path: str | Path, tracklets: Mapping[str, np.ndarray], *, refs: bool = False, seed: int = 0,
                     created: datetime | None = None) -> Path:
    """``images_<m>.mat``: tracklet name → (N,H,W,3) white-background RGB images."""
    return write_mat73(path, {k: matlab_image_stack(v) for k, v in tracklets.items()}, "uint8", refs=refs,
                       seed=seed, created=created)


def write_frame_passed(path: str | Path, passed: Mapping[str, np.ndarray], *, seed: int = 0,
                       created: datetime | None = None) -> Path:
    """``frame_passed_<m>.mat``: per tracklet a MATLAB K×1 logical → h5py uint8 (1,K), MATLAB_int_decode=1."""
    data = {k: np.asarray(v, dtype=bool).astype(np.uint8).reshape(1, -1) for k, v in passed.items()}
    return write_mat73(path, data, "logical", extra_attrs={"MATLAB_int_decode": np.int32(1)}, seed=seed,
                       created=created)


def synthetic_tracklet(n: int, h: int = 12, w: int = 10, seed: int = 0) -> np.ndarray:
    """(n,h,w,3) white-background images with a random-coloured blob: distinct values per axis, so that any axis
    mix-up (H/W swap, channel order) changes the result. No pixel is pure black, so the black↔white round trip is
    exact."""
    rng = np.random.default_rng(seed)
    a = np.full((n, h, w, 3), 255, np.uint8)
    a[:, 1:h - 2, 2:w - 1] = rng.integers(1, 255, (n, h - 3, w - 3, 3), dtype=np.uint8)
    return a


# --------------------------------------------------------------------------------------------------------------------
# MAT v5 (Trck.mat, labels.mat) — hand-written bytes
# --------------------------------------------------------------------------------------------------------------------

_MI_INT8, _MI_INT32, _MI_UINT16, _MI_UINT32, _MI_MATRIX = 1, 5, 4, 6, 14
_MX_STRUCT, _MX_CHAR = 2, 4


def _mat5_element(mtype: int, data: bytes) -> bytes:
    if 0 < len(data) <= 4:  # "small data element": type and size packed into one 4-byte tag
        return struct.pack("<HH", mtype, len(data)) + data.ljust(4, b"\x00")
    return struct.pack("<II", mtype, len(data)) + data + b"\x00" * (-len(data) % 8)


def _mat5_matrix(name: str, cls: int, dims: tuple[int, int], body: bytes) -> bytes:
    sub = (_mat5_element(_MI_UINT32, struct.pack("<II", cls, 0)) + _mat5_element(_MI_INT32, struct.pack("<2i", *dims))
           + _mat5_element(_MI_INT8, name.encode("ascii")) + body)
    return struct.pack("<II", _MI_MATRIX, len(sub)) + sub


def _mat5_char(name: str, text: str) -> bytes:
    return _mat5_matrix(name, _MX_CHAR, (1, len(text)), _mat5_element(_MI_UINT16, text.encode("utf-16-le")))


def _mat5_struct(name: str, fields: Mapping[str, str]) -> bytes:
    names = b"".join(k.encode("ascii").ljust(32, b"\x00") for k in fields)
    body = _mat5_element(_MI_INT32, struct.pack("<i", 32)) + _mat5_element(_MI_INT8, names)
    body += b"".join(_mat5_char("", v) for v in fields.values())
    return _mat5_matrix(name, _MX_STRUCT, (1, 1), body)


def mat5_bytes(varname: str, fields: Mapping[str, str], created: datetime | None = None) -> bytes:
    """A valid MAT v5 file holding one 1×1 struct variable ``varname`` with char fields.

    MATLAB's Trck.mat holds a ``trhandles`` object; anTraX only checks that the file exists (Python) or that it has a
    variable named ``Trck`` (MATLAB find_sessions), so a struct with the session's names is a faithful stand-in.
    """
    created = created or DEFAULT_CREATED
    text = f"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: {created:%a %b %d %H:%M:%S %Y}"
    header = text.encode("ascii").ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0100) + b"IM"
    return header + _mat5_struct(varname, fields)


def read_mat5_variables(path: str | Path) -> list[tuple[str, int]]:
    """(name, mx class) of the top-level variables of an uncompressed little-endian MAT v5 file (builder self-check)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"MATLAB 5.0 MAT-file") or data[126:128] != b"IM":
        raise ValueError(f"{path}: not a little-endian MAT v5 file")
    out, pos = [], 128
    while pos < len(data):
        mtype, nbytes = struct.unpack_from("<II", data, pos)
        if mtype != _MI_MATRIX:
            raise ValueError(f"{path}: unexpected element type {mtype} at {pos}")
        sub = data[pos + 8: pos + 8 + nbytes]
        cls = struct.unpack_from("<I", sub, 8)[0] & 0xFF  # after the 8-byte array-flags tag
        p = 16 + 16  # flags element (16) + dims element (8 tag + 8 data)
        ntype_size = struct.unpack_from("<I", sub, p)[0]
        if ntype_size >> 16:  # small element
            n = ntype_size >> 16
            name = sub[p + 4: p + 4 + n].decode("ascii")
        else:
            n = struct.unpack_from("<I", sub, p + 4)[0]
            name = sub[p + 8: p + 8 + n].decode("ascii")
        out.append((name, cls))
        pos += 8 + nbytes
    return out


def write_trck_mat(path: str | Path, expname: str, session: str, mtime: float | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mat5_bytes("Trck", {"expname": expname, "sessionname": session}))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# --------------------------------------------------------------------------------------------------------------------
# parameters/: labels.csv, movies_info.txt, prmtrs.json
# --------------------------------------------------------------------------------------------------------------------


def labels_text(labels: LabelSet, fmt: str = "tab") -> str:
    """labels.csv content. ``tab``: MATLAB save_labels; ``comma``: the old one-row-per-category format (needs
    labels.mat beside it); ``nonant``: tab format with the ``nonant_labels`` spelling that anTraX renames."""
    if fmt == "tab":
        return format_labels(labels)
    if fmt == "nonant":
        return format_labels(LabelSet({("nonant_labels" if k == "noant_labels" else k): v
                                       for k, v in labels.categories.items()}))
    if fmt == "comma":
        return "".join(",".join((cat, *labs)) + "\n" for cat, labs in labels.categories.items())
    raise ValueError(f"unknown labels format {fmt!r}")


def write_labels_files(paramdir: str | Path, labels: LabelSet, fmt: str = "tab") -> Path:
    """Write ``labels.csv`` (and ``labels.mat`` for the old comma format, which is how anTraX selects it)."""
    paramdir = Path(paramdir)
    paramdir.mkdir(parents=True, exist_ok=True)
    path = paramdir / "labels.csv"
    path.write_text(labels_text(labels, fmt), encoding="utf-8", newline="")
    if fmt == "comma":
        (paramdir / "labels.mat").write_bytes(mat5_bytes("labels", {"source": "old labels format"}))
    return path


def movies_info_text(expname: str, nframes: Mapping[int, int], fps: int = 10, width: int = 960, height: int = 720,
                     with_dat: bool = False) -> str:
    """movies_info.txt as ``expreader/init.m`` writes it: space-delimited, header, fi/ff cumulative 1-based frames."""
    movies = sorted(nframes)
    subdir = f"{movies[0]}_{movies[-1]}"
    cols = ["index", "subdir", "name", "movfile"] + (["datfile"] if with_dat else []) + [
        "container", "filesize", "width", "height", "pixel", "fps", "starttime", "duration", "nframes", "channels",
        "framesize_1", "framesize_2", "framesize_3", "framebytes"] + (["nframes_avi", "duration_avi"] if with_dat
                                                                      else []) + ["fi", "ff"]
    lines = [" ".join(cols)]
    fi = 1
    for m in movies:
        n = nframes[m]
        row = [m, subdir, f"{expname}_{m}", f"{expname}_{m}.mp4"] + ([f"{expname}_{m}.dat"] if with_dat else []) + [
            "mov,mp4,m4a,3gp,3g2,mj2", 1000 * n + 7 * m, width, height, "yuvj420p", fps, 0, n // fps, n, 3, width,
            height, 3, width * height * 3] + ([n, n // fps] if with_dat else []) + [fi, fi + n - 1]
        lines.append(" ".join(str(x) for x in row))
        fi += n
    return "\n".join(lines) + "\n"


def write_session(expdir: str | Path, session: str, labels: LabelSet, nframes: Mapping[int, int], *,
                  labels_format: str = "tab", trck_mtime: float | None = None, fps: int = 10) -> Path:
    """A session's ``parameters/`` (Trck.mat, labels.csv, movies_info.txt, prmtrs.json) and empty work dirs."""
    expdir = Path(expdir)
    sdir = expdir / session
    pdir = sdir / "parameters"
    for d in ("images", "tracklets", "graphs", "parameters"):  # create_tracking_directory.m
        (sdir / d).mkdir(parents=True, exist_ok=True)
    write_labels_files(pdir, labels, labels_format)
    (pdir / "movies_info.txt").write_text(movies_info_text(expdir.name, nframes, fps), encoding="utf-8")
    prmtrs = {"expname": expdir.name, "sessionname": session, "tagged": True, "tracking_saveimages": True,
              "geometry_rscale": 9.234e-05, "thrsh_meanareamax": 3.2e-06, "thrsh_meanareamin": 5e-07,
              "classification_minECCENT": 0.85, "classification_maxECCENT": 0.99,
              "segmentation_color_correction_for_classification": True, "segmentation_invert": False,
              "tracking_max_tracklet_length": 600, "movlist": sorted(nframes)}
    (pdir / "prmtrs.json").write_text(json.dumps(prmtrs, indent=1) + "\n", encoding="utf-8")
    write_trck_mat(pdir / "Trck.mat", expdir.name, session, trck_mtime)
    return sdir


# --------------------------------------------------------------------------------------------------------------------
# Real images from the shared trainset tarball
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealTracklet:
    """A real labelled tracklet: ``key`` = ``<expname>.<tracklet>``, ``images`` (N,H,W,3) uint8 RGB white-bg,
    ``frames`` = the frame numbers of its PNG names (absolute frame or per-tracklet index, as exported)."""

    key: str
    label: str
    images: np.ndarray = field(repr=False)
    frames: tuple[int, ...]

    @property
    def expname(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def tracklet(self) -> str:
        return self.key.split(".", 1)[1]

    def __len__(self) -> int:
        return len(self.images)


#: label → tracklet key → ((frame, member offset, member size), ...) sorted by frame
TrainsetIndex = dict[str, dict[str, tuple[tuple[int, int, int], ...]]]


def _scan_tar_headers(tarball: Path) -> list[tuple[str, int, int]] | None:
    """(name, data offset, size) of every regular file of a plain ustar/GNU tar.gz, by walking the 512-byte headers
    of the decompressed stream (~5x faster than tarfile for 29k members). None if it meets anything unusual (long
    names, pax headers, bad checksum): the caller then falls back to tarfile."""
    out = []
    buf = bytearray()
    base = 0  # stream offset of buf[0]
    pos = 0  # stream offset of the next header
    with gzip.open(tarball, "rb") as gz:
        while True:
            while pos + 512 > base + len(buf):
                chunk = gz.read(1 << 20)
                if not chunk:
                    return out if not buf[pos - base:].strip(b"\x00") else None
                buf += chunk
            h = bytes(buf[pos - base: pos - base + 512])
            if h == b"\x00" * 512:
                return out
            try:
                chk = int(h[148:156].split(b"\x00")[0].strip() or b"0", 8)
                size = int(h[124:136].split(b"\x00")[0].strip() or b"0", 8)
            except ValueError:
                return None
            if chk != sum(h[:148]) + 256 + sum(h[156:]):
                return None
            typ = h[156:157]
            if typ in (b"x", b"g"):  # pax header: its records may override the next member's path/size
                while pos + 512 + size > base + len(buf):
                    chunk = gz.read(1 << 20)
                    if not chunk:
                        return None
                    buf += chunk
                rec = bytes(buf[pos - base + 512: pos - base + 512 + size])
                if typ == b"g" or any(k in rec for k in (b" path=", b" size=", b" linkpath=")):
                    return None
                pos += 512 + (size + 511) // 512 * 512
                continue
            if typ not in (b"0", b"\x00", b"5"):
                return None
            name = h[:100].split(b"\x00")[0].decode()
            if h[257:262] == b"ustar" and h[345:500].strip(b"\x00"):
                name = h[345:500].split(b"\x00")[0].decode() + "/" + name
            if typ != b"5":
                out.append((name, pos + 512, size))
            pos += 512 + (size + 511) // 512 * 512
            if pos - base > (4 << 20):  # drop consumed data
                cut = pos - base - 512
                del buf[:cut]
                base += cut


@functools.lru_cache(maxsize=2)
def trainset_index(tarball: str | Path = TRAINSET_TARBALL) -> TrainsetIndex:
    """Member index of a trainset tarball (``examples/<label>/<exp>.<tracklet>.<frame>.png``), cached per process.

    Treat the result as read-only. Offsets let :func:`load_real_tracklets` read only the members it needs.
    """
    tarball = Path(tarball)
    if not tarball.is_file():
        raise FileNotFoundError(f"{tarball}: trainset tarball not found (set ANTRAX_TRAINSET_TARBALL)")
    members = _scan_tar_headers(tarball)
    if members is None:
        with tarfile.open(tarball, "r:gz") as tf:
            members = [(ti.name, ti.offset_data, ti.size) for ti in tf if ti.isfile()]
    idx: dict[str, dict[str, list[tuple[int, int, int]]]] = {}
    for name, offset, size in members:
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "examples" or not parts[2].endswith(".png"):
            continue
        key, _, frame = parts[2][: -len(".png")].rpartition(".")
        if key and frame.isdigit():
            idx.setdefault(parts[1], {}).setdefault(key, []).append((int(frame), offset, size))
    return {lab: {k: tuple(sorted(v)) for k, v in keys.items()} for lab, keys in idx.items()}


def multi_label_keys(index: TrainsetIndex) -> set[str]:
    """Tracklet keys whose frames are filed under more than one label (ambiguous ground truth)."""
    seen: dict[str, str] = {}
    multi = set()
    for lab, keys in index.items():
        for k in keys:
            if seen.setdefault(k, lab) != lab:
                multi.add(k)
    return multi


def _even_pick(n: int, k: int | None) -> list[int]:
    if k is None or n <= k:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def _decode_png(data: bytes, where: str, size: int | None) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{where}: not a decodable PNG")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if size is not None and img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def load_real_tracklets(selection: Mapping[str, Sequence[str]], max_frames: int | None = None,
                        size: int | Mapping[str, int | None] | None = None,
                        tarball: str | Path = TRAINSET_TARBALL) -> dict[str, list[RealTracklet]]:
    """Read the given tracklets (label → keys) from the tarball: only their members, in one forward pass.

    ``max_frames`` keeps evenly spaced frames of longer tracklets (more pose variety than the first k);
    ``size`` (one for all, or per label) resizes to size×size with INTER_AREA (e.g. 86-px FOR1 NoAnt images to 48).
    """
    index = trainset_index(str(tarball))
    wanted: list[tuple[int, int, str, str, int]] = []  # (offset, size, label, key, frame)
    for label, keys in selection.items():
        for key in keys:
            members = index.get(label, {}).get(key)
            if not members:
                raise KeyError(f"{tarball}: no tracklet {key!r} under label {label!r}")
            for i in _even_pick(len(members), max_frames):
                frame, off, sz = members[i]
                wanted.append((off, sz, label, key, frame))
    wanted.sort()
    imgs: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
    with gzip.open(tarball, "rb") as gz:
        for off, sz, label, key, frame in wanted:
            gz.seek(off)
            img = _decode_png(gz.read(sz), f"{tarball}:{label}/{key}.{frame}.png",
                              size.get(label) if isinstance(size, Mapping) else size)
            imgs.setdefault((label, key), []).append((frame, img))
    out: dict[str, list[RealTracklet]] = {}
    for label, keys in selection.items():
        for key in keys:
            fr = sorted(imgs[(label, key)], key=lambda t: t[0])
            out.setdefault(label, []).append(
                RealTracklet(key, label, np.stack([im for _, im in fr]), tuple(f for f, _ in fr)))
    return out


def _experiments_for(experiments: str | Iterable[str] | Mapping[str, str | Iterable[str]] | None,
                     label: str) -> set[str] | None:
    if experiments is None:
        return None
    if isinstance(experiments, Mapping):
        experiments = experiments.get(label)
        if experiments is None:
            return None
    return {experiments} if isinstance(experiments, str) else set(experiments)


def select_tracklets(index: TrainsetIndex, labels: Iterable[str], n_tracklets_per_label: int | Mapping[str, int],
                     seed: int = 0, exclude_tracklets: Iterable[str] = (),
                     experiments: str | Iterable[str] | Mapping[str, str | Iterable[str]] | None = None,
                     single_label_only: bool = False) -> dict[str, list[str]]:
    """Seeded choice of tracklet keys per label (independent per label, so adding a label changes nothing else)."""
    exclude = set(exclude_tracklets) | (multi_label_keys(index) if single_label_only else set())
    out = {}
    for label in labels:
        exps = _experiments_for(experiments, label)
        cands = sorted(k for k in index.get(label, {})
                       if k not in exclude and (exps is None or k.split(".", 1)[0] in exps))
        n = n_tracklets_per_label[label] if isinstance(n_tracklets_per_label, Mapping) else n_tracklets_per_label
        if len(cands) < n:
            raise ValueError(f"label {label!r}: only {len(cands)} eligible tracklets, {n} requested")
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        out[label] = [cands[i] for i in sorted(rng.permutation(len(cands))[:n])]
    return out


def extract_real_examples(dest: str | Path | None, labels: Iterable[str],
                          n_tracklets_per_label: int | Mapping[str, int], max_frames: int | None = None,
                          seed: int = 0, exclude_tracklets: Iterable[str] = (),
                          experiments: str | Iterable[str] | Mapping[str, str | Iterable[str]] | None = None,
                          size: int | Mapping[str, int | None] | None = None,
                          tarball: str | Path = TRAINSET_TARBALL,
                          single_label_only: bool = False) -> dict[str, list[RealTracklet]]:
    """Pick real tracklets per label from the tarball and return them; with ``dest``, also write them as a trainset
    ``dest/examples/<label>/<expname>.<tracklet>.<frame>.png``."""
    labels = list(labels)
    sel = select_tracklets(trainset_index(str(tarball)), labels, n_tracklets_per_label, seed, exclude_tracklets,
                           experiments, single_label_only)
    out = load_real_tracklets(sel, max_frames, size, tarball)
    if dest is not None:
        write_trainset(dest, out)
    return out


def write_trainset(classdir: str | Path, examples: Mapping[str, Sequence[RealTracklet]]) -> Path:
    """anTraX trainset layout: ``classdir/examples/<label>/<expname>.<tracklet>.<frame>.png`` (RGB on disk)."""
    exdir = Path(classdir) / "examples"
    for label, tracklets in examples.items():
        (exdir / label).mkdir(parents=True, exist_ok=True)
        for t in tracklets:
            for frame, img in zip(t.frames, t.images):
                p = exdir / label / f"{t.key}.{frame}.png"
                if not cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"{p}: cv2.imwrite failed")
    return exdir


def read_trainset_dir(examples_dir: str | Path, labels: Iterable[str] | None = None) -> dict[str, list[RealTracklet]]:
    """Read a trainset folder back into RealTracklets (grouped by key, frames sorted numerically)."""
    examples_dir = Path(examples_dir)
    out: dict[str, list[RealTracklet]] = {}
    for ldir in sorted(p for p in examples_dir.iterdir() if p.is_dir()):
        if labels is not None and ldir.name not in labels:
            continue
        groups: dict[str, list[tuple[int, Path]]] = {}
        for p in ldir.glob("*.png"):
            key, _, frame = p.stem.rpartition(".")
            groups.setdefault(key, []).append((int(frame), p))
        for key in sorted(groups):
            fr = sorted(groups[key])
            imgs = np.stack([cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for _, p in fr])
            out.setdefault(ldir.name, []).append(RealTracklet(key, ldir.name, imgs, tuple(f for f, _ in fr)))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Whole experiments
# --------------------------------------------------------------------------------------------------------------------


def tracklet_name(blob_id: int, movie: int, first_frame: int, n_images: int) -> str:
    """``trj_id<k>_ti<m>_<f0>_tf<m>_<f0+n-1>``: the name anTraX gives a tracklet of ``n_images`` frames."""
    return TrackletName(blob_id, movie, first_frame, movie, first_frame + n_images - 1).name


@dataclass
class BuiltExperiment:
    """An experiment written by :func:`build_experiment` and what a correct reader/classifier should find in it."""

    expdir: Path
    session: str
    labels: LabelSet
    truth: dict[int, dict[str, str]]  # movie → tracklet → true label
    images: dict[int, dict[str, np.ndarray]]  # movie → tracklet → (N,H,W,3) as the reader must return it
    passed: dict[int, dict[str, np.ndarray]]  # movie → tracklet → bool per image
    files: dict[int, list[Path]]  # movie → images file(s), parts in order
    sources: dict[int, dict[str, str]]  # movie → tracklet → source key in the trainset ('' if not real)
    nframes: dict[int, int]

    @property
    def name(self) -> str:
        return self.expdir.name

    @property
    def sessiondir(self) -> Path:
        return self.expdir / self.session

    @property
    def images_dir(self) -> Path:
        return self.sessiondir / "images"

    def sorted_tracklets(self, movie: int) -> list[str]:
        """Tracklets of a movie in HDF5 (byte-sorted) order, per part for parted movies, parts in order."""
        names = self.truth[movie]
        out = []
        for f in self.files[movie]:
            with h5py.File(f, "r") as h:
                out += [k for k in h.keys() if not k.startswith("#") and k in names]
        return out


def _as_item(item) -> tuple[str, np.ndarray, str]:
    if isinstance(item, RealTracklet):
        return item.label, item.images, item.key
    label, images, *rest = item
    return label, np.asarray(images, np.uint8), (rest[0] if rest else "")


def build_experiment(
    root: str | Path,
    name: str,
    movies: Mapping[int, Sequence[RealTracklet | tuple]],
    labels: LabelSet,
    session: str = "antrax",
    parted: Mapping[int, int] | None = None,
    with_passed: bool = True,
    seed: int = 0,
    *,
    trainset: Mapping[str, Sequence[RealTracklet]] | None = None,
    labels_format: str = "tab",
    nframes: int | Mapping[int, int] = 6000,
    refs: bool = False,
    pass_rate: float = 0.85,
    trck_mtime: float | None = None,
) -> BuiltExperiment:
    """Write ``root/name`` as anTraX would leave it after tracking: session parameters, ``images_<m>.mat`` (or parts
    ``images_<m>_p<k>.mat``), ``frame_passed_<m>[_p<k>].mat``, and optionally ``classifier/examples``.

    ``movies`` maps movie → tracklets given as RealTracklet or ``(label, images[, source_key])``. Each tracklet gets
    a unique anTraX name whose frame span equals its number of images; in a parted movie, part k holds the tracklets
    that start in the k-th frame range. Returns the ground truth.
    """
    rng = np.random.default_rng(seed)
    expdir = Path(root) / name
    parted = dict(parted or {})
    nf = {m: (nframes[m] if isinstance(nframes, Mapping) else nframes) for m in movies}
    write_session(expdir, session, labels, nf, labels_format=labels_format, trck_mtime=trck_mtime)
    images_dir = expdir / session / "images"
    built = BuiltExperiment(expdir, session, labels, {}, {}, {}, {}, {}, nf)
    for m in sorted(movies):
        items = [_as_item(it) for it in movies[m]]
        nparts = parted.get(m, 1)
        part_len = nf[m] // nparts
        per_part: list[dict[str, np.ndarray]] = [{} for _ in range(nparts)]
        per_part_passed: list[dict[str, np.ndarray]] = [{} for _ in range(nparts)]
        truth, imgs, passed, sources = {}, {}, {}, {}
        for i, (label, images, source) in enumerate(items):
            if images.ndim == 3:
                images = images[None]
            n = len(images)
            part = i % nparts
            lo, hi = part * part_len + 1, (part + 1) * part_len - n + 1
            if hi < lo:
                raise ValueError(f"movie {m}: tracklet of {n} images does not fit in {part_len} frames")
            while True:
                tname = tracklet_name(int(rng.integers(1, 40)), m, int(rng.integers(lo, hi + 1)), n)
                if tname not in truth:
                    break
            p = rng.random(n) < pass_rate
            per_part[part][tname] = images
            per_part_passed[part][tname] = p
            truth[tname], imgs[tname], passed[tname], sources[tname] = label, antrax_view(images), p, source
        files = []
        for k in range(nparts):
            suffix = f"{m}_p{k + 1}" if nparts > 1 else f"{m}"
            files.append(write_images_mat(images_dir / f"images_{suffix}.mat", per_part[k], refs=refs,
                                          seed=seed + 101 * m + k))
            if with_passed:
                write_frame_passed(images_dir / f"frame_passed_{suffix}.mat", per_part_passed[k],
                                   seed=seed + 103 * m + k)
        built.truth[m], built.images[m], built.passed[m], built.sources[m] = truth, imgs, passed, sources
        built.files[m] = files
    if trainset:
        write_trainset(expdir / session / "classifier", trainset)
    return built


def add_session(expdir: str | Path, session: str, labels: LabelSet, mtime: float,
                nframes: Mapping[int, int] | None = None) -> Path:
    """Another session of an existing experiment whose Trck.mat has the given mtime (anTraX picks the newest)."""
    return write_session(expdir, session, labels, nframes or {1: 6000}, trck_mtime=mtime)


def write_ground_truth(path: str | Path, built: BuiltExperiment) -> Path:
    """``movie,tracklet,label`` rows, movies ascending, tracklets in file (byte-sorted) order."""
    lines = ["movie,tracklet,label"]
    for m in sorted(built.truth):
        lines += [f"{m},{t},{built.truth[m][t]}" for t in built.sorted_tracklets(m)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


# --------------------------------------------------------------------------------------------------------------------
# Malformed variants
# --------------------------------------------------------------------------------------------------------------------

MALFORMED_KINDS = ("truncated", "corrupt_chunk", "missing", "wrong_dtype", "matlab_empty", "zero_length", "group",
                   "wrong_shape")


def truncate_file(path: str | Path, keep: int | float = 0.5) -> Path:
    """Cut a file (as a killed copy or a still-running writer would leave it); ``keep`` = bytes or fraction."""
    path = Path(path)
    size = path.stat().st_size
    n = int(size * keep) if isinstance(keep, float) else int(keep)
    with open(path, "r+b") as fh:
        fh.truncate(n)
    return path


def corrupt_chunk(path: str | Path, tracklet: str) -> Path:
    """Overwrite the first compressed chunk of ``tracklet`` with garbage: the file opens, only that tracklet fails."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        info = f[tracklet].id.get_chunk_info(0)
        off, size = info.byte_offset, info.size
    with open(path, "r+b") as fh:
        fh.seek(off)
        fh.write((b"\xde\xad\xbe\xef" * (size // 4 + 1))[:size])
    return path


def make_malformed_images(path: str | Path, kind: str, good: Mapping[str, np.ndarray],
                          bad: str = "trj_id9_ti1_100_tf1_104") -> tuple[Path, str]:
    """An ``images_<m>.mat`` with the good tracklets plus one broken tracklet ``bad`` of the given ``kind``.

    Returns (path, bad tracklet name). For ``missing`` the bad name is absent from the file (it would be listed
    elsewhere, e.g. in frame_passed or a ground truth); for ``truncated`` the whole file is cut.
    """
    if kind not in MALFORMED_KINDS:
        raise ValueError(f"unknown malformed kind {kind!r}; one of {MALFORMED_KINDS}")
    path = Path(path)
    stacks = {k: matlab_image_stack(v) for k, v in good.items()}
    if kind == "corrupt_chunk":
        stacks[bad] = matlab_image_stack(np.full((5, 12, 10, 3), 77, np.uint8))
    write_mat73(path, stacks)
    if kind == "truncated":
        truncate_file(path, 0.5)
    elif kind == "corrupt_chunk":
        corrupt_chunk(path, bad)
    elif kind != "missing":
        with h5py.File(path, "r+") as f:
            if kind == "wrong_dtype":
                ds = f.create_dataset(bad, data=np.zeros((5, 3, 10, 12)), track_times=False)
                _matlab_class_attr(ds, "double")
            elif kind == "matlab_empty":  # MATLAB stores an empty array as its dims, uint64, with MATLAB_empty=1
                ds = f.create_dataset(bad, data=np.zeros(2, np.uint64), track_times=False)
                _matlab_class_attr(ds, "uint8")
                ds.attrs["MATLAB_empty"] = np.uint8(1)
            elif kind == "zero_length":
                ds = f.create_dataset(bad, shape=(0, 3, 10, 12), dtype=np.uint8, track_times=False)
                _matlab_class_attr(ds, "uint8")
            elif kind == "group":
                g = f.create_group(bad)
                _matlab_class_attr(g, "struct")
                g.create_dataset("images", data=np.zeros((3, 10, 12), np.uint8))
            elif kind == "wrong_shape":  # e.g. a grayscale stack
                ds = f.create_dataset(bad, data=np.zeros((5, 10, 12), np.uint8)[:, None].repeat(2, 1),
                                      track_times=False)
                _matlab_class_attr(ds, "uint8")
    return path, bad
