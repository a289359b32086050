"""aggregate(): raw result JSONs -> the contract's CSV tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kvstudy.aggregate import InvalidResults, aggregate

# Copied by hand from docs/data-contracts.md (not imported) so a drift in the module fails here.
RESULTS_COLUMNS = (
    "model, model_path, task, length, press, method, compression_ratio, seed, status, metric, score, n, "
    "kv_tokens_kept, kv_tokens_full, kv_fraction_kept, kv_bytes, kv_bytes_full, peak_memory_bytes, "
    "peak_memory_kind, prefill_seconds, ttft_seconds, decode_tokens_per_second, total_seconds, "
    "kv_fraction_attended, kv_tokens_final, kv_bytes_final, params, device, "
    "host, git_commit, kvstudy_version, higher_is_better, error, phase, kv_tokens_held, kv_bytes_held, "
    "kv_bytes_reference, effective_ratio, citation_recall, citation_precision"
).split(", ")
SAMPLES_COLUMNS = (
    "model, task, length, press, method, compression_ratio, seed, sample_id, score, prediction, references, "
    "input_tokens, context_tokens, depth, kv_tokens, kv_bytes, prefill_seconds, ttft_seconds, higher_is_better, "
    "nll, nll_sum, scored_tokens, cluster, citation_recall, citation_precision"
).split(", ")
PAPER_COLUMNS = (
    "model,technique,cache_size,task,context_length,performance,memory_gb,throughput_tokens_per_sec,"
    "kv_memory_gb,prefill_tokens_per_sec,throughput_low,throughput_high,efficiency_source".split(",")
)
IDS = {"model": str, "task": str, "press": str, "technique": str, "sample_id": str}


def raw_result(press="snapkv-cr0.50", seed=0, task="niah", status="ok", scores=(1.0, 0.0),
               kv_tokens_kept=512.0, peak=512_000_000, tps=900.0):
    method = press.split("-")[0]
    ratio = 0.0 if press == "no_press" else float(press.rsplit("cr", 1)[1])
    ok = status == "ok"
    samples = [
        {"id": f"{i:02d}", "score": s, "prediction": "v001", "references": ["v001", "V001"],
         "input_tokens": 1027, "context_tokens": 1024, "depth": 0.25 * i, "kv_tokens": kv_tokens_kept,
         "kv_bytes": 262144, "prefill_seconds": 0.01, "ttft_seconds": 0.012, "decode_tokens": 2,
         "decode_seconds": 0.001}
        for i, s in enumerate(scores)
    ]
    return {
        "schema_version": 1,
        "job": {"model": "tiny", "model_path": "builtin:tiny-retrieval", "task": task, "task_params": {},
                "length": 1024, "press": press, "method": method, "params": {"window_size": 64, "a": 1},
                "compression_ratio": ratio, "seed": seed},
        "status": status,
        "error": None if ok else "CUDA out of memory",
        "quality": {"metric": "string_match_all", "score": sum(scores) / len(scores) if ok else None,
                    "n": len(scores)},
        "samples": samples if ok else [],
        "efficiency": {"kv_tokens_kept": kv_tokens_kept, "kv_tokens_full": 1024, "kv_fraction_kept": 0.5,
                       "kv_bytes": int(kv_tokens_kept * 512), "kv_bytes_full": 524288, "peak_memory_bytes": peak,
                       "peak_memory_kind": "rss", "prefill_seconds": 0.01, "ttft_seconds": 0.012,
                       "decode_tokens_per_second": tps, "total_seconds": 1.3},  # kept for oom: must be dropped
        "fidelity": None,
        "provenance": {"kvstudy_version": "0.1.0", "git_commit": "abc", "python": "3.11.7", "torch": "2.13.0",
                       "transformers": "5.2.0", "kvpress": "0.5.5", "device": "cpu", "device_name": "x86_64",
                       "cuda": None, "host": "node1", "started": "2026-01-01T00:00:00+00:00",
                       "finished": "2026-01-01T00:00:01+00:00"},
    }


def write_raws(tmp_path: Path, raws: list[dict]) -> list[Path]:
    paths = []
    for i, raw in enumerate(raws):
        path = tmp_path / "raw" / f"{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(raw))
        paths.append(path)
    return paths


@pytest.fixture
def tables(tmp_path):
    raws = [
        raw_result("snapkv-cr0.50", seed=0, scores=(1.0, 0.0), kv_tokens_kept=511.6, peak=2_500_000_000),
        raw_result("snapkv-cr0.50", seed=1, scores=(1.0, 1.0), kv_tokens_kept=511.6, peak=1_500_000_000),
        raw_result("no_press", scores=(1.0, 1.0, 0.0, 1.0), kv_tokens_kept=1024.0, peak=3_000_000_000, tps=500.0),
        raw_result("knorm-cr0.75", scores=(0.0, 0.0), kv_tokens_kept=256.0, peak=1_000_000_000, tps=1200.0),
        raw_result("expected-cr0.90", status="oom"),
    ]
    out = tmp_path / "tables"
    aggregate(write_raws(tmp_path, raws), out)
    return out


def read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, dtype=IDS)


def test_columns_match_contract(tables):
    assert list(read(tables, "results.csv").columns) == RESULTS_COLUMNS
    assert list(read(tables, "samples.csv").columns) == SAMPLES_COLUMNS
    for name in ("performance.csv", "memory_usage.csv", "throughput.csv"):
        assert list(read(tables, name).columns) == PAPER_COLUMNS
    assert sorted(p.name for p in tables.iterdir()) == sorted(
        ["results.csv", "samples.csv", "performance.csv", "memory_usage.csv", "throughput.csv", "timing.csv"]
    )  # no temp files left behind


def test_results_rows(tables):
    res = read(tables, "results.csv")
    assert list(zip(res.press, res.seed)) == [  # sorted, whatever order the paths came in
        ("expected-cr0.90", 0), ("knorm-cr0.75", 0), ("no_press", 0), ("snapkv-cr0.50", 0), ("snapkv-cr0.50", 1)
    ]
    row = res[(res.press == "snapkv-cr0.50") & (res.seed == 1)].iloc[0]
    assert row.status == "ok" and row.score == 1.0 and row.n == 2 and row.method == "snapkv"
    assert row.params == '{"a":1,"window_size":64}'
    assert (row.device, row.host, row.git_commit, row.kvstudy_version) == ("cpu", "node1", "abc", "0.1.0")
    assert row.peak_memory_bytes == 1_500_000_000 and row.kv_bytes_full == 524288


def test_citation_sub_scores_get_their_own_columns(tmp_path):
    """helmet_cite's judged citation recall / precision (raw: samples[].citation_rec/_prec and
    quality.sub_scores) are results.csv and samples.csv columns; other tasks leave them empty."""
    cite = raw_result("snapkv-cr0.50", task="cite", scores=(0.5, 0.2))
    for sample, rec, prec in zip(cite["samples"], (0.75, 0.25), (1.0, 0.0)):
        sample.update(str_em=0.0, citation_rec=rec, citation_prec=prec)
    cite["quality"]["sub_scores"] = {"str_em": 0.0, "citation_rec": 0.5, "citation_prec": 0.5}
    out = tmp_path / "t"
    aggregate(write_raws(tmp_path, [cite, raw_result("no_press")]), out)
    res, smp = read(out, "results.csv").set_index("task"), read(out, "samples.csv")
    assert (res.loc["cite", "citation_recall"], res.loc["cite", "citation_precision"]) == (0.5, 0.5)
    assert res.loc["niah", ["citation_recall", "citation_precision"]].isna().all()
    cite_rows = smp[smp.task == "cite"].sort_values("sample_id")
    assert list(cite_rows.citation_recall) == [0.75, 0.25] and list(cite_rows.citation_precision) == [1.0, 0.0]
    assert smp[smp.task == "niah"][["citation_recall", "citation_precision"]].isna().all(axis=None)


def test_extra_metrics_get_a_column_each_and_old_results_leave_them_empty(tmp_path):
    """A task's extra metrics (samples[].<metric>, quality.sub_scores.<metric>) are columns after the fixed ones,
    sorted by name; a raw result from before them (no sub_scores) still aggregates, its cells empty."""
    new = raw_result("snapkv-cr0.50", task="qa", scores=(1.0, 0.0))
    for sample, f1, rouge in zip(new["samples"], (1.0, 0.5), (0.8, 0.0)):
        sample.update(token_f1=f1, rouge_l_f1=rouge)
    new["quality"]["sub_scores"] = {"token_f1": 0.75, "rouge_l_f1": 0.4}
    out = tmp_path / "t"
    aggregate(write_raws(tmp_path, [new, raw_result("no_press", task="qa")]), out)
    res, smp = read(out, "results.csv"), read(out, "samples.csv")
    assert list(res.columns) == RESULTS_COLUMNS + ["rouge_l_f1", "token_f1"]
    res = res.set_index("press")
    assert list(smp.columns) == SAMPLES_COLUMNS + ["rouge_l_f1", "token_f1"]
    assert (res.loc["snapkv-cr0.50", "token_f1"], res.loc["snapkv-cr0.50", "rouge_l_f1"]) == (0.75, 0.4)
    assert res.loc["no_press", ["token_f1", "rouge_l_f1"]].isna().all()
    assert list(smp[smp.press == "snapkv-cr0.50"].sort_values("sample_id").token_f1) == [1.0, 0.5]
    assert smp[smp.press == "no_press"][["token_f1", "rouge_l_f1"]].isna().all(axis=None)
    aggregate(write_raws(tmp_path / "old", [raw_result("no_press")]), tmp_path / "old_t")  # none anywhere:
    assert list(read(tmp_path / "old_t", "results.csv").columns) == RESULTS_COLUMNS  # the contract's columns


def test_oom_row_has_status_and_no_measures(tables):
    res = read(tables, "results.csv")
    oom = res[res.press == "expected-cr0.90"].iloc[0]
    assert oom.status == "oom" and oom.method == "expected" and oom.compression_ratio == 0.9
    measures = ["score", "n", "kv_tokens_kept", "kv_bytes", "peak_memory_bytes", "ttft_seconds",
                "decode_tokens_per_second", "total_seconds"]
    assert oom[measures].isna().all()
    assert "expected-cr0.90" not in set(read(tables, "samples.csv").press)
    perf = read(tables, "performance.csv")
    oom_perf = perf[perf.technique == "expected-cr0.90"]
    assert len(oom_perf) == 1
    assert oom_perf[["cache_size", "performance", "memory_gb", "throughput_tokens_per_sec"]].isna().all(axis=None)


def test_oom_without_quality_or_efficiency_is_refused(tmp_path):
    """The schema requires both, oom or not: such a file is named, and no table is written."""
    raw = raw_result("expected-cr0.90", status="oom")
    raw["quality"], raw["efficiency"] = None, None
    paths = write_raws(tmp_path, [raw_result("no_press"), raw])
    with pytest.raises(InvalidResults, match=f"{paths[1]}: quality must be object"):
        aggregate(paths, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_samples_rows(tables):
    samples = read(tables, "samples.csv")
    assert len(samples) == 2 + 2 + 4 + 2
    first = samples[(samples.press == "snapkv-cr0.50") & (samples.seed == 0)].iloc[0]
    assert first.sample_id == "00" and first.references == "v001|V001" and first.kv_tokens == 511.6
    assert list(samples[samples.press == "no_press"].score) == [1.0, 1.0, 0.0, 1.0]


def test_paper_values(tables):
    perf = read(tables, "performance.csv").set_index("technique")
    snap = perf.loc["snapkv-cr0.50"]  # two seeds: score 0.5 and 1.0, memory 2.5 and 1.5 GB
    assert snap.performance == pytest.approx(75.0)
    assert snap.memory_gb == pytest.approx(2.0)
    assert snap.cache_size == 512  # round(511.6)
    assert snap.context_length == 1024 and snap.task == "niah" and snap.model == "tiny"
    assert perf.loc["no_press"].performance == pytest.approx(75.0)
    assert perf.loc["knorm-cr0.75"].throughput_tokens_per_sec == 1200.0
    assert "512," in (tables / "performance.csv").read_text()  # an int, not 512.0


def test_paper_sort_orders(tables):
    perf = read(tables, "performance.csv")
    assert list(perf.technique) == ["no_press", "snapkv-cr0.50", "knorm-cr0.75", "expected-cr0.90"]
    mem = read(tables, "memory_usage.csv")  # by the KV bytes held (issue 15), not peak memory
    assert list(mem.technique) == ["knorm-cr0.75", "snapkv-cr0.50", "no_press", "expected-cr0.90"]
    assert list(mem.kv_memory_gb[:3] * 1e9) == [256 * 512, int(511.6 * 512), 1024 * 512]
    thr = read(tables, "throughput.csv")
    assert list(thr.technique) == ["knorm-cr0.75", "snapkv-cr0.50", "no_press", "expected-cr0.90"]


def test_paper_sort_is_within_task(tmp_path):
    raws = [raw_result("no_press", task="b", scores=(1.0,)), raw_result("no_press", task="a", scores=(0.0,))]
    aggregate(write_raws(tmp_path, raws), tmp_path / "t")
    assert list(read(tmp_path / "t", "performance.csv").task) == ["a", "b"]


def test_other_schema_version_is_refused(tmp_path):
    raw = raw_result()
    raw["schema_version"] = 2
    with pytest.raises(InvalidResults, match="schema_version"):
        aggregate(write_raws(tmp_path, [raw]), tmp_path / "t")
    assert not (tmp_path / "t" / "results.csv").exists()


def test_higher_is_better_is_optional_and_defaults_to_true(tmp_path):
    lower = raw_result("no_press", task="ppl", scores=(12.5, 9.0))
    lower["quality"] |= {"metric": "perplexity", "higher_is_better": False}
    aggregate(write_raws(tmp_path, [raw_result("no_press"), lower]), tmp_path / "t")
    results = read(tmp_path / "t", "results.csv").set_index("task")
    assert results.loc["niah", "higher_is_better"]
    assert not results.loc["ppl", "higher_is_better"]
    samples = read(tmp_path / "t", "samples.csv")
    assert samples.groupby("task")["higher_is_better"].all().to_dict() == {"niah": True, "ppl": False}


def test_failed_job_is_a_row_with_its_error_and_no_number(tmp_path, capsys):
    from kvstudy.failed import failed_result

    job = {**raw_result("tova-cr0.50")["job"], "task_kind": "niah"}
    failed = failed_result(job, RuntimeError("boom\nsecond line"), "cpu", "2026-01-01T00:00:00+00:00")
    paths = write_raws(tmp_path, [raw_result("no_press"), failed])
    aggregate(paths, tmp_path / "t")
    res = read(tmp_path / "t", "results.csv").set_index("press")
    row = res.loc["tova-cr0.50"]
    assert row.status == "failed" and row.error == "RuntimeError: boom" and row.metric == "string_match_all"
    assert row[["score", "n", "kv_bytes", "kv_bytes_held", "peak_memory_bytes", "ttft_seconds"]].isna().all()
    assert pd.isna(res.loc["no_press", "error"])
    assert "tova-cr0.50" not in set(read(tmp_path / "t", "samples.csv").press)
    perf = read(tmp_path / "t", "performance.csv").set_index("technique")
    assert perf.loc["tova-cr0.50", ["cache_size", "performance", "memory_gb"]].isna().all()
    err = capsys.readouterr().err
    assert f"aggregate: warning: failed job {paths[1]}: RuntimeError: boom" in err
    assert err.count("failed job") == 1


def _with_final(raw, kept, final, bytes_per_token=256):
    raw["efficiency"].update(kv_tokens_kept=kept, kv_bytes=kept * bytes_per_token, kv_tokens_final=final,
                             kv_bytes_final=final * bytes_per_token)
    return raw


def test_decoding_press_is_placed_at_the_cache_it_held_at_the_end(tmp_path, capsys):
    """A decoding press keeps the full cache at prefill and evicts while generating: it is placed at its final
    cache, compared with no_press's final cache of the same cell, at the fraction it really evicted."""
    raws = [_with_final(raw_result("no_press"), 1024, 1030),
            _with_final(raw_result("decoding-cr0.50"), 1024, 400),  # asked for 0.5, evicted 1 - 400/1030
            _with_final(raw_result("snapkv-cr0.50"), 512, 518),
            _with_final(raw_result("decoding-cr0.90", task="other"), 1024, 200)]  # no no_press in its cell
    raws[1]["job"]["method"] = raws[3]["job"]["method"] = "decoding"
    aggregate(write_raws(tmp_path, raws), tmp_path / "t")
    res = read(tmp_path / "t", "results.csv").set_index(["task", "press"])
    dec = res.loc[("niah", "decoding-cr0.50")]
    assert dec.phase == "decoding" and dec.compression_ratio == 0.5
    assert dec.kv_bytes_held == 400 * 256 and dec.kv_tokens_held == 400
    assert dec.kv_bytes_reference == 1030 * 256
    assert dec.effective_ratio == pytest.approx(1 - 400 / 1030)
    snap = res.loc[("niah", "snapkv-cr0.50")]  # a prefill press: its cache after prefill, its nominal ratio
    assert (snap.phase, snap.kv_bytes_held, snap.kv_bytes_reference, snap.effective_ratio) == (
        "prefill", 512 * 256, 1024 * 256, 0.5)
    alone = res.loc[("other", "decoding-cr0.90")]
    assert pd.isna(alone.effective_ratio) and pd.isna(alone.kv_bytes_reference) and alone.kv_bytes_held == 200 * 256
    assert "other/1024/decoding-cr0.90/seed0: decoding press without an ok no_press" in capsys.readouterr().err
    perf = read(tmp_path / "t", "performance.csv").set_index(["task", "technique"])
    assert perf.loc[("niah", "decoding-cr0.50"), "cache_size"] == 400


def test_perplexity_samples_keep_their_nll(tmp_path):
    raw = raw_result("no_press", task="ppl", scores=(12.5, 9.0))
    raw["quality"] |= {"metric": "perplexity", "higher_is_better": False}
    for s, nll in zip(raw["samples"], (2.5, 2.2)):
        s.update(nll=nll, nll_sum=nll * 100, scored_tokens=100)
    aggregate(write_raws(tmp_path, [raw, raw_result("no_press")]), tmp_path / "t")
    samples = read(tmp_path / "t", "samples.csv").set_index(["task", "sample_id"])
    assert samples.loc[("ppl", "00"), ["nll", "nll_sum", "scored_tokens"]].tolist() == [2.5, 250.0, 100]
    assert samples.loc[("niah", "00"), ["nll", "nll_sum", "scored_tokens"]].isna().all()
