# Tables and analysis -> one PDF + PNG per figure family; figures/all lists everything built.


rule plot:
    input:
        tables=TABLES,
        analysis=ANALYSIS,
    output:
        pdf="figures/{figure}.pdf",
        png=report(
            "figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{figure}",
            labels={"figure": "{figure}", **REPORT_LABELS},
        ),
    log:
        "logs/plot/{figure}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        kind=figure_kind,
        options=figure_options,
        grid=GRID_SUMMARY,
    shell:
        "kvstudy plot {params.kind} --options {params.options:q} --tables results/tables "
        "--analysis results/analysis --out-stem figures/{wildcards.figure} > {log} 2>&1"


# figures/all depends on every raw result through aggregate's input (RAW and RAW_MARKER, common.smk), so a deleted
# result is recomputed even when the tables exist; listing RAW in manifest's input again would only double the DAG's
# work per job
rule manifest:
    input:
        figures=expand("figures/{figure}.{ext}", figure=FIGURES, ext=["pdf", "png"]),
        tables=TABLES,
        analysis=ANALYSIS,
        summary=SUMMARY,
        provenance=PROVENANCE,
    output:
        "figures/all",
    log:
        "logs/manifest.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        study=config.get("study", ""),
        config_sha256=CONFIG_SHA256,  # what `snakemake --report` checks its config against (kvstudy.report)
    shell:
        "kvstudy manifest {input.figures} {input.tables} {input.analysis} {input.summary} {input.provenance} "
        "--study {params.study:q} --config-sha256 {params.config_sha256} --out {output} > {log} 2>&1"
