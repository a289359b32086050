# Raw results -> results.csv, samples.csv and the paper tables (performance, memory_usage, throughput).


# A new version of a "missing" marker (kvstudy.rawguard.Markers, common.smk): asked for when results are missing,
# so that aggregate (or a tuning choice) reruns and with it the jobs of the missing results. Shell commands, not
# run: (a run: job would start a snakemake of its own); outputs with a constant prefix, so that Snakemake's output
# index never tries these rules on the 10,000 raw results of a large study.
MARKER_SHELL = (
    'echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ): raw results were missing; this run computed them" > {output:q} 2> {log:q}'
)


rule missing_marker:
    output:
        "results/raw/.missing.{n}",
    log:
        "logs/markers/missing.{n}.log",
    wildcard_constraints:
        n=r"\d+",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        MARKER_SHELL


if SEARCHES:

    use rule missing_marker as missing_trial_marker with:
        output:
            "results/raw/.missing-trials/{model}/{press}/{task}.{n}",
        log:
            "logs/markers/missing-trials/{model}/{press}/{task}.{n}.log",


rule aggregate:
    input:
        RAW,
        RAW_MARKER,
        TIMING,
    output:
        results=report(
            "results/tables/results.csv",
            caption="../report/results.rst",
            category="Tables",
            labels={"table": "results (one row per job)"},
        ),
        samples=report(
            "results/tables/samples.csv",
            caption="../report/samples.rst",
            category="Tables",
            labels={"table": "samples (one row per sample)"},
        ),
        performance=report(
            "results/tables/performance.csv",
            caption="../report/paper_tables.rst",
            category="Tables",
            labels={"table": "performance"},
        ),
        memory=report(
            "results/tables/memory_usage.csv",
            caption="../report/paper_tables.rst",
            category="Tables",
            labels={"table": "memory usage"},
        ),
        throughput=report(
            "results/tables/throughput.csv",
            caption="../report/paper_tables.rst",
            category="Tables",
            labels={"table": "throughput"},
        ),
        timing=report(
            "results/tables/timing.csv",
            caption="../report/timing.rst",
            category="Tables",
            labels={"table": "timing (medians and intervals)"},
        ),
    log:
        "logs/aggregate.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        study=study_json,
    shell:
        # the warnings (one per failed job) also go to the console: a run with failures stays loud; so do the lines
        # naming invalid raw results when aggregate refuses them (kvstudy.rawcheck)
        "kvstudy aggregate --study {params.study:q} --out-dir results/tables > {log} 2>&1 "
        "|| {{ grep -h '^aggregate: ' {log} >&2; exit 1; }}; "
        "grep -h '^aggregate: warning' {log} >&2 || true"
