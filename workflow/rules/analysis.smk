# Tables -> Pareto frontiers and paired significance tests against no_press.


rule pareto:
    input:
        "results/tables/results.csv",
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
        "kvstudy pareto --results {input} --out {output} > {log} 2>&1"


rule significance:
    input:
        "results/tables/samples.csv",
    output:
        report(
            "results/analysis/significance.csv",
            caption="../report/significance.rst",
            category="Analysis",
            labels={"table": "significance"},
        ),
    log:
        "logs/significance.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "kvstudy significance --samples {input} --out {output} --baseline no_press > {log} 2>&1"
