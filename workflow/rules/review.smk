# Review loop: a random review plan and a "label next" list per experiment session.
# Settings: config["review"] (n, seed, top), defaults in the schema.


rule review:
    """Review plan (N tracklets at random, stratified by label and length) and what to label next, per session."""
    input:
        autoids=review_autoids,
        probs=review_probs,
        classifier=exp_classifier,
        labels=lambda wc: session_path(wc.exp, "parameters", "labels.csv"),
    output:
        # update(): a file of that name the user made is never deleted by Snakemake before the job; the stage
        # refuses to replace one it did not write (the error names it)
        plan=report(
            update(session_path("{exp}", "classifier", "review_plan.csv")),
            caption="../report/review_plan.rst",
            category="Review",
            subcategory="{exp}",
            labels={"experiment": "{exp}", "table": "review plan"},
        ),
        label_next=report(
            update(session_path("{exp}", "classifier", "label_next.csv")),
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
        n=lambda wc: config["review"]["n"],
        seed=lambda wc: config["review"]["seed"],
        top=lambda wc: config["review"]["top"],
        aggregate=config["aggregate"],
    script:
        "../scripts/review.py"
