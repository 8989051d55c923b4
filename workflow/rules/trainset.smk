rule trainset:
    """Merge the source trainsets of a classifier (deduplicated, label sets checked) and write its manifest."""
    output:
        manifest=f"{RESULTS}/classifiers/{{clf}}/trainset_manifest.tsv",
    log:
        f"{RESULTS}/logs/trainset/{{clf}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/trainset/{{clf}}.tsv"
    conda:
        "../envs/antrax-pipe.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        sources=trainset_sources,
        fingerprint=trainset_params,
        allow_new_labels=lambda wc: config["trainset"]["allow_new_labels"],
    script:
        "../scripts/trainset.py"
