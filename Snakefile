# kvstudy: one config -> every CSV, significance table and figure of a KV-cache compression paper.
#   snakemake --cores 2 figures/all                       (the default study in config.yaml, CPU)
#   snakemake --profile profiles/slurm figures/all --configfile studies/X.yaml
#   snakemake --cores 1 release                           (a citable bundle of the study, after figures/all)
from snakemake.utils import min_version

min_version("9.0")


# A study given with --configfile replaces the default study instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/tuning_common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/timing.smk"
include: "workflow/rules/equivalence.smk"
include: "workflow/rules/tuning.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/release.smk"


# Only eval jobs go to the cluster; the rest is light and runs where snakemake runs.
localrules:
    all,
    aggregate,
    pareto,
    significance,
    summary,
    provenance,
    plot,
    manifest,


rule all:
    default_target: True
    input:
        "figures/all",
