# Eval jobs -> one raw result JSON per (model, task, length, press variant, seed). With eval.group `entry` (default)
# or `cell`, one job runs a group of variants of one cell with one model load and one prefill per sample
# (kvstudy.engine): one rule per group (kvstudy.grid.eval_groups), its variants' raw results as outputs, the cell's
# model/task/length/seed as wildcards. With `variant`, one rule and one job per variant.

if EVAL_GROUPS is None:

    rule eval:
        input:
            fetched_inputs,  # the fetch stamps of its model and data (fetch.smk); none for built-in models and generated tasks
        output:
            grid.RAW,
        log:
            grid.LOG,
        benchmark:
            "benchmarks/eval/{model}/{task}/{length}/{press}/seed{seed}.tsv"
        params:
            args=eval_args,  # --job '<the job as JSON>' --out <the raw result> --device <eval.device> (common.smk)
        threads: config["eval"]["threads"]
        resources:
            **EVAL_RESOURCES,
        group:
            EVAL_JOB_GROUP
        conda:
            "../../envs/eval.yaml"
        shell:
            "kvstudy eval {params.args} --threads {threads} > {log} 2>&1"

else:
    for _group in EVAL_GROUPS:

        rule:
            name:
                _group.name
            input:
                group_fetched(_group),
            output:
                _group.paths(grid.RAW),
            log:
                # the group job's own output first, then each variant's (its status, its traceback if it failed)
                [_group.own(grid.GROUP_LOG), *_group.paths(grid.LOG)],
            benchmark:
                _group.own(grid.GROUP_BENCHMARK)
            params:
                args=group_args(_group),
            threads: config["eval"]["threads"]
            resources:
                **group_resources(len(_group.presses)),
            group:
                EVAL_JOB_GROUP
            conda:
                "../../envs/eval.yaml"
            shell:
                "kvstudy eval {params.args} --threads {threads} > {log[0]} 2>&1"
