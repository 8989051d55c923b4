"""Rule aggregate: tracklet labels from per-frame probabilities -> labels/autoids_<m>.csv (+ its provenance)."""

import sys
from pathlib import Path

# The library lives beside the workflow; importable even in a bare conda env created from workflow/envs/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))


from antrax_pipe.logutil import stage_logging
from antrax_pipe.stages import aggregate_stage

with stage_logging(snakemake.log[0]):
    aggregate_stage(
        probs=snakemake.input.probs,
        labels_file=snakemake.input.labels,
        autoids_out=snakemake.output.autoids,
        params=snakemake.params.aggregate,
        passed_files=list(snakemake.input.passed),
        provenance_out=snakemake.output.provenance,
    )
