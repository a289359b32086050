# Press hyper-parameter search: trials (eval jobs on the dev split) -> tune (global / per task) -> the tuned
# test-split variants read the choice at run time -> summary tables (trials, candidates, choices).
#
# A study without searches defines none of these rules: eval_trial and eval_tuned write paths under
# results/raw/ too, so Snakemake would try both on each of the study's raw results while it builds the DAG.
# The rules that run on the submitting node say so themselves (localrule), as the Snakefile's localrules would
# warn about rules a study does not define.

if SEARCHES:

    use rule eval as eval_trial with:
        output:
            tuning.DEV_RAW,
        log:
            tuning.DEV_LOG,
        benchmark:
            "benchmarks/eval/{model}/{task}/{length}/{press}/dev/seed{seed}.tsv"
        wildcard_constraints:
            press=r"[^/]+",
        params:
            args=trial_args,

    use rule eval as eval_tuned with:
        input:
            tuned_choice,
            fetched_inputs,
        wildcard_constraints:
            press=r"[^/]+-tuned-(global|task)",

    # eval's output pattern (one job per variant) matches a tuned variant's path too
    ruleorder: eval_tuned > eval

    rule tune_global:
        input:
            tune_global_input,
        output:
            tuning.CHOICE_GLOBAL,
        log:
            "logs/tune/{model}/{press}.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            study=tune_study,
        shell:
            "kvstudy tune --study {params.study:q} --model {wildcards.model} --press {wildcards.press} "
            "--out {output} > {log} 2>&1"

    rule tune_task:
        input:
            tune_task_input,
        output:
            tuning.CHOICE_TASK,
        log:
            "logs/tune/{model}/{press}/{task}.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            study=tune_study,
        shell:
            "kvstudy tune --study {params.study:q} --model {wildcards.model} --press {wildcards.press} "
            "--task {wildcards.task} --out {output} > {log} 2>&1"

    rule tuning_summary:
        input:
            choices=all_choices(),
            trials=sorted(TRIALS),
            results="results/tables/results.csv",
        output:
            trials=report(
                "results/analysis/tuning/trials.csv",
                caption="../report/tuning.rst",
                category="Tuning",
                labels={"table": "trials (dev split)"},
            ),
            candidates=report(
                "results/analysis/tuning/candidates.csv",
                caption="../report/tuning.rst",
                category="Tuning",
                labels={"table": "candidates"},
            ),
            choices=report(
                "results/analysis/tuning/choices.csv",
                caption="../report/tuning.rst",
                category="Tuning",
                labels={"table": "choices: per task vs global"},
            ),
            tex="results/analysis/tuning/choices.tex",
        log:
            "logs/tuning_summary.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            study=study_json,
        shell:
            "kvstudy tuning-summary --study {params.study:q} --results {input.results} "
            "--out-dir results/analysis/tuning > {log} 2>&1"
