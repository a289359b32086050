# Models and data fetched once, on the node that runs snakemake, before any eval job (kvstudy.fetch): one local job
# per hub model (and NLI judge), hub dataset and `data:` entry, each writing a stamp under resources/fetched/ with
# the commit it resolved to. Eval jobs depend on the stamps of what they read (fetched_inputs, common.smk) and run
# with HF_HUB_OFFLINE=1; a fetch job runs with the HF_HUB_OFFLINE its user gave (an offline node uses its cache).
# A study with nothing to fetch (built-in or local models, generated tasks) defines none of these rules.

FETCH_SHELL = (
    "HF_HUB_OFFLINE={params.offline:q} HF_DATASETS_OFFLINE={params.offline:q} "
    "kvstudy fetch --spec {params.spec:q} --out {output:q} > {log:q} 2>&1 "
    "|| {{ tail -n 1 {log:q} >&2; exit 1; }}"
)

if FETCH.of("model"):

    rule fetch_model:
        output:
            f"{fetch.STAMPS}/model/{{item}}.json",
        log:
            "logs/fetch/model/{item}.log",
        localrule: True
        conda:
            "../../envs/eval.yaml"
        params:
            spec=fetch_spec,
            offline=HUB_OFFLINE_GIVEN,
        shell:
            FETCH_SHELL


if FETCH.of("dataset"):

    rule fetch_dataset:
        output:
            f"{fetch.STAMPS}/dataset/{{item}}.json",
        log:
            "logs/fetch/dataset/{item}.log",
        localrule: True
        conda:
            "../../envs/eval.yaml"
        params:
            spec=fetch_spec,
            offline=HUB_OFFLINE_GIVEN,
        shell:
            FETCH_SHELL


if FETCH.of("data"):

    rule fetch_data:
        output:
            f"{fetch.STAMPS}/data/{{item}}.json",
        log:
            "logs/fetch/data/{item}.log",
        localrule: True
        conda:
            "../../envs/eval.yaml"
        params:
            spec=fetch_spec,
            offline=HUB_OFFLINE_GIVEN,
        shell:
            FETCH_SHELL


rule fetch:
    input:
        sorted(FETCH.items),
    localrule: True
