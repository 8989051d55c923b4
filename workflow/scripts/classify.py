"""Rule classify: per-frame class probabilities of every tracklet of one movie."""

import sys
from pathlib import Path

# The library lives beside the workflow; importable even in a bare conda env created from workflow/envs/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))


from antrax_pipe.logutil import stage_logging
from antrax_pipe.stages import classify_stage

with stage_logging(snakemake.log[0]):
    classify_stage(
        images=list(snakemake.input.images),
        classifier=snakemake.input.classifier,
        labels_file=snakemake.params.labels,
        probs_out=snakemake.output.probs,
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
        require_gpu=snakemake.params.require_gpu,
    )
