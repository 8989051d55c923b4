#!/usr/bin/env python
"""Benchmark of per-movie classification end to end vs. the model alone, and peak memory.

Builds a real-looking movie — an ``images_<m>.mat`` in the MATLAB v7.3 layout (512-byte user block, one gzip'd uint8
dataset per tracklet, (N,3,W,H)), tracklet lengths heavy-tailed like real ones (many short, a few up to 600) — then
runs read → preprocess → infer → aggregate → autoids CSV with the anTraX "small" CNN at T=64 and prints:

* end-to-end images/s (``classify_movie`` + ``aggregate_movie`` + ``write_autoids``),
* model-alone images/s (``predict_on_batch`` on already preprocessed batches of the same size), measured in the same
  run before and after the end-to-end pass (the machine is shared; the mean of both is the reference),
* the ratio (target ≥ 0.9) and peak RSS (VmHWM; target ≤ 1.5 GB), overall and for the classification phase alone.

    python bench/classify_bench.py                    # 10,000 tracklets, ~200,000 images of 48 px
    python bench/classify_bench.py --tracklets 1000   # a quicker run
    python bench/classify_bench.py --scale 0.1 --json out.json

The model is untrained (random weights): throughput does not depend on the weights. ``--classifier PATH`` uses a
trained classifier instead (via ``antrax_pipe.classifier.load_classifier``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from antrax_pipe.aggregation import AggregationParams, aggregate_movie
from antrax_pipe.inference import classify_movie, configure_tf
from antrax_pipe.io.autoids import write_autoids
from antrax_pipe.io.images import ImagesFile
from antrax_pipe.model import ClassifierCard, LabelSet
from antrax_pipe.preprocess import preprocess

COLOURS = {"B": (40, 60, 220), "G": (40, 200, 60), "O": (240, 140, 30), "P": (200, 50, 200)}
IDS = [a + b for a in "BGOP" for b in "BGOP"]


# ------------------------------------------------------------------------------------------------ synthetic movie


def tracklet_lengths(n: int, mean: float, rng: np.random.Generator, max_len: int = 600) -> np.ndarray:
    """Heavy-tailed lengths: lognormal (sigma 1.3) with the given mean, clipped to [1, max_len]."""
    sigma = 1.3
    mu = np.log(mean) - sigma**2 / 2
    return np.clip(np.ceil(rng.lognormal(mu, sigma, n)), 1, max_len).astype(int)


def ant_pool(size: int, rng: np.random.Generator, n_ants: int = 64, variants: int = 16) -> np.ndarray:
    """(n_ants, variants, H, W, 3) uint8 black-background blobs: a dark body (ellipse, vertical axis) with two colour
    tags; the variants of one ant differ by noise and a pixel or two of shift, like frames of one tracklet."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n_ants, variants, size, size, 3), np.uint8)
    for a in range(n_ants):
        tag = IDS[a % len(IDS)]
        ry, rx = size * rng.uniform(0.30, 0.42), size * rng.uniform(0.10, 0.16)
        for v in range(variants):
            cy, cx = size / 2 + rng.normal(0, 1.0, 2)
            body = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            img = np.zeros((size, size, 3), np.int16)
            img[body] = rng.integers(30, 80) + rng.integers(-10, 10, (body.sum(), 3))
            for k, col in enumerate(tag):
                ty = cy - ry * (0.15 - 0.45 * k)
                dot = ((yy - ty) ** 2 + (xx - cx) ** 2) <= (rx * 0.8) ** 2
                img[dot] = np.array(COLOURS[col]) + rng.integers(-15, 15, 3)
            out[a, v] = np.clip(img, 0, 255)
            out[a, v][~body] = 0
    return out


def write_movie(path: Path, lengths: np.ndarray, size: int, rng: np.random.Generator) -> None:
    pool = ant_pool(size, rng)
    with h5py.File(path, "w", userblock_size=512) as f:
        for i, n in enumerate(lengths):
            a = rng.integers(len(pool))
            ims = pool[a, rng.integers(pool.shape[1], size=n)]  # (n,H,W,3)
            data = np.ascontiguousarray(ims.transpose(0, 3, 2, 1))  # MATLAB [H W 3 N] as h5py sees it
            if n == 1:
                data = data[0]
            first = 1 + 10 * i
            name = f"trj_id{i + 1}_ti1_{first}_tf1_{first + n - 1}"
            ds = f.create_dataset(name, data=data, chunks=True, compression="gzip", compression_opts=3)
            ds.attrs["MATLAB_class"] = np.bytes_("uint8")


# ------------------------------------------------------------------------------------------------ model


def small_model(target_size: int, n_classes: int):
    """anTraX's ``models.small`` (docs/tracklet-rule.md#architectures): 3 × [Conv 3×3 relu → MaxPool 2 → BN → Dropout .25] → Flatten → BN →
    Dropout → Dense softmax; input 0–255 float, no rescaling (as anTraX)."""
    import keras
    from keras import layers

    blocks = []
    for ch in (64, 128, 256):
        blocks += [layers.Conv2D(ch, 3, activation="relu"), layers.MaxPooling2D(2), layers.BatchNormalization(),
                   layers.Dropout(0.25)]
    return keras.Sequential(
        [keras.Input((target_size, target_size, 3)), *blocks, layers.Flatten(), layers.BatchNormalization(),
         layers.Dropout(0.25), layers.Dense(n_classes, activation="softmax")]
    )


# ------------------------------------------------------------------------------------------------ measurement


def vm(key: str) -> int:
    """VmHWM / VmRSS of this process in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> bool:
    """Reset VmHWM (Linux ≥ 4.0: write 5 to clear_refs), so a phase's own peak can be read."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def model_alone(model, batches: list[np.ndarray], n_images: int, repeats: int = 3) -> float:
    """predict_on_batch images/s over ``n_images`` (cycling the given preprocessed batches); median of repeats."""
    rates = []
    for _ in range(repeats):
        done, k = 0, 0
        t0 = time.perf_counter()
        while done < n_images:
            b = batches[k % len(batches)]
            model.predict_on_batch(b)
            done += len(b)
            k += 1
        rates.append(done / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracklets", type=int, default=10_000)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies --tracklets (e.g. 0.1)")
    ap.add_argument("--mean-length", type=float, default=20.0, help="mean images per tracklet (heavy-tailed)")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--target-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--prefetch", type=int, default=2, help="batches read ahead by the reader thread (0: none)")
    ap.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: TF default, all cores)")
    ap.add_argument("--model-alone-images", type=int, default=4096, help="images per model-alone repeat")
    ap.add_argument("--classifier", type=Path, help="a trained classifier instead of the untrained small model")
    ap.add_argument("--workdir", type=Path, help="where to build the movie (default: a temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    n_tracklets = max(1, round(args.tracklets * args.scale))
    rng = np.random.default_rng(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="classify_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"tracklets": n_tracklets, "image_size": args.image_size, "batch_size": args.batch_size}
    try:
        # -- the movie
        lengths = tracklet_lengths(n_tracklets, args.mean_length, rng)
        images = work / "images_1.mat"
        t0 = time.perf_counter()
        write_movie(images, lengths, args.image_size, rng)
        srt = np.sort(lengths)[::-1]
        res.update(
            images=int(lengths.sum()), build_s=round(time.perf_counter() - t0, 1),
            file_mb=round(images.stat().st_size / 2**20, 1),
            length_median=int(np.median(lengths)), length_p90=int(np.percentile(lengths, 90)),
            length_max=int(lengths.max()), share_one_frame=round(float(np.mean(lengths == 1)), 3),
            share_images_longest_10pct=round(float(srt[: max(1, n_tracklets // 10)].sum() / srt.sum()), 3),
        )
        print(f"movie: {n_tracklets} tracklets, {res['images']} images of {args.image_size}px, "
              f"{res['file_mb']} MB, built in {res['build_s']} s; lengths median {res['length_median']}, "
              f"p90 {res['length_p90']}, max {res['length_max']}, {res['share_one_frame']:.0%} one-frame, "
              f"longest 10% hold {res['share_images_longest_10pct']:.0%} of images", flush=True)

        # -- TF and the model
        res["tf"] = configure_tf(args.threads or None)
        labels = LabelSet({"ant_labels": tuple(IDS), "noant_labels": ("NoAnt",), "other_labels": ("Multi", "Unknown")})
        if args.classifier:
            from antrax_pipe.classifier import load_classifier

            model, card = load_classifier(args.classifier)
        else:
            classes = sorted([*IDS, "Multi", "NoAnt", "Unknown"])
            card = ClassifierCard(classes=classes, target_size=args.target_size,
                                  preprocessing={"target_size": args.target_size, "crop_size": None,
                                                 "background": "white"})
            model = small_model(args.target_size, len(classes))
        spec = card.preprocess_spec()
        # a few preprocessed batches from the movie for the model-alone figure (and the warm-up)
        batches, buf = [], []
        with ImagesFile(images) as f:
            for name in f.tracklets:
                buf.append(preprocess(f.read(name), spec))
                if sum(len(b) for b in buf) >= 4 * args.batch_size:
                    break
        allx = np.concatenate(buf)
        batches = [allx[i : i + args.batch_size] for i in range(0, len(allx) - args.batch_size + 1, args.batch_size)]
        del buf, allx
        for b in batches[:2]:
            model.predict_on_batch(b)  # trace / warm up

        alone_before = model_alone(model, batches, args.model_alone_images)
        print(f"model alone (before): {alone_before:.0f} img/s", flush=True)

        # -- end to end
        peak_reset = reset_peak()
        rss0 = vm("VmRSS")
        t0 = time.perf_counter()
        probs = classify_movie([images], model, card, work / "probs_1.h5", batch_size=args.batch_size,
                               prefetch=args.prefetch)
        t_infer = time.perf_counter() - t0
        rows = aggregate_movie(probs, labels, AggregationParams(), check=not args.classifier)
        write_autoids(work / "autoids_1.csv", rows)
        t_e2e = time.perf_counter() - t0
        res["peak_rss_classify_mb"] = round(vm("VmHWM") / 2**20) if peak_reset else None
        res["rss_before_classify_mb"] = round(rss0 / 2**20)

        alone_after = model_alone(model, batches, args.model_alone_images)
        print(f"model alone (after):  {alone_after:.0f} img/s", flush=True)
        alone = (alone_before + alone_after) / 2
        e2e = res["images"] / t_e2e
        res.update(
            model_alone_img_s=round(alone), model_alone_before=round(alone_before),
            model_alone_after=round(alone_after),
            end_to_end_img_s=round(e2e), end_to_end_s=round(t_e2e, 2), classify_movie_s=round(t_infer, 2),
            aggregate_and_csv_s=round(t_e2e - t_infer, 2), ratio=round(e2e / alone, 3),
            peak_rss_mb=round(max(vm("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20),
            rows=len(rows), labels={k: sum(r.label == k for r in rows) for k in ("Unknown", "NoAnt", "Multi")},
        )
        print(
            f"\nend to end: {res['images']} images in {t_e2e:.1f} s = {e2e:.0f} img/s "
            f"(classify_movie {t_infer:.1f} s, aggregate + CSV {t_e2e - t_infer:.2f} s)\n"
            f"model alone: {alone:.0f} img/s (before {alone_before:.0f}, after {alone_after:.0f})\n"
            f"ratio end-to-end / model alone: {res['ratio']:.2f}  (target >= 0.9)\n"
            f"peak RSS: {res['peak_rss_mb']} MB overall, "
            f"{res['peak_rss_classify_mb']} MB during classification (target <= 1536 MB)",
            flush=True,
        )
        if args.json:
            args.json.write_text(json.dumps(res, indent=2) + "\n")
        return res
    finally:
        if not (args.keep or args.workdir):
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print(f"kept {work}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
