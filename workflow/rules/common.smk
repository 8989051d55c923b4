# Input functions and the plan: which experiments, movies and classifiers the config describes.
# The logic lives in antrax_pipe.plan (plain Python, tested); this file only wires it into Snakemake.
from pathlib import Path

from snakemake.utils import validate, min_version

from antrax_pipe.plan import (
    ensure_link,
    plan_classifiers,
    plan_experiments,
    read_sheet,
    trainset_fingerprint,
)

min_version("9.0")


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
    exp="|".join(EXPS) or "__none__",
    clf="|".join(CLFS) or "__none__",
    movie=r"\d+",
    model=r"[^/]+",


def session_path(exp, *parts):
    return str(Path(RESULTS, "sessions", exp, *parts))


def classifier_file(clf):
    c = CLFS[clf]
    if c.trained_here:
        return f"{RESULTS}/classifiers/{clf}/{c.model_name}.h5"
    return str(c.file)


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
    if not config["aggregate"]["usepassed"]:
        return []
    mi = EXPS[wildcards.exp].movies[int(wildcards.movie)]
    return [session_path(wildcards.exp, "images", p.name) for p in mi.passed_parts]


def exp_classifier(wildcards):
    return classifier_file(EXPS[wildcards.exp].classifier)


def trainset_sources(wildcards):
    return [str(p) for p in CLFS[wildcards.clf].sources]


def trainset_params(wildcards):
    # With sources the examples folder is rebuilt from them (a product); without, the classdir's own examples are
    # the trainset. Either way only what the trainset is made of is fingerprinted.
    c = CLFS[wildcards.clf]
    return trainset_fingerprint(c.sources or [c.classdir])


def train_options(wildcards):
    return dict(config["train"], **CLFS[wildcards.clf].train)
