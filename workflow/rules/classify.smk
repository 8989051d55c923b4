rule classify:
    """Blob classification of one movie: per-frame class probabilities of every tracklet (GPU when visible)."""
    input:
        images=movie_images,
        classifier=exp_classifier,
    output:
        probs=f"{RESULTS}/probs/{{exp}}/probs_{{movie}}.h5",
    log:
        f"{RESULTS}/logs/classify/{{exp}}/{{movie}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/classify/{{exp}}/{{movie}}.tsv"
    conda:
        TF_ENV
    threads: config["classify"]["threads"]
    resources:
        gpu=1,
        # more memory on each retry (--retries / the cluster profiles' retries:), for the odd huge movie
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=60,
    params:
        batch_size=config["classify"]["batch_size"],
        # read only to stop early if the classifier does not fit the experiment's labels; not an input: the
        # probabilities do not depend on it (aggregation, which does, has it as input)
        labels=f"{RESULTS}/sessions/{{exp}}/parameters/labels.csv",
    script:
        "../scripts/classify.py"


rule aggregate:
    """Tracklet aggregation (anTraX's rule, CPU only): probabilities -> labels/autoids_<m>.csv in the session."""
    input:
        probs=f"{RESULTS}/probs/{{exp}}/probs_{{movie}}.h5",
        labels=f"{RESULTS}/sessions/{{exp}}/parameters/labels.csv",
        passed=movie_passed if config["aggregate"]["usepassed"] else [],
    output:
        autoids=f"{RESULTS}/sessions/{{exp}}/labels/autoids_{{movie}}.csv",
        # what produced it (classifier + sha256, thresholds, environment, code version); not labels/autoids_*,
        # which anTraX globs
        provenance=f"{RESULTS}/sessions/{{exp}}/labels/antrax-pipe/autoids_{{movie}}.json",
    log:
        f"{RESULTS}/logs/aggregate/{{exp}}/{{movie}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate/{{exp}}/{{movie}}.tsv"
    conda:
        "../envs/antrax-pipe.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        aggregate=config["aggregate"],
    script:
        "../scripts/aggregate.py"
