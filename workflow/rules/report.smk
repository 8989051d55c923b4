rule report:
    """Validation report of every session: counts, assignment rates, model card, accuracy vs. ground truth."""
    input:
        autoids=all_autoids(),
        classifiers=lambda wc: sorted({classifier_file(c) for c in CLFS}),
        truth=truth_files(),
        review=all_review(),
        validation=list(validation_files().values()),
    output:
        html=report(
            f"{RESULTS}/report/report.html",
            caption="../report/report.rst",
            category="Validation",
        ),
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../envs/antrax-pipe.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        experiments=lambda wc: report_experiments(),
        aggregate=config["aggregate"],
        validation=validation_files(),
    script:
        "../scripts/report.py"
