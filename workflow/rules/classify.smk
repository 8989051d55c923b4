# Blob classification, one job per movie (GPU when there is one).


rule classify:
    """Blob classification of one movie: per-frame class probabilities of every tracklet (GPU when visible)."""
    input:
        images=movie_images,
        classifier=exp_classifier,
        # a fresh marker when the movie's autoids were made by another classifier (provenance sha256): the
        # classifier's identity, not file times, decides re-classification, wherever the command runs
        reclassify=reclassify_marker,
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
        require_gpu=config["require_gpu"],
        # read only to stop early if the classifier does not fit the experiment's labels; not an input: the
        # probabilities do not depend on it (aggregation, which does, has it as input)
        labels=f"{RESULTS}/sessions/{{exp}}/parameters/labels.csv",
    script:
        "../scripts/classify.py"
