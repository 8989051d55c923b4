# Held-out evaluation of every classifier (its grouped validation split, predicted and aggregated per tracklet) and
# the coverage-error curve of the tracklet rule over min_conf.


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
