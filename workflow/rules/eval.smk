# One GPU/CPU job per (model, task, length, press variant, seed) -> one raw result JSON.


rule eval:
    output:
        grid.RAW,
    log:
        grid.LOG,
    benchmark:
        "benchmarks/eval/{model}/{task}/{length}/{press}/seed{seed}.tsv"
    params:
        job=eval_job,
        device=config["eval"]["device"],
    threads: config["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    conda:
        "../../envs/eval.yaml"
    shell:
        "kvstudy eval --job {params.job:q} --out {output} --threads {threads} "
        "--device {params.device} > {log} 2>&1"
