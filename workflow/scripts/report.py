"""Rule report: the validation report (HTML) of every session."""

import sys
from pathlib import Path

# The library lives beside the workflow; importable even in a bare conda env created from workflow/envs/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))


from antrax_pipe.logutil import stage_logging
from antrax_pipe.stages import report_stage

with stage_logging(snakemake.log[0]):
    report_stage(
        experiments=snakemake.params.experiments,
        out_html=snakemake.output.html,
        params=snakemake.params.aggregate,
        validation=snakemake.params.validation,
    )
