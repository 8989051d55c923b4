# Input functions and the plan: which experiments, movies and classifiers the config describes.
# The logic lives in antrax_pipe.plan (plain Python, tested); this file only wires it into Snakemake.
import os
import re
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate, min_version

from antrax_pipe.plan import (
    cached_sha256,
    ensure_link,
    made_by_other_classifier,
    plan_classifiers,
    plan_experiments,
    read_sheet,
    trainset_fingerprint,
)

min_version("9.0")

# LSF (profiles/lsf): request memory per job, rusage[mem=<mem_mb>], as SLURM's --mem does; the plugin's default
# divides mem_mb by the job's cores. Read when the executor starts, i.e. after this file; an exported value wins.
os.environ.setdefault("SNAKEMAKE_LSF_MEMFMT", "perjob")


validate(config, schema="../schemas/config.schema.yaml")

BASE = Path.cwd()
RESULTS = config["results"]
SHEET = read_sheet(config["experiments"])
validate(SHEET, schema="../schemas/experiments.schema.yaml")
EXPS = plan_experiments(SHEET, BASE, config["default_classifier"])
CLFS = plan_classifiers(config, EXPS, BASE)

# Every session and classdir is addressed by name under results/ through a symlink, so that rules have short
# wildcards ({exp}, {clf}) while outputs land where anTraX expects them (<expdir>/<session>/labels/...).
for _e in EXPS.values():
    ensure_link(Path(RESULTS) / "sessions" / _e.name, _e.experiment.sessiondir)
for _c in CLFS.values():
    if (
        _c.trained_here
        and _c.classdir.absolute()
        != (BASE / RESULTS / "classifiers" / _c.name).absolute()
    ):
        _c.classdir.mkdir(parents=True, exist_ok=True)
        ensure_link(Path(RESULTS) / "classifiers" / _c.name, _c.classdir)


wildcard_constraints:
    exp="|".join(map(re.escape, EXPS)) or "__none__",
    clf="|".join(map(re.escape, CLFS)) or "__none__",
    movie=r"\d+",
    model=r"[^/]+",


def portable(path):
    """Paths inside the working directory as relative paths: inputs and params are recorded by Snakemake, so a
    project moved or copied elsewhere (same content) must not look changed."""
    p = Path(path).absolute()
    return str(p.relative_to(BASE)) if p.is_relative_to(BASE) else str(p)


def truth_files():
    return [portable(e.truth) for e in EXPS.values() if e.truth]


def session_path(exp, *parts):
    # plain strings: input functions run once per job, thousands of times per plan
    return os.path.join(RESULTS, "sessions", exp, *parts)


def classifier_file(clf):
    c = CLFS[clf]
    if c.trained_here:
        return f"{RESULTS}/classifiers/{clf}/{c.model_name}.h5"
    return portable(c.file)


def all_autoids():
    return [
        session_path(e.name, "labels", f"autoids_{m}.csv")
        for e in EXPS.values()
        for m in e.movies
    ]


def report_html():
    return f"{RESULTS}/report/report.html"


def movie_images(wildcards):
    """The images_<m>.mat file, or its parts in order, of one movie."""
    mi = EXPS[wildcards.exp].movies[int(wildcards.movie)]
    return [session_path(wildcards.exp, "images", p.name) for p in mi.parts]


def movie_passed(wildcards):
    mi = EXPS[wildcards.exp].movies[int(wildcards.movie)]
    return [session_path(wildcards.exp, "images", p.name) for p in mi.passed_parts]


def exp_classifier(wildcards):
    return classifier_file(EXPS[wildcards.exp].classifier)


def trainset_sources(wildcards):
    return [portable(p) for p in CLFS[wildcards.clf].sources]


def trainset_params(wildcards):
    # With sources the examples folder is rebuilt from them (a product); without, the classdir's own examples are
    # the trainset. Either way only what the trainset is made of is fingerprinted, by content (a touched example
    # re-runs nothing); the cache keeps hashes of unchanged files between runs.
    c = CLFS[wildcards.clf]
    return trainset_fingerprint(
        c.sources or [c.classdir],
        cache=Path(RESULTS) / ".cache" / "example-hashes.json",
    )


def train_options(wildcards):
    return dict(config["train"], **CLFS[wildcards.clf].train)


def report_experiments():
    """What the report (and the failure report) needs to know of each experiment."""
    return {
        e.name: {
            "session_link": session_path(e.name),
            "session": e.experiment.session,
            "movies": sorted(e.movies),
            "classifier": classifier_file(e.classifier),
            "truth": portable(e.truth) if e.truth else None,
        }
        for e in EXPS.values()
    }


def write_failure_report():
    """onerror: the report lists the movies without autoids and why (from their job logs); never masks the error."""
    # imported here: the stages module is only needed when a run fails, not to plan thousands of jobs
    from antrax_pipe.stages import failure_report

    try:
        out = failure_report(
            report_experiments(),
            report_html(),
            config["aggregate"],
            Path(RESULTS) / "logs",
        )
    except Exception as exc:
        logger.warning(f"antrax-pipe: could not write the failure report: {exc}")
    else:
        if out is not None:
            logger.warning(f"antrax-pipe: report with the failed movies: {out}")


def say_where_results_are():
    """onsuccess: the last lines of a run say where the autoids and the report are."""
    sessions = sorted({str(e.experiment.sessiondir / "labels") for e in EXPS.values()})
    n = sum(len(e.movies) for e in EXPS.values())
    logger.info(f"antrax-pipe: autoids of {n} movie(s) in: {', '.join(sessions)}")
    logger.info(f"antrax-pipe: report: {Path(report_html()).absolute()}")


# --- re-classification decided by the classifier's identity (rules/classify.smk, rules/aggregate.smk) ---
_CLF_SHA = {}


def classifier_sha(clf):
    """sha256 of a classifier file that exists now (None before a first training): cached across runs."""
    if clf not in _CLF_SHA:
        f = Path(classifier_file(clf))
        _CLF_SHA[clf] = (
            cached_sha256(f, Path(RESULTS) / ".cache" / "classifier-hashes.json")
            if f.is_file()
            else None
        )
    return _CLF_SHA[clf]


def reclassify_marker(wildcards):
    """A per-movie marker, always an input of classify (so the set of inputs never changes, which would re-run
    classify by itself), whose mtime carries the decision: set to now while the movie's autoids were made by another
    classifier (provenance sha256, or none), so that classify runs again wherever the command runs (in a new work
    folder too, where the probabilities are missing and Snakemake compares with the autoids' time); set back to the
    epoch otherwise, so that it never triggers anything. Only the main Snakemake process writes it (cluster jobs
    parse the workflow again)."""
    e = EXPS[wildcards.exp]
    m = str(int(wildcards.movie))
    folder = os.path.join(RESULTS, ".reclassify", e.name)
    marker = os.path.join(folder, m)
    if workflow.is_main_process:
        sha = classifier_sha(e.classifier)
        labels = e.experiment.labels_dir
        stale = bool(sha) and made_by_other_classifier(
            labels / f"autoids_{m}.csv",
            labels / "antrax-pipe" / f"autoids_{m}.json",
            sha,
        )
        # one folder per experiment, made once; the marker made if missing, then its mtime set (one call each:
        # this runs once per movie, thousands of times per plan)
        if folder not in _MARKER_DIRS:
            os.makedirs(folder, exist_ok=True)
            _MARKER_DIRS.add(folder)
        try:
            os.utime(marker, None if stale else (0, 0))
        except FileNotFoundError:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o666))
            os.utime(marker, None if stale else (0, 0))
    return marker


_MARKER_DIRS = set()


# --- review loop and classifier validation (rules/review.smk, rules/validate.smk) ---
def review_autoids(wildcards):
    e = EXPS[wildcards.exp]
    return [
        session_path(e.name, "labels", f"autoids_{m}.csv") for m in sorted(e.movies)
    ]


def review_probs(wildcards):
    e = EXPS[wildcards.exp]
    return [f"{RESULTS}/probs/{e.name}/probs_{m}.h5" for m in sorted(e.movies)]


def validated_classifiers():
    """Classifiers that classify at least one experiment (their labels.csv says which classes are IDs)."""
    return sorted({e.classifier for e in EXPS.values()})


def validate_labels(wildcards):
    users = sorted(e.name for e in EXPS.values() if e.classifier == wildcards.clf)
    return session_path(users[0], "parameters", "labels.csv")


def validation_files():
    """Classifier file -> its validation.h5 (for the report's coverage-error curve)."""
    return {
        classifier_file(c): f"{RESULTS}/validation/{c}/validation.h5"
        for c in validated_classifiers()
    }


def all_review():
    return [
        session_path(e, "classifier", name)
        for e in EXPS
        for name in ("review_plan.csv", "label_next.csv")
    ]


def all_validation():
    return [
        f"{RESULTS}/validation/{c}/{name}"
        for c in validated_classifiers()
        for name in ("validation.h5", "coverage_error.png")
    ]
