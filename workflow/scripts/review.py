"""Rule review: the review plan and the label-next list of one experiment session."""

import sys
from pathlib import Path

# The library lives beside the workflow; importable even in a bare conda env created from workflow/envs/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))


from antrax_pipe.logutil import stage_logging
from antrax_pipe.stages import review_stage

with stage_logging(snakemake.log[0]):
    p = snakemake.params
    review_stage(
        session_dir=p.session_dir,
        session=p.session,
        movies=p.movies,
        probs=dict(zip(p.movies, snakemake.input.probs)),
        plan_out=snakemake.output.plan,
        next_out=snakemake.output.label_next,
        params=p.aggregate,
        n=int(p.n),
        seed=int(p.seed),
        classifier=snakemake.input.classifier,
        top=int(p.top),
    )
