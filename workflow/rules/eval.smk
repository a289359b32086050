# Eval jobs -> one raw result JSON per (model, task, length, press variant, seed). With eval.group `entry` (default)
# or `cell`, one job runs a group of variants of one cell with one model load and one prefill per sample
# (kvstudy.engine): one rule per group (kvstudy.grid.eval_groups), its variants' raw results as outputs, the cell's
# model/task/length/seed as wildcards. With `variant`, one rule (`eval`) and one job per variant.
#
# `eval` is also the one body of the per-variant eval rules of tuning.smk (`use rule eval as eval_trial` and
# `eval_tuned`). With eval groups it runs no job itself (its press matches no path: the group rules make every
# untuned raw result); it is defined then only where a search needs it as that template.

if EVAL_GROUPS is None or SEARCHES:

    rule eval:
        input:
            fetched_inputs,  # the fetch stamps of its model and data (fetch.smk); none for built-in models and generated tasks
        output:
            grid.RAW,
        log:
            grid.LOG,
        benchmark:
            "benchmarks/eval/{model}/{task}/{length}/{press}/seed{seed}.tsv"
        wildcard_constraints:
            press=r"[^/]+" if EVAL_GROUPS is None else r"(?!)",
        group:
            EVAL_JOB_GROUP
        conda:
            "../../envs/eval.yaml"
        threads: config["eval"]["threads"]
        resources:
            **variant_resources(),
        params:
            args=eval_args,  # --job '<the job as JSON>' --out <the raw result> --device <eval.device> (common.smk)
        shell:
            "kvstudy eval {params.args} --threads {threads} > {log} 2>&1"


if EVAL_GROUPS is not None:
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
            group:
                EVAL_JOB_GROUP
            conda:
                "../../envs/eval.yaml"
            threads: config["eval"]["threads"]
            resources:
                **group_resources(_group),
            params:
                args=group_args(_group),
            shell:
                "kvstudy eval {params.args} --threads {threads} > {log[0]} 2>&1"
