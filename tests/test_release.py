"""A release of a study (kvstudy.release, workflow/rules/release.smk): `snakemake release` on the small e2e study
writes a self-describing bundle whose analysis and figures rebuild from the bundle alone, in a folder with no
checkout, no raw result and no model; a bundle whose per-sample data was altered does not rebuild the same."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_workflow


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("study"))
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "release", "--configfile", ".test/config.yaml"],
                       cwd=wd, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    return wd


def test_bundle_holds_results_tables_figures_provenance_and_metadata(released):
    bundle = released / "release/e2e"
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    files.discard(".snakemake_timestamp")  # Snakemake's mark on a directory output
    assert {"data/results.parquet", "data/samples.parquet", "config.yaml", "provenance.json", "provenance.html",
            "ro-crate-metadata.json", "README.md", "SHA256SUMS", "figures/all", "analysis/significance.csv",
            "tables/summary_score.tex", "figures/score_vs_ratio.png"} <= files
    results = pd.read_csv(released / "results/tables/results.csv")
    assert len(pd.read_parquet(bundle / "data/results.parquet")) == len(results) == 16
    samples = pd.read_parquet(bundle / "data/samples.parquet")
    assert len(samples) == len(pd.read_csv(released / "results/tables/samples.csv")) > len(results)
    crate = json.loads((bundle / "ro-crate-metadata.json").read_text())
    parts = {e["@id"]: e for e in crate["@graph"] if e.get("@type") == "File"}
    assert set(parts) == files - {"ro-crate-metadata.json", "SHA256SUMS"}
    assert parts["data/samples.parquet"]["encodingFormat"] == "application/vnd.apache.parquet"
    prov = json.loads((bundle / "provenance.json").read_text())
    assert prov["study"] == "e2e" and prov["raw_results"]["device"] == {"cpu": 16}
    assert (released / "release/e2e.tar.gz").stat().st_size > 0


def test_figures_rebuild_from_the_bundle_alone(released, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(released / "release/e2e", bundle)  # nothing else of the study comes along
    p = subprocess.run([sys.executable, "-m", "kvstudy.cli", "rebuild", "bundle", "--out", "rebuilt", "--check"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "identical" in p.stdout
    assert sorted(x.name for x in (tmp_path / "rebuilt/figures").glob("*.png")) == \
        sorted(x.name for x in (bundle / "figures").glob("*.png"))

    # the check can fail: one sample's score changed in the bundle changes the analysis and a figure
    samples = pd.read_parquet(bundle / "data/samples.parquet")
    row = samples.index[(samples["press"] == "streaming_llm-cr0.90") & (samples["score"] == 0)][0]
    samples.loc[row, "score"] = 1.0
    samples.to_parquet(bundle / "data/samples.parquet", index=False)
    p = subprocess.run([sys.executable, "-m", "kvstudy.cli", "rebuild", "bundle", "--out", "rebuilt2", "--check"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "analysis/significance.csv" in p.stderr
