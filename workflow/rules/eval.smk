# One GPU/CPU job per (model, task, length, press variant, seed) -> one raw result JSON.


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
    conda:
        "../../envs/eval.yaml"
    shell:
        "kvstudy eval {params.args} --threads {threads} > {log} 2>&1"
