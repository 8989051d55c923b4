#!/usr/bin/env python
"""Training benchmark on the shared real trainset: wall time, images/s, grouped-validation accuracy.

Trains :func:`antrax_pipe.training.train_classifier` (default recipe unless ``--recipe antrax``) from scratch on
``/work/shared/data/antrax-demo-trainset.tar.gz`` (extracted once into a temporary work dir, never into the shared
folder) or on ``--classdir``, and prints:

* wall time (total, and of ``fit`` alone) and training images/s (images drawn per epoch × epochs run / fit seconds);
* the validation split's accuracy (held-out *tracklets*, never images of training tracklets): per image and per
  tracklet, overall and balanced, and per class (image recall, tracklet recall).

    python bench/train_bench.py                               # everything, default recipe
    python bench/train_bench.py --labels BB GG OO Unknown     # a subset of labels
    python bench/train_bench.py --max-frames 12 --epochs 10   # ≤12 frames per tracklet, quicker
    python bench/train_bench.py --recipe antrax               # anTraX's recipe, for comparison
    python bench/train_bench.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_eval import DEFAULT_TAR, cap_frames, extracted_classdir  # noqa: E402

from antrax_pipe.io.examples import list_examples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tar", type=Path, default=DEFAULT_TAR)
    ap.add_argument("--classdir", type=Path, help="an already extracted trainset (dir holding examples/)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "antrax_eval")
    ap.add_argument("--labels", nargs="*", help="train on these labels only")
    ap.add_argument("--exps", nargs="*", help="train on these experiments only")
    ap.add_argument("--max-frames", type=int, help="at most this many (evenly spaced) frames per tracklet")
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--target-size", type=int)
    ap.add_argument("--arch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    ap.add_argument("--json", type=Path, help="write the figures (and the card's training/metrics) here")
    a = ap.parse_args(argv)

    classdir = a.classdir or extracted_classdir(a.tar, a.workdir)
    examples = list_examples(classdir)
    if a.labels:
        examples = [e for e in examples if e.label in set(a.labels)]
    if a.exps:
        examples = [e for e in examples if e.exp in set(a.exps)]
    examples = cap_frames(examples, a.max_frames)
    if not examples:
        raise SystemExit("no examples left after --labels/--exps")
    kwargs = {k: v for k, v in (("epochs", a.epochs), ("target_size", a.target_size), ("arch", a.arch)) if v}

    from antrax_pipe.training import train_classifier

    with tempfile.TemporaryDirectory(prefix="train_bench_") as tmp:
        t0 = time.time()
        card = train_classifier(classdir, examples=examples, output=Path(tmp) / "bench.h5", scratch=True,
                                recipe=a.recipe, threads=a.threads, seed=a.seed,
                                progress=(lambda s: None) if a.quiet else (lambda s: print("   ", s, flush=True)),
                                **kwargs)
        wall = time.time() - t0
    tr, val = card.training, card.metrics.get("validation", {})
    drawn = tr["steps_per_epoch"] * tr["batch_size"] if tr.get("steps_per_epoch") else tr["n_train_images"]
    ips = drawn * tr["epochs_run"] / tr["fit_seconds"] if tr["fit_seconds"] else float("nan")
    n_trk = len({e.tracklet_key for e in examples})
    print(f"\nrecipe {tr['recipe']}, arch {card.arch}, T={card.target_size}, {len(card.classes)} classes, "
          f"{len(examples)} images / {n_trk} tracklets, {a.threads} threads")
    print(f"wall time {wall:.1f} s (fit {tr['fit_seconds']:.1f} s, {tr['epochs_run']} epochs, "
          f"best {tr['best_epoch']}); "
          f"training {ips:.0f} images/s; softmax temperature {tr.get('temperature', 1.0):.3g}")
    if val:
        print(f"validation ({val['n_images']} images / {val['n_tracklets']} held-out tracklets): "
              f"image accuracy {val['image_accuracy']:.3f} (balanced {val['image_balanced_accuracy']:.3f}), "
              f"tracklet accuracy {val['tracklet_accuracy']:.3f} (balanced {val['tracklet_balanced_accuracy']:.3f})")
        print(f"{'class':<10} {'images':>6} {'tracklets':>9} {'image recall':>12} {'tracklet recall':>15}")
        for c, pc in val["per_class"].items():
            tr_rec = "-" if pc["tracklet_recall"] is None else f"{pc['tracklet_recall']:.3f}"
            print(f"{c:<10} {pc['images']:>6} {pc['tracklets']:>9} {pc['image_recall']:>12.3f} {tr_rec:>15}")
    else:
        print("no validation split (recipe antrax has none unless val_fraction is given)")
    if a.json:
        a.json.write_text(json.dumps({"wall_seconds": wall, "images_per_second": ips, "n_images": len(examples),
                                      "n_tracklets": n_trk, "training": tr, "validation": val}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
