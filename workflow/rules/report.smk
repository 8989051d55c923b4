rule report:
    """Validation report of every session: counts, assignment rates, model card, accuracy vs. ground truth."""
    input:
        autoids=all_autoids(),
        classifiers=lambda wc: sorted({classifier_file(c) for c in CLFS}),
        truth=[str(e.truth) for e in EXPS.values() if e.truth],
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
    params:
        experiments=lambda wc: {
            e.name: {
                "session_link": session_path(e.name),
                "session": e.experiment.session,
                "movies": sorted(e.movies),
                "classifier": classifier_file(e.classifier),
                "truth": str(e.truth) if e.truth else None,
            }
            for e in EXPS.values()
        },
        aggregate=config["aggregate"],
    script:
        "../scripts/report.py"
