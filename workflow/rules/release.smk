# A citable release of the study (kvstudy.release): `snakemake --cores 1 release` bundles the per-sample results
# (parquet), tables, analysis, figures, resolved config, provenance (code, packages, model and data commits,
# hardware) and RO-Crate metadata into release/{study}/ and release/{study}.tar.gz, after checking that the analysis
# and every figure rebuild from the bundle alone. Not part of figures/all: a release is asked for.
RELEASE = f"release/{config['study']}"


rule release_bundle:
    input:
        "figures/all",
        PROVENANCE,
        sorted(FETCH.items),  # what the fetch rules resolved, recorded in provenance.json
    output:
        bundle=directory(RELEASE),
        tarball=f"{RELEASE}.tar.gz",
    log:
        "logs/release.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        config=config_json,
    shell:
        "kvstudy release --config {params.config:q} --out {output.bundle:q} > {log} 2>&1"


rule release:
    input:
        rules.release_bundle.output,
    localrule: True
