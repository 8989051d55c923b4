"""Rule report: the validation report (HTML) of every session."""

from antrax_pipe.logutil import stage_logging
from antrax_pipe.pipeline import report_stage

with stage_logging(snakemake.log[0]):
    report_stage(
        experiments=snakemake.params.experiments,
        out_html=snakemake.output.html,
        params=snakemake.params.aggregate,
    )
