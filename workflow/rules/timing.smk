# The timing protocol (kvstudy.timing, docs/efficiency.md): one job per (model, timing length) times every press
# variant of the study in interleaved rounds -> results/timing/{model}/{length}.json. A study with
# `timing: {enabled: false}` has no such job, and its tables and fronts use the eval jobs' own timings.
# Run alone where snakemake runs the jobs itself (it claims every core), so no eval job shares the machine with a
# timed run; on SLURM it is one job with the eval jobs' resources.

if TIMING_JOBS:

    rule timing:
        input:
            fetched_model,
        output:
            timing.PATH,
        log:
            timing.LOG,
        benchmark:
            "benchmarks/timing/{model}/{length}.tsv"
        conda:
            "../../envs/eval.yaml"
        threads: timing_threads
        resources:
            **EVAL_RESOURCES,
        params:
            args=timing_args,
        shell:
            # the timed run uses eval.threads; the job's own `threads` claims the machine (timing_threads)
            f"kvstudy timing {{params.args}} --threads {config['eval']['threads']} > {{log}} 2>&1"
