# Tracklet aggregation, one CPU job per movie: per-frame probabilities -> <session>/labels/autoids_<m>.csv.


rule aggregate:
    """Tracklet aggregation (anTraX's rule, CPU only): probabilities -> labels/autoids_<m>.csv in the session."""
    input:
        probs=f"{RESULTS}/probs/{{exp}}/probs_{{movie}}.h5",
        labels=f"{RESULTS}/sessions/{{exp}}/parameters/labels.csv",
        passed=movie_passed if config["aggregate"]["usepassed"] else [],
    output:
        # update(): Snakemake must not delete the previous autoids before the job; the stage replaces them
        # atomically when it succeeds (a failed run, a full disk, leaves the previous results in place) and backs
        # up autoids another classifier (or anTraX) made before replacing them
        autoids=update(f"{RESULTS}/sessions/{{exp}}/labels/autoids_{{movie}}.csv"),
        # what produced it (classifier + sha256, thresholds, environment, code version); not labels/autoids_*,
        # which anTraX globs
        provenance=update(
            f"{RESULTS}/sessions/{{exp}}/labels/antrax-pipe/autoids_{{movie}}.json"
        ),
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


rule reclassify_marker:
    """The re-classification marker of a movie (common.smk, reclassify_marker), should the main process not have
    made it."""
    output:
        touch(f"{RESULTS}/.reclassify/{{exp}}/{{movie}}"),
    log:
        f"{RESULTS}/logs/reclassify_marker/{{exp}}/{{movie}}.log",
