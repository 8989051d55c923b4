"""``antrax-pipe``: anTraX's verbs on top of the Snakemake workflow.

``classify`` and ``train`` write a config + experiment sheet for the workflow and run Snakemake underneath, so the CLI
and a plain ``snakemake`` call produce the same files. ``merge-trainset`` is the user-side merge into a trainset the
user owns (the same library function the workflow's trainset rule uses).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import os
import re
import shutil
import sys
import traceback
from pathlib import Path

import yaml

from ._version import __version__
from .aggregation import check_classes
from .io.atomic import atomic_write_text
from .io.classifier import read_card
from .io.experiment import load_experiment, parse_explist, parse_movlist, resolve_classdir, select_movies
from .io.labels import read_labels
from .logutil import one_line
from .model import USER_ERRORS as _PROJECT_ERRORS
from .model import AntraxFormatError, consv_gates
from .runner import INTERRUPTED, RunActiveError, run_interruptible, run_lock, stale_snakemake_lock

#: Errors the project raises on purpose: printed as one line (they name the file or input), exit status 2.
USER_ERRORS = (*_PROJECT_ERRORS, RunActiveError, ValueError)


def workflow_snakefile() -> Path:
    """The workflow's Snakefile, first found of: ``ANTRAX_PIPE_WORKFLOW`` (a Snakefile or the folder holding it; set
    but missing is an error), the copy installed inside the package (``antrax_pipe/workflow/``, what a wheel
    ships), the checkout's ``workflow/Snakefile`` (an editable install or a clone)."""
    env = os.environ.get("ANTRAX_PIPE_WORKFLOW")
    if env:
        p = Path(env).expanduser().absolute()
        p = p / "Snakefile" if p.is_dir() else p
        if not p.is_file():
            raise SystemExit(f"antrax-pipe: ANTRAX_PIPE_WORKFLOW={env}: no Snakefile at {p}")
        return p
    pkg = Path(__file__).resolve().parent
    candidates = [pkg / "workflow" / "Snakefile", pkg.parent / "workflow" / "Snakefile"]
    for p in candidates:
        if p.is_file():
            return p
    raise SystemExit(f"antrax-pipe: workflow not found (looked at {', '.join(map(str, candidates))}); "
                     "set ANTRAX_PIPE_WORKFLOW to a workflow/Snakefile")


def _resolve_classdir(arg: str, session: str | None = None) -> Path:
    """A classdir as anTraX resolves it (:func:`antrax_pipe.io.experiment.resolve_classdir`), made absolute because
    the workflow runs in another directory."""
    return resolve_classdir(arg, session, create=True).absolute()


def _write_run_files(workdir: Path, config: dict, sheet_rows: list[dict]) -> Path:
    """The run's experiment sheet and config under ``<workdir>/cli-runs/<hash>/``; returns the config file."""
    key = hashlib.sha256(yaml.safe_dump([config, sheet_rows], sort_keys=True).encode()).hexdigest()[:10]
    rundir = workdir / "cli-runs" / key
    rundir.mkdir(parents=True, exist_ok=True)
    cols = ["name", "expdir", "session", "movlist", "classifier", "truth"]
    for r in sheet_rows:
        bad = [c for c in cols if any(ch in str(r.get(c) or "") for ch in "\t\r\n")]
        if bad:
            raise AntraxFormatError(f"{r.get('expdir')}: a tab or line break in {bad[0]} cannot be passed on")
    sheet = rundir / "experiments.tsv"
    _write_run_file(
        sheet,
        "\t".join(cols) + "\n" + "".join("\t".join(str(r.get(c) or "") for c in cols) + "\n" for r in sheet_rows),
    )
    cfg = rundir / "config.yaml"
    _write_run_file(cfg, yaml.safe_dump(dict(config, experiments=str(sheet)), sort_keys=False, allow_unicode=True))
    return cfg


def _write_run_file(path: Path, text: str) -> None:
    """Atomically, and only when the content changed: the same command again (while a run reads the file, or on a
    full disk) leaves it as it is; an error names the file."""
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return
        atomic_write_text(path, text)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _snakemake_base(workdir: Path, cfg: Path) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(workflow_snakefile()), "--directory", str(workdir),
            "--configfile", str(cfg)]


def _snakemake_command(workdir: Path, cfg: Path, targets: list[str], args) -> list[str]:
    cmd = [
        *_snakemake_base(workdir, cfg),
        "--cores", str(args.cores),
        "--scheduler", "greedy",
        "--rerun-incomplete",  # files a killed run left half-done are made again, never taken as finished
    ]
    if getattr(args, "profile", None):
        cmd += ["--profile", args.profile]
    else:
        cmd += ["--workflow-profile", "none"]
    if getattr(args, "dry", False):
        cmd.append("--dry-run")
    return cmd + list(args.snakemake_args) + targets


def _run_snakemake(workdir: Path, config: dict, sheet_rows: list[dict], targets: list[str], args) -> int:
    """Run the workflow in ``workdir`` (one run at a time; a stale lock of a killed run is lifted; Ctrl-C stops
    Snakemake cleanly and the same command continues later). See :mod:`antrax_pipe.runner`."""
    workdir.mkdir(parents=True, exist_ok=True)
    if not getattr(args, "dry", False):
        _check_free_space([workdir, *(Path(r["expdir"]) / r["session"] for r in sheet_rows)])
    cfg = _write_run_files(workdir, config, sheet_rows)
    cmd = _snakemake_command(workdir, cfg, targets, args)
    with run_lock(workdir):
        if stale_snakemake_lock(workdir):
            print(f"antrax-pipe: {workdir}: removing the lock a stopped run left behind (snakemake --unlock)",
                  file=sys.stderr, flush=True)
            rc, _ = run_interruptible([*_snakemake_base(workdir, cfg), "--unlock"])
            if rc != 0:
                raise AntraxFormatError(f"{workdir}: snakemake --unlock failed (exit {rc})")
        print("antrax-pipe: running", " ".join(cmd), file=sys.stderr, flush=True)
        rc, interrupted = run_interruptible(cmd)
    if interrupted:
        print("antrax-pipe: interrupted: finished results are kept; run the same command again to continue",
              file=sys.stderr)
        return INTERRUPTED
    return rc


#: A run is refused before it starts when the work folder or an experiment's session has less free space than this.
MIN_FREE_BYTES = 1 << 20


def _check_free_space(folders: list[Path]) -> None:
    """A full disk is said before anything runs, naming the folder (Snakemake would stop with a traceback when it
    cannot write its lock, and a classification of hours would end in aggregate jobs that cannot write the
    autoids)."""
    for folder in dict.fromkeys(folders):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:  # not there yet, or not ours to stat: the run says what is wrong
            continue
        if free < MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, f"No space left on device ({free} bytes free; antrax-pipe needs at least "
                                        f"{MIN_FREE_BYTES >> 20} MiB there): nothing was run", str(folder))


def _sheet_name(expname: str, taken: set[str]) -> str:
    """A unique, path-safe sheet name for an experiment: the folder itself may hold spaces, ``#`` or non-ASCII
    letters (it is reached through a link, never by this name)."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", expname).strip("._") or "experiment"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _check_classifier(path: Path, exp) -> None:
    """Before any job: the classifier file is readable and its classes fit the experiment's labels.csv."""
    card = read_card(path)  # ClassifierFileError names the file: missing, corrupt, untrained
    check_classes(card.classes, read_labels(exp.labels_file), where=f"{path} vs {exp.labels_file}")


def cmd_classify(args) -> int:
    expdirs = parse_explist(args.explist)
    movlist = parse_movlist(args.movlist)
    rows, classifiers, names = [], {}, set()
    if args.classifier:
        given = Path(args.classifier).expanduser().absolute()
        classifiers["given"] = {"file": str(given)}
    for d in expdirs:
        exp = load_experiment(d, args.session)
        name = _sheet_name(exp.name, names)
        movies = sorted(select_movies(exp, movlist))
        if args.missing:
            movies = [m for m in movies if not exp.autoids_file(m).exists()]
        if not movies:
            print(f"antrax-pipe: {exp.expdir}: every selected movie already has its autoids (--missing): "
                  f"nothing to classify", file=sys.stderr)
            continue
        clf_file = given if args.classifier else exp.classdir / "classifier.h5"
        if not args.classifier and not clf_file.is_file():
            raise AntraxFormatError(f"{exp.expdir}: no classifier given and {clf_file} does not exist "
                                    f"(train one, or pass --classifier)")
        _check_classifier(clf_file, exp)
        clf = "given" if args.classifier else f"own_{name}"
        classifiers.setdefault(clf, {"file": str(clf_file)})
        rows.append(dict(name=name, expdir=str(exp.expdir), session=exp.session,
                         movlist=",".join(map(str, movies)), classifier=clf))
    if not rows:
        return 0
    config = {"classifiers": classifiers, "default_classifier": rows[0]["classifier"],
              "classify": {"batch_size": args.batch_size, "threads": args.threads}}
    aggregate = {"usepassed": args.usepassed, "use_min_conf": not args.dont_use_min_conf}
    if args.consv_factor is not None:
        min_conf, min_conf_short = consv_gates(args.consv_factor)
        aggregate.update(min_conf=min_conf, min_conf_short=min_conf_short)
    if args.min_conf is not None:
        aggregate["min_conf"] = args.min_conf
    if args.min_conf_short is not None:
        aggregate["min_conf_short"] = args.min_conf_short
    config["aggregate"] = aggregate
    return _run_snakemake(Path(args.workdir).absolute(), config, rows, ["all"], args)


def cmd_train(args) -> int:
    classdir = _resolve_classdir(args.classdir)
    if not (classdir / "examples").is_dir():
        raise AntraxFormatError(f"{classdir}: not a classdir (no examples/ folder) nor an experiment directory")
    # only what the user gave: everything else is the recipe's (training.options), e.g. anTraX's 5 epochs
    train = {"scratch": args.scratch, "hsymmetry": args.hsymmetry, "target_size": args.target_size,
             "seed": args.seed, "threads": args.threads}
    if args.ne is not None:
        train["epochs"] = args.ne
    if args.arch:
        train["arch"] = args.arch
    if args.modelfile:
        train["modelfile"] = str(Path(args.modelfile).absolute())
    if args.weights:
        w = args.weights
        train["weights"] = w if w.lower() in ("imagenet", "none") else str(Path(w).absolute())
    if args.aug_options:
        from .training import parse_aug_options

        train["aug_options"] = parse_aug_options(args.aug_options)
    if args.recipe:
        train["recipe"] = args.recipe
    clf = "train_" + hashlib.sha256(str(classdir).encode()).hexdigest()[:8]
    config = {"classifiers": {clf: {"classdir": str(classdir), "name": args.name, "trainsets": []}},
              "default_classifier": clf, "train": train}
    workdir = Path(args.workdir).absolute()
    target = f"results/classifiers/{clf}/{args.name}.h5"
    args.snakemake_args = list(args.snakemake_args) + ["--forcerun", "train"]
    return _run_snakemake(workdir, config, [], [target], args)


def cmd_merge_trainset(args) -> int:
    from .trainset import merge_trainset

    label_map = None
    if args.map:
        items = [item.strip() for item in args.map.split(",") if item.strip()]
        bad = [item for item in items if item.count("=") != 1 or not all(item.split("="))]
        if bad:
            raise ValueError(f"--map takes OLD=NEW[,OLD=NEW...]; cannot read {', '.join(map(repr, bad))}")
        label_map = dict(item.split("=") for item in items)
    report = merge_trainset(_resolve_classdir(args.source), _resolve_classdir(args.dest),
                            allow_new_labels=args.allow_new_labels, label_map=label_map)
    print(report)
    return 0


def cmd_extract_trainset(args) -> int:
    """Start the local trainset/validation web app (anTraX's MATLAB app) and serve until Ctrl-C."""
    from .app import serve

    try:
        serve(args.expdir, session=args.session, port=args.port, movlist=parse_movlist(args.movlist), seed=args.seed,
              open_browser=args.open, quiet=not args.verbose, annotator=args.annotator, probs_dir=args.probs_dir)
    except OSError as exc:  # port taken, no permission
        print(f"antrax-pipe: error: cannot serve on 127.0.0.1:{args.port} ({exc})", file=sys.stderr)
        return 2
    return 0


def _common_options(sp: argparse.ArgumentParser) -> None:
    """Options of the verbs that run the workflow."""
    sp.add_argument("--cores", type=int, default=2, help="cores for Snakemake (default 2)")
    sp.add_argument("--profile", help="Snakemake profile (e.g. profiles/slurm) instead of local execution")
    sp.add_argument("--workdir", default="antrax-pipe-work", help="where intermediate results and logs go "
                                                                  "(default antrax-pipe-work in this folder)")
    sp.add_argument("--dry", action="store_true", help="only show what would run")
    sp.add_argument("--threads", type=int, default=2, help="threads per TensorFlow job")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="antrax-pipe", description=__doc__.split("\n\n")[0],
                                epilog="Run 'antrax-pipe VERB --help' for a verb's options and an example.")

    p.add_argument("--version", action="version", version=f"antrax-pipe {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="verb", required=True)

    def verb(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog="example:\n  " + example,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    c = verb("classify", "classify every tracklet of the experiments in EXPLIST",
             "antrax-pipe classify /data/colonyA --classifier /data/clf/classifier.h5 --movlist 1-5 --cores 8")
    c.add_argument("explist", help="an experiment dir, a text file listing them, or a folder of experiments")
    c.add_argument("--classifier", help="classifier .h5 (default: <session>/classifier/classifier.h5 per experiment)")
    c.add_argument("--movlist", help="movies: 4 | 3,5,6 | 1-5,7 | all (default all)")
    c.add_argument("--session", help="session name (default: newest parameters/Trck.mat)")
    c.add_argument("--missing", action="store_true", help="only movies that have no autoids file yet")
    c.add_argument("--usepassed", action="store_true", help="aggregate only frames that passed frame_passed")
    c.add_argument("--dont-use-min-conf", action="store_true", help="no confidence gates (anTraX's flag)")
    c.add_argument("--consv-factor", type=float, help="anTraX's conservativeness c: min_conf=1-0.2c, short 1-0.02c")
    c.add_argument("--min-conf", type=float, help="confidence gate for an ID (default 0.9)")
    c.add_argument("--min-conf-short", type=float, help="gate for tracklets under 5 ant frames (default 0.99)")
    c.add_argument("--batch-size", type=int, default=256, help="images per inference batch (default 256)")
    _common_options(c)
    c.set_defaults(func=cmd_classify)

    t = verb("train", "train the blob classifier of CLASSDIR (or of an experiment's classifier/)",
             "antrax-pipe train /data/colonyA --scratch --seed 1      # or: --recipe antrax for anTraX's own")
    t.add_argument("classdir", help="a folder with examples/<label>/*.png, or an experiment (its session's "
                                    "classifier/)")
    t.add_argument("--name", default="classifier", help="model file name: CLASSDIR/NAME.h5 (default classifier)")
    t.add_argument("--scratch", action="store_true", help="start a new classifier instead of continuing")
    t.add_argument("--ne", type=int, default=None,
                   help="max epochs (default: the recipe's: 30 with early stopping on grouped validation; antrax: 5)")
    t.add_argument("--arch", default=None, choices=["tagnet", "small", "wide", "large", "MobileNetV2", "custom"],
                   help="CNN architecture (default: the recipe's, tagnet; anTraX's default was small)")
    t.add_argument("--modelfile", help="Keras JSON model for --arch custom")
    t.add_argument("--weights", help="--arch MobileNetV2 initial weights: imagenet (default; Keras downloads them on a "
                                     "connected machine), FILE (a local weights file, offline), or none (random)")
    t.add_argument("--target-size", type=int, default=None,
                   help="input size T of the net in pixels (default: the recipe's, 64; kept when continuing)")
    t.add_argument("--hsymmetry", action="store_true", help="also augment with horizontal flips (anTraX's flag)")
    t.add_argument("--aug-options", help="k=v,... e.g. rotation_range=15,zoom_range=0.1")
    t.add_argument("--recipe", help="training recipe (default: ours; 'antrax' = anTraX's original)")
    t.add_argument("--seed", type=int, default=0, help="random seed of the split, draws and weights (default 0)")
    _common_options(t)
    t.set_defaults(func=cmd_train)

    m = verb("merge-trainset", "merge the examples of SOURCE into DEST (classdirs or expdirs)",
             "antrax-pipe merge-trainset /data/colonyB /data/general-classifier --map PO=PP")
    m.add_argument("source", help="classdir or experiment whose examples are copied")
    m.add_argument("dest", help="classdir or experiment that receives them (never overwritten: same images are "
                                "skipped, same names renamed)")
    m.add_argument("--allow-new-labels", action="store_true", help="accept labels DEST does not have yet")
    m.add_argument("--map", help="rename labels while merging: OLD=NEW,...")
    m.set_defaults(func=cmd_merge_trainset)

    x = verb("extract-trainset", "web app to label tracklets into the trainset and validate classifications",
             "antrax-pipe extract-trainset /data/colonyA --movlist 1-3 --annotator alice --open")
    x.add_argument("expdir", help="experiment directory")
    x.add_argument("--session", help="session name (default: newest parameters/Trck.mat)")
    x.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one chosen by the OS)")
    x.add_argument("--movlist", help="movies offered: 4 | 3,5,6 | 1-5,7 | all (default all)")
    x.add_argument("--seed", type=int, help="default seed of the random tracklet order")
    x.add_argument("--open", action="store_true", help="open the page in the default web browser")
    x.add_argument("--annotator", help="name saved with every mark (default: the OS user name); several people can "
                                       "judge one experiment, each under their own name")
    x.add_argument("--probs-dir", help="folder of the movies' probabilities files (results/probs or "
                                       "results/probs/<exp>): each image's top-2 classes on hover")
    x.add_argument("--verbose", action="store_true", help="log every HTTP request")
    x.set_defaults(func=cmd_extract_trainset)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to Snakemake unchanged
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    args.snakemake_args = extra
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("antrax-pipe: interrupted", file=sys.stderr)
        return INTERRUPTED
    except USER_ERRORS as exc:
        print(f"antrax-pipe: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line here, the traceback in a log file
        log = _crash_log(args)
        print(f"antrax-pipe: internal error: {one_line(exc)} (details: {log})", file=sys.stderr)
        return 3


def _crash_log(args) -> Path:
    """Write the traceback of an unexpected error to ``<workdir>/logs/antrax-pipe-error.log`` (or the temp dir)."""
    import tempfile

    base = Path(getattr(args, "workdir", "") or tempfile.gettempdir()).absolute()
    path = base / "logs" / "antrax-pipe-error.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc(), encoding="utf-8")
    except OSError:
        path = Path(tempfile.gettempdir()) / "antrax-pipe-error.log"
        path.write_text(traceback.format_exc(), encoding="utf-8")
    logging.getLogger("antrax_pipe.cli").debug("traceback written to %s", path)
    return path


if __name__ == "__main__":
    sys.exit(main())
