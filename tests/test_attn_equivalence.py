"""The attention-implementation check (kvstudy.attn_equivalence, rule attention_equivalence): which models it
compares, what it measures against eager, and that a study with two implementations of one model schedules it."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from archs import make_model
from conftest import copy_workflow, dry_run_jobs
from kvstudy import attn_equivalence
from kvstudy.attn_equivalence import compare, groups, main


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    return make_model("qwen3", tmp_path_factory.mktemp("eqv") / "qwen3")


def test_groups_are_the_weights_run_under_two_or_more_implementations():
    m = lambda path, attn, dtype="float32": {"path": path, "dtype": dtype, "attn_implementation": attn}  # noqa: E731
    config = {"models": {"a_sdpa": m("A", "sdpa"), "a_eager": m("A", "eager"), "a_bf16": m("A", "sdpa", "bfloat16"),
                         "b": m("B", "sdpa"), "c1": m("C", "sdpa"), "c2": m("C", "sdpa")}}
    assert [g["models"] for g in groups(config)] == [{"a_sdpa": "sdpa", "a_eager": "eager"}]  # bf16: other weights


def test_sdpa_agrees_with_eager_and_a_wrong_kernel_does_not(qwen3, monkeypatch):
    group = {"path": qwen3, "revision": None, "dtype": "float32", "config_overrides": None,
             "models": {"q_sdpa": "sdpa", "q_eager": "eager"}}
    rows = {r["model"]: r for r in compare(group, tokens=48)}
    assert rows["q_sdpa"]["max_abs_diff"] < 1e-4 and rows["q_sdpa"]["top1_agreement"] == 1.0
    assert rows["q_sdpa"]["equivalent"] and rows["q_eager"]["max_abs_diff"] == 0.0
    real = attn_equivalence._logits

    def shuffled(group, implementation, ids, device):  # a "kernel" that attends to the wrong positions
        out = real(group, implementation, ids, device)
        return out if implementation == "eager" else out[torch.randperm(out.shape[0], generator=torch.Generator()
                                                                         .manual_seed(0))]
    monkeypatch.setattr(attn_equivalence, "_logits", shuffled)
    bad = {r["model"]: r for r in compare(group, tokens=48)}["q_sdpa"]
    assert not bad["equivalent"] and bad["top1_agreement"] < 0.5


def test_the_cli_writes_the_table(qwen3, tmp_path):
    group = {"path": qwen3, "revision": None, "dtype": "float32", "config_overrides": None,
             "models": {"q_sdpa": "sdpa", "q_eager": "eager"}}
    out = tmp_path / "attention_equivalence.csv"
    main(["--groups", __import__("json").dumps([group]), "--out", str(out), "--tokens", "32",
          "--device", "auto"])  # what the rule passes by default
    table = pd.read_csv(out)
    assert list(table.columns) == attn_equivalence.COLUMNS and table["equivalent"].all() and len(table) == 2


def test_a_study_with_two_implementations_schedules_the_check(qwen3, tmp_path):
    wd = copy_workflow(tmp_path)
    study = {"study": "eqv", "models": {"q_sdpa": {"path": qwen3, "dtype": "float32"},
                                        "q_eager": {"path": qwen3, "dtype": "float32", "attn_implementation": "eager"}},
             "tasks": {"niah": {"n_samples": 2, "n_depths": 2}}, "lengths": [128],
             "presses": [{"method": "no_press"}], "figures": ["niah_heatmap"], "timing": {"enabled": False}}
    (wd / "study.yaml").write_text(yaml.safe_dump(study))
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "figures/all", "--cores", "1", "--configfile",
                        "study.yaml"], cwd=wd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert [j["rule"] for j in dry_run_jobs(p.stdout)].count("attention_equivalence") == 1
