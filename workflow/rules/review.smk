# Review loop and classifier validation (issue 6): a random review plan and a "label next" list per experiment
# session, the held-out evaluation of every classifier and its coverage-error curve over min_conf.
# Settings: config["review"] (n, seed, top); all optional.


rule review:
    """Review plan (N tracklets at random, stratified by label and length) and what to label next, per session."""
    input:
        autoids=review_autoids,
        probs=review_probs,
        classifier=exp_classifier,
        labels=lambda wc: session_path(wc.exp, "parameters", "labels.csv"),
    output:
        plan=report(
            session_path("{exp}", "classifier", "review_plan.csv"),
            caption="../report/review_plan.rst",
            category="Review",
            subcategory="{exp}",
            labels={"experiment": "{exp}", "table": "review plan"},
        ),
        label_next=report(
            session_path("{exp}", "classifier", "label_next.csv"),
            caption="../report/label_next.rst",
            category="Review",
            subcategory="{exp}",
            labels={"experiment": "{exp}", "table": "label next"},
        ),
    log:
        f"{RESULTS}/logs/review/{{exp}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/review/{{exp}}.tsv"
    conda:
        "../envs/antrax-pipe.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        session_dir=lambda wc: session_path(wc.exp),
        session=lambda wc: EXPS[wc.exp].experiment.session,
        movies=lambda wc: sorted(EXPS[wc.exp].movies),
        n=lambda wc: review_config()["n"],
        seed=lambda wc: review_config()["seed"],
        top=lambda wc: review_config()["top"],
        aggregate=config["aggregate"],
    script:
        "../scripts/review.py"


rule validate:
    """Held-out evaluation of a classifier: its grouped validation split, predicted and aggregated per tracklet."""
    input:
        classifier=lambda wc: classifier_file(wc.clf),
        labels=validate_labels,
    output:
        h5=f"{RESULTS}/validation/{{clf}}/validation.h5",
    log:
        f"{RESULTS}/logs/validate/{{clf}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/validate/{{clf}}.tsv"
    conda:
        TF_ENV
    threads: config["classify"]["threads"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=30,
    params:
        # only what changes the per-tracklet table: a threshold change must not repeat the prediction
        aggregate=lambda wc: {
            k: config["aggregate"][k] for k in ("method", "multi_fraction")
        },
    script:
        "../scripts/validate.py"


rule coverage_error:
    """Coverage-error curve of the tracklet rule over min_conf, the configured thresholds marked (CPU, seconds)."""
    input:
        h5=f"{RESULTS}/validation/{{clf}}/validation.h5",
    output:
        png=report(
            f"{RESULTS}/validation/{{clf}}/coverage_error.png",
            caption="../report/coverage_error.rst",
            category="Classifier",
            subcategory="{clf}",
            labels={"classifier": "{clf}", "figure": "coverage-error curve"},
        ),
    log:
        f"{RESULTS}/logs/coverage_error/{{clf}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/coverage_error/{{clf}}.tsv"
    conda:
        "../envs/antrax-pipe.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        aggregate=config["aggregate"],
    script:
        "../scripts/coverage_error.py"
