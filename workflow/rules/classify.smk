rule classify:
    """Blob classification of one movie: per-frame class probabilities of every tracklet (GPU when visible)."""
    input:
        images=movie_images,
        classifier=exp_classifier,
        labels=lambda wc: session_path(wc.exp, "parameters", "labels.csv"),
    output:
        probs=f"{RESULTS}/probs/{{exp}}/probs_{{movie}}.h5",
    log:
        f"{RESULTS}/logs/classify/{{exp}}/{{movie}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/classify/{{exp}}/{{movie}}.tsv"
    conda:
        "../envs/antrax-pipe.yaml"
    threads: config["classify"]["threads"]
    resources:
        gpu=1,
        mem_mb=3000,
        runtime=60,
    params:
        batch_size=config["classify"]["batch_size"],
    script:
        "../scripts/classify.py"


rule aggregate:
    """Tracklet aggregation (anTraX's rule, CPU only): probabilities -> labels/autoids_<m>.csv in the session."""
    input:
        probs=f"{RESULTS}/probs/{{exp}}/probs_{{movie}}.h5",
        labels=lambda wc: session_path(wc.exp, "parameters", "labels.csv"),
        passed=movie_passed,
    output:
        autoids=f"{RESULTS}/sessions/{{exp}}/labels/autoids_{{movie}}.csv",
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
