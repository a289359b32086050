# Do the study's attention implementations compute the same model (kvstudy.attn_equivalence)? Where one model's
# weights run under two or more implementations, one job loads it under each and under eager (the reference) and
# compares their logits on one prompt -> results/analysis/attention_equivalence.csv, before their speed is compared.

if ATTN_GROUPS:

    rule attention_equivalence:
        input:
            equivalence_fetched,
        output:
            report(
                "results/analysis/attention_equivalence.csv",
                caption="../report/attention_equivalence.rst",
                category="Analysis",
                labels={"table": "attention implementations vs eager"},
            ),
        log:
            "logs/attention_equivalence.log",
        conda:
            "../../envs/eval.yaml"
        resources:
            **EVAL_RESOURCES,
        params:
            groups=json.dumps(ATTN_GROUPS),
            device=config["eval"]["device"],
        shell:
            "python -m kvstudy.attn_equivalence --groups {params.groups:q} --device {params.device} "
            "--out {output} > {log} 2>&1"
