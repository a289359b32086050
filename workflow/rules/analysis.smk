# Tables -> Pareto frontiers and paired significance tests against no_press.


rule pareto:
    input:
        results="results/tables/results.csv",
        timing="results/tables/timing.csv",
    output:
        report(
            "results/analysis/pareto.csv",
            caption="../report/pareto.rst",
            category="Analysis",
            labels={"table": "pareto"},
        ),
    log:
        "logs/pareto.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "kvstudy pareto --results {input.results} --timing {input.timing} --out {output} > {log} 2>&1"


rule significance:
    input:
        "results/tables/samples.csv",
    output:
        paired=report(
            "results/analysis/significance.csv",
            caption="../report/significance.rst",
            category="Analysis",
            labels={"table": "significance (paired, per seed)"},
        ),
        seeds=report(
            "results/analysis/significance_seeds.csv",
            caption="../report/significance_seeds.rst",
            category="Analysis",
            labels={"table": "significance (across seeds)"},
        ),
    log:
        "logs/significance.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "kvstudy significance --samples {input} --out {output.paired} --out-seeds {output.seeds} "
        "--baseline no_press > {log} 2>&1"


# Method against method at equal budget (the study's `compare:`, kvstudy.pairs): the same paired tests with the
# second variant as the baseline, Holm within each model x task over every pair.
if COMPARE_PAIRS:

    rule significance_pairs:
        input:
            "results/tables/samples.csv",
        output:
            report(
                "results/analysis/significance_pairs.csv",
                caption="../report/significance_pairs.rst",
                category="Analysis",
                labels={"table": "significance (method vs method)"},
            ),
        log:
            "logs/significance_pairs.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            pairs=json.dumps(COMPARE_PAIRS),
        shell:
            "python -m kvstudy.significance_pairs --samples {input} --pairs {params.pairs:q} --out {output} "
            "> {log} 2>&1"


# The paper's main tables as CSV and booktabs LaTeX, significance marked.
rule summary:
    input:
        results="results/tables/results.csv",
        significance="results/analysis/significance.csv",
        timing="results/tables/timing.csv",
    output:
        [
            report(
                path,
                caption="../report/summary.rst",
                category="Tables",
                subcategory="Paper tables",
                labels={"table": os.path.basename(path)},
            )
            for path in SUMMARY
        ],
    log:
        "logs/summary.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "kvstudy summary --results {input.results} --significance {input.significance} "
        "--timing {input.timing} --out-dir results/tables > {log} 2>&1"


# What the built-in report lacks: git commit, resolved config, package versions, devices/hosts, job times.
rule provenance:
    input:
        "results/tables/results.csv",
    output:
        report(
            PROVENANCE,
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"page": "provenance"},
        ),
    log:
        "logs/provenance.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        config=config_json,
    shell:
        "kvstudy provenance --config {params.config:q} --results {input} --study-grid --benchmarks benchmarks "
        "--out {output} > {log} 2>&1"
