"""Rule train: train the blob classifier (incremental unless train.scratch)."""

import sys
from pathlib import Path

# The library lives beside the workflow; importable even in a bare conda env created from workflow/envs/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))


from antrax_pipe.logutil import stage_logging
from antrax_pipe.stages import train_stage

with stage_logging(snakemake.log[0]):
    train_stage(
        manifest=snakemake.input.manifest,
        model_out=snakemake.output.model,
        options=snakemake.params.options,
        threads=snakemake.threads,
    )
