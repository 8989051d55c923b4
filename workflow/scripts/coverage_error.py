"""Rule coverage_error: the coverage-error curve of one classifier as a PNG."""

import sys
from pathlib import Path

# The library lives beside the workflow; importable even in a bare conda env created from workflow/envs/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))


from antrax_pipe.logutil import stage_logging
from antrax_pipe.stages import coverage_plot_stage

with stage_logging(snakemake.log[0]):
    coverage_plot_stage(snakemake.input.h5, snakemake.output.png, snakemake.params.aggregate)
