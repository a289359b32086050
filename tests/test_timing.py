"""Efficiency that means what it says (issue 15): the median interval and "faster" rule, interval-aware fronts, no
lifetime RSS as CPU memory, KV bytes in the paper tables, and the timing protocol on the tiny model and on
random-weight Qwen3 / Gemma3 models."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from archs import make_model
from conftest import ROOT, TINY, copy_workflow
from kvstudy import timing
from kvstudy.intervals import compare, median_interval
from kvstudy.measure import PeakMemory
from kvstudy.pareto import non_dominated, pareto
from kvstudy.schemas import DIR as SCHEMAS

SCHEMA = json.loads((SCHEMAS / "timing.schema.json").read_text())


# --- the median and its interval ---------------------------------------------------------------------------------

def test_five_runs_give_min_max_with_their_true_coverage():
    iv = median_interval([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (iv.median, iv.low, iv.high, iv.n) == (3.0, 1.0, 5.0, 5)
    assert iv.coverage == pytest.approx(1 - 2 / 2**5)  # 93.75%: 95% is out of reach with 5 runs


@pytest.mark.parametrize("n", [6, 9, 12, 20, 41])
def test_interval_is_scipys_order_statistic_interval_where_95_is_reachable(n):
    x = np.random.default_rng(n).lognormal(size=n)
    iv = median_interval(x)
    ci = stats.quantile_test(x, q=np.median(x), p=0.5).confidence_interval(0.95)
    assert (iv.low, iv.high) == (ci.low, ci.high)
    assert iv.coverage >= 0.95 and iv.low <= iv.median <= iv.high


def test_missing_values_are_no_runs():
    assert median_interval([None, float("nan")]).n == 0
    assert median_interval([2.0, None, 4.0]).median == 3.0


def test_faster_only_when_intervals_are_apart():
    assert compare(1.0, 2.0, 2.5, 3.0) == -1 and compare(2.5, 3.0, 1.0, 2.0) == 1
    assert compare(1.0, 2.6, 2.5, 3.0) == 0  # overlap: not distinguishable, whatever the medians say
    assert compare(float("nan"), 1.0, 2.0, 3.0) == 0


# --- the front rule ------------------------------------------------------------------------------------------------

def test_front_without_intervals_is_plain_pareto():
    v = np.array([[1.0, -1.0], [0.8, -0.5], [0.7, -0.6], [0.9, -2.0]])  # (score, -latency)
    assert non_dominated(v).tolist() == [True, True, False, False]
    assert non_dominated(v, v, v).tolist() == non_dominated(v).tolist()


def _timed_results(latency: dict[str, tuple[float, float, float]], scores: dict[str, float]):
    results = pd.DataFrame([{"model": "m", "task": "t", "length": 1024, "press": p, "method": p.split("-")[0],
                             "compression_ratio": 0.0 if p == "no_press" else 0.5, "seed": 0, "status": "ok",
                             "score": s, "kv_bytes": 100 if p == "no_press" else 50, "ttft_seconds": 9.0}
                            for p, s in scores.items()])
    timing_csv = pd.DataFrame([{"model": "m", "length": 1024, "press": p, "status": "ok", "ttft_seconds": m,
                                "ttft_seconds_low": lo, "ttft_seconds_high": hi}
                               for p, (m, lo, hi) in latency.items()])
    return results, timing_csv


def test_a_press_not_surely_faster_is_off_the_latency_front_and_no_press_stays_on():
    # a: lower score, median faster but its interval overlaps no_press's -> off; no_press stays on
    # b: lower score, surely faster -> on; c: same score as no_press, overlapping -> does not push no_press off
    results, t = _timed_results({"no_press": (1.0, 0.9, 1.2), "a-cr0.50": (0.95, 0.85, 1.1),
                                 "b-cr0.50": (0.5, 0.4, 0.6), "c-cr0.50": (0.98, 0.92, 1.05)},
                                {"no_press": 1.0, "a-cr0.50": 0.8, "b-cr0.50": 0.6, "c-cr0.50": 1.0})
    front = pareto(results, t).query("task == 't'").set_index("press")
    assert front.loc[["no_press", "a-cr0.50", "b-cr0.50", "c-cr0.50"], "front_latency"].tolist() == [
        True, False, True, True]
    assert (front["latency_source"] == "timing").all() and front.loc["a-cr0.50", "latency_low"] == 0.85
    plain = pareto(results).set_index("press")  # timing off: the eval jobs' TTFT, no interval
    assert (plain["latency_source"] == "eval").all() and plain["latency_low"].isna().all()


# --- memory -------------------------------------------------------------------------------------------------------

def test_cpu_peak_memory_is_none_never_the_lifetime_rss():
    mem = PeakMemory(torch.device("cpu"))
    big = torch.ones(64, 2**20)  # 256 MB the process allocated before the reset
    mem.reset()
    del big
    assert mem.kind == "none" and mem.peak() is None


@pytest.fixture(scope="module")
def real_tables(tmp_path_factory):
    """A small real run of the tiny model: no_press, int4 and three evictions at 512 tokens, aggregated."""
    from kvstudy.aggregate import aggregate
    from kvstudy.evaluate import run_job, write_atomic

    tmp = tmp_path_factory.mktemp("real")
    paths = []
    for method, ratio in (("no_press", 0.0), ("int4", 0.0), ("knorm", 0.5), ("streaming_llm", 0.5),
                          ("snapkv", 0.9)):
        press = method if not ratio else f"{method}-cr{ratio:.2f}"
        job = {"model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
               "task": "niah", "task_kind": "niah", "task_params": {"n_samples": 3}, "length": 512, "seed": 0,
               "press": press, "method": method, "params": {}, "compression_ratio": ratio,
               "stop_words": [".", "\n"]}
        paths.append(tmp / f"{press}.json")
        write_atomic(run_job(job, device="cpu"), paths[-1])
    aggregate(paths, tmp / "tables")
    return tmp / "tables"


def test_paper_tables_carry_kv_memory_int4_small_and_evictions_not_above_no_press(real_tables):
    mem = pd.read_csv(real_tables / "memory_usage.csv").set_index("technique")
    base = mem.loc["no_press", "kv_memory_gb"]
    assert 0.1 < mem.loc["int4", "kv_memory_gb"] / base < 0.25  # 4-bit data + scales + fp32 residual window
    for press in ("knorm-cr0.50", "streaming_llm-cr0.50", "snapkv-cr0.90"):
        assert mem.loc[press, "kv_memory_gb"] < base
    assert list(mem.index) == list(mem.sort_values("kv_memory_gb").index)  # ordered by KV memory
    assert mem["memory_gb"].isna().all()  # CPU: no peak number, not a lifetime RSS
    results = pd.read_csv(real_tables / "results.csv")
    assert (results.peak_memory_kind == "none").all()
    for name in ("performance.csv", "throughput.csv"):
        t = pd.read_csv(real_tables / name)
        assert {"kv_memory_gb", "prefill_tokens_per_sec"} <= set(t.columns)
        assert (t.efficiency_source == "eval").all() and t.throughput_low.isna().all()  # no timing here
    assert pd.read_csv(real_tables / "timing.csv").empty


# --- the timing protocol ------------------------------------------------------------------------------------------

def _job(path, variants, length=128, repeats=2, decode_tokens=4):
    return {"model": "m", "model_path": path, "dtype": "float32", "attn_implementation": "sdpa",
            "config_overrides": None, "length": length, "seed": 0, "repeats": repeats,
            "decode_tokens": decode_tokens,
            "variants": [{"press": p, "method": p.split("-")[0], "params": {},
                          "compression_ratio": float(p.split("cr")[1]) if "-cr" in p else 0.0} for p in variants]}


def _by_press(result):
    return {v["press"]: v for v in result["variants"]}


def test_timing_job_on_the_tiny_model_follows_its_schema():
    result = timing.run_job(_job(TINY, ["no_press", "knorm-cr0.50", "int4"], repeats=3), device="cpu")
    jsonschema.validate(result, SCHEMA)
    v = _by_press(result)
    assert all(x["status"] == "ok" and len(x["runs"]) == 3 for x in v.values())
    full = v["no_press"]["summary"]["kv_bytes"]["median"]
    assert full == 2 * 2 * 2 * 32 * 128 * 4  # K, V x layers x KV heads x head dim x fp32, read from the cache
    assert v["knorm-cr0.50"]["summary"]["kv_bytes"]["median"] == full / 2
    assert v["int4"]["summary"]["kv_bytes"]["median"] < full / 4
    assert v["no_press"]["summary"]["overhead_seconds"]["median"] == 0.0  # it is its own reference
    for x in v.values():
        assert x["summary"]["peak_memory_bytes"] is None  # CPU: no peak
        r = x["runs"][0]
        assert r["ttft_seconds"] >= r["prefill_seconds"] > 0 and r["decode_tokens"] == 4
    assert result["protocol"]["clock"] == "process cpu"


@pytest.mark.parametrize("arch", ["qwen3", "gemma3"])
def test_timing_on_other_architectures_counts_their_own_cache(arch, tmp_path):
    from kvstudy.measure import full_cache_bytes
    from kvstudy.models import load_model

    path = make_model(arch, tmp_path / arch, sliding_window=64)
    result = timing.run_job(_job(path, ["no_press", "knorm-cr0.50"], length=160), device="cpu")
    jsonschema.validate(result, SCHEMA)
    v = _by_press(result)
    model, _ = load_model(path, "float32", "sdpa", "cpu")
    own = full_cache_bytes(model, 160)  # Gemma3's sliding layers hold their window, not 160 tokens
    assert v["no_press"]["summary"]["kv_bytes"]["median"] == own
    assert v["knorm-cr0.50"]["summary"]["kv_bytes"]["median"] < own
    if arch == "gemma3":
        c = model.config
        per_token = 2 * c.num_key_value_heads * c.head_dim * 4
        assert own < per_token * 160 * c.num_hidden_layers


def test_timing_config_defaults_off_and_other_lengths(study):
    from kvstudy.config import validate

    cfg = validate(study)
    assert cfg["timing"] == {"enabled": True, "repeats": 5, "decode_tokens": 128, "lengths": [256, 512],
                             "cold": False, "cold_repeats": 1}
    jobs = timing.jobs(cfg)
    assert [(j["model"], j["length"]) for j in jobs] == [("tiny", 256), ("tiny", 512)]
    assert [v["press"] for v in jobs[0]["variants"]][:2] == ["no_press", "snapkv-cr0.50-ws16"]
    assert timing.jobs(validate({**study, "timing": {"enabled": False}})) == []
    assert jobs[0]["cold_repeats"] == 0  # cold off: no fresh processes
    cold = validate({**study, "timing": {"cold": True, "cold_repeats": 3}})
    assert {j["cold_repeats"] for j in timing.jobs(cold)} == {3}
    sweep = validate({**study, "timing": {"lengths": [128, 4096]}})
    assert [j["length"] for j in timing.jobs(sweep)] == [128, 4096]


def test_a_study_with_timing_off_has_no_timing_job(tmp_path):
    wd = copy_workflow(tmp_path)
    cfg = (wd / ".test/config.yaml").read_text()
    (wd / ".test/off.yaml").write_text(cfg.split("timing:")[0] + "timing: {enabled: false}\n")
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "figures/all", "--cores", "2", "--configfile",
                        ".test/off.yaml"], cwd=wd, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "rule timing" not in out and "localrule timing" not in out and "aggregate" in out
    on = subprocess.run([sys.executable, "-m", "snakemake", "-n", "figures/all", "--cores", "2", "--configfile",
                         ".test/config.yaml"], cwd=wd, capture_output=True, text=True, timeout=600)
    assert "results/timing/tiny/256.json" in on.stdout + on.stderr


# --- cold runs (issue 21.1) ----------------------------------------------------------------------------------------

def test_cold_runs_are_per_variant_each_in_a_fresh_process(tmp_path):
    import os

    from kvstudy.timing_table import timing_table

    from kvstudy.timing_cold import run_job

    job = {**_job(TINY, ["no_press", "knorm-cr0.50", "streaming_llm-cr0.50"]), "cold_repeats": 2}
    result = run_job(job, device="cpu")
    jsonschema.validate(result, SCHEMA)
    assert result["protocol"]["cold_repeats"] == 2
    pids = []
    for v in result["variants"]:
        cold = v["cold"]
        assert cold["status"] == "ok" and len(cold["runs"]) == 2, v["press"]
        for r in cold["runs"]:
            assert r["run_seconds"] == pytest.approx(r["ttft_seconds"] + r["decode_seconds"])
            assert r["ttft_seconds"] >= r["prefill_seconds"] > 0 and r["load_seconds"] > 0
            pids.append(r["pid"])
        assert cold["summary"]["ttft_seconds"]["n"] == 2 and cold["summary"]["peak_memory_bytes"] is None
        assert v["summary"]["run_seconds"]["n"] == 2  # the warm runs, beside
    assert len(set(pids)) == 6 and os.getpid() not in pids  # every cold run had a process of its own
    path = tmp_path / "t.json"
    path.write_text(json.dumps(result))
    table = timing_table([path]).set_index("press")
    assert (table["cold_status"] == "ok").all() and (table["cold_runs"] == 2).all()
    for p, v in _by_press(result).items():
        assert table.loc[p, "cold_ttft_seconds"] == v["cold"]["summary"]["ttft_seconds"]["median"]
        assert table.loc[p, "run_seconds"] == v["summary"]["run_seconds"]["median"]


def test_without_cold_the_timing_table_has_empty_cold_columns(tmp_path):
    from kvstudy.timing_table import timing_table

    from kvstudy.timing_cold import run_job

    result = run_job({**_job(TINY, ["no_press"]), "cold_repeats": 0}, device="cpu")
    assert result["variants"][0]["cold"] is None and result["protocol"]["cold_repeats"] == 0
    path = tmp_path / "t.json"
    path.write_text(json.dumps(result))
    table = timing_table([path])
    assert table["cold_status"].isna().all() and table["cold_ttft_seconds"].isna().all()


def test_a_cold_run_does_not_count_the_model_load(tmp_path, monkeypatch):
    """A random-weight GPT-NeoX whose load is made to burn 0.6 s of CPU: the cold run's clock (process CPU time,
    one thread) must not see it, the recorded load_seconds must."""
    import time

    import kvstudy.models
    from kvstudy.timing_cold import cold_once

    real = kvstudy.models.load_model

    def slow_load(*args, **kwargs):
        t0 = time.process_time()
        while time.process_time() - t0 < 0.6:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(kvstudy.models, "load_model", slow_load)
    path = make_model("gpt_neox", tmp_path / "neox")
    job = _job(path, ["knorm-cr0.50"], length=64, decode_tokens=2)
    r = cold_once(job, job["variants"][0], threads=1, device="cpu")
    assert r["load_seconds"] >= 0.6
    assert 0 < r["prefill_seconds"] <= r["ttft_seconds"] < 0.6 and r["kv_bytes"] > 0
