"""Rule train: train the blob classifier (incremental unless train.scratch)."""

from antrax_pipe.logutil import stage_logging
from antrax_pipe.pipeline import train_stage

with stage_logging(snakemake.log[0]):
    train_stage(
        manifest=snakemake.input.manifest,
        model_out=snakemake.output.model,
        options=snakemake.params.options,
        threads=snakemake.threads,
    )
