"""Rule trainset: merge source trainsets into the classifier's classdir and write the manifest."""

import sys
from pathlib import Path

# The library lives beside the workflow; importable even in a bare conda env created from workflow/envs/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))


from antrax_pipe.logutil import stage_logging
from antrax_pipe.stages import trainset_stage

with stage_logging(snakemake.log[0]):
    manifest = Path(snakemake.output.manifest)
    trainset_stage(
        classdir=manifest.parent,
        sources=[Path(s) for s in snakemake.params.sources],
        manifest_out=manifest,
        allow_new_labels=snakemake.params.allow_new_labels,
    )
