"""Rule validate: held-out evaluation of one classifier (TensorFlow)."""

import sys
from pathlib import Path

# The library lives beside the workflow; importable even in a bare conda env created from workflow/envs/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))


from antrax_pipe.logutil import stage_logging
from antrax_pipe.stages import validate_stage

with stage_logging(snakemake.log[0]):
    validate_stage(
        classifier=snakemake.input.classifier,
        labels_file=snakemake.input.labels,
        out=snakemake.output.h5,
        params=snakemake.params.aggregate,
        threads=snakemake.threads,
    )
