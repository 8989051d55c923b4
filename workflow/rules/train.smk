rule train:
    """Train (incrementally by default) the blob classifier on its trainset manifest."""
    input:
        manifest=f"{RESULTS}/classifiers/{{clf}}/trainset_manifest.tsv",
    output:
        # update(): Snakemake keeps the previous model so that training can continue from it (anTraX's default)
        model=update(f"{RESULTS}/classifiers/{{clf}}/{{model}}.h5"),
    log:
        f"{RESULTS}/logs/train/{{clf}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{clf}}/{{model}}.tsv"
    conda:
        TF_ENV
    threads: config["train"]["threads"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        options=train_options,
    script:
        "../scripts/train.py"
