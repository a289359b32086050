"""pareto(): front flags per (model, task, length) and for the task mean, checked against hand fronts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kvstudy.pareto import non_dominated, pareto, write_pareto

COLUMNS = ["model", "task", "length", "press", "method", "compression_ratio", "score", "kv_bytes",
           "latency_seconds", "front_memory", "front_latency", "front_all", "higher_is_better", "phase",
           "effective_ratio", "latency_low", "latency_high", "latency_source", "peak_memory_bytes",
           "front_peak_memory"]


def job(task, press, score, kv_bytes, ttft, seed=0, status="ok", model="m", length=1024):
    ok = status == "ok"
    return {"model": model, "task": task, "length": length, "press": press, "method": press.split("-")[0],
            "compression_ratio": 0.0 if press == "no_press" else 0.5, "seed": seed, "status": status,
            "score": score if ok else None, "kv_bytes": kv_bytes if ok else None, "ttft_seconds": ttft if ok else None}


@pytest.fixture
def results():
    rows = [
        # t1: no_press averaged over two seeds (0.85, 0.95 -> 0.9); b and c tie exactly; d is dominated.
        job("t1", "no_press", 0.85, 100, 1.0, seed=0), job("t1", "no_press", 0.95, 100, 1.0, seed=1),
        job("t1", "a", 0.8, 50, 1.0), job("t1", "b", 0.7, 60, 0.5), job("t1", "c", 0.7, 60, 0.5),
        job("t1", "d", 0.6, 70, 2.0), job("t1", "e", None, None, None, status="oom"),
        # t2: d is oom here, so d has no "mean" row.
        job("t2", "no_press", 0.7, 100, 1.0), job("t2", "a", 0.5, 50, 1.0), job("t2", "b", 0.6, 60, 0.5),
        job("t2", "c", 0.6, 60, 0.5), job("t2", "d", None, None, None, status="oom"),
    ]
    return pd.DataFrame(rows)


def flags(table, task):
    rows = table[table.task == task].set_index("press")
    return {p: (r.front_memory, r.front_latency, r.front_all) for p, r in rows.iterrows()}


def test_columns_and_rows(results):
    table = pareto(results)
    assert list(table.columns) == COLUMNS
    assert sorted(flags(table, "t1")) == ["a", "b", "c", "d", "no_press"]  # oom e left out
    assert len(table) == 5 + 4 + 4


def test_front_per_task(results):
    assert flags(pareto(results), "t1") == {
        "no_press": (True, True, True),  # best score
        "a": (True, False, True),  # least memory; same latency as no_press with a lower score
        "b": (False, True, True),  # a beats it on memory; fastest
        "c": (False, True, True),  # tie with b: neither dominates the other
        "d": (False, False, False),  # dominated everywhere
    }


def test_seeds_averaged_and_latency_is_ttft(results):
    table = pareto(results).set_index(["task", "press"])
    assert table.loc[("t1", "no_press"), "score"] == pytest.approx(0.9)
    assert table.loc[("t1", "b"), "latency_seconds"] == 0.5
    assert table.loc[("t1", "a"), "method"] == "a" and table.loc[("t1", "a"), "compression_ratio"] == 0.5


def test_mean_rows(results):
    table = pareto(results)
    mean = table[table.task == "mean"].set_index("press")
    assert sorted(mean.index) == ["a", "b", "c", "no_press"]  # d lacks t2
    assert mean.loc["no_press", "score"] == pytest.approx(0.8)
    assert mean.loc["a", "score"] == pytest.approx(0.65) and mean.loc["b", "score"] == pytest.approx(0.65)
    assert mean.loc["a", "kv_bytes"] == 50 and mean.loc["b", "latency_seconds"] == 0.5
    assert (mean["length"] == 1024).all() and (mean["model"] == "m").all()
    assert flags(table, "mean") == {
        "no_press": (True, True, True),
        "a": (True, False, True),  # equal score to b with fewer bytes: dominates b on memory
        "b": (False, True, True),
        "c": (False, True, True),
    }


def test_groups_are_separate(results):
    other = results.assign(length=2048)
    other.loc[other.press == "no_press", "score"] = 0.1  # no_press now worse than a at 2048 only
    table = pareto(pd.concat([results, other], ignore_index=True))
    at = table[(table.task == "t1")].set_index(["length", "press"])
    assert bool(at.loc[(1024, "no_press"), "front_memory"]) is True
    assert bool(at.loc[(2048, "no_press"), "front_memory"]) is False


def test_non_dominated_directly():
    values = np.array([[1.0, 1.0], [1.0, 1.0], [0.5, 2.0], [0.5, 0.5], [2.0, np.nan]])
    assert non_dominated(values).tolist() == [True, True, True, False, False]


def test_empty_and_all_oom():
    rows = pd.DataFrame([job("t1", "a", None, None, None, status="oom")])
    table = pareto(rows)
    assert table.empty and list(table.columns) == COLUMNS


def test_write_pareto(tmp_path, results):
    results.to_csv(tmp_path / "results.csv", index=False)
    write_pareto(tmp_path / "results.csv", tmp_path / "analysis" / "pareto.csv")
    written = pd.read_csv(tmp_path / "analysis" / "pareto.csv")
    assert list(written.columns) == COLUMNS
    assert flags(written, "t1")["d"] == (False, False, False)
    assert flags(written, "mean")["a"] == (True, False, True)


def test_lower_is_better_score_is_minimised_and_left_out_of_the_mean():
    rows = [job("ppl", "no_press", 10.0, 100, 1.0), job("ppl", "a", 12.0, 50, 1.0), job("ppl", "b", 9.0, 60, 1.0),
            job("acc", "no_press", 0.9, 100, 1.0), job("acc", "a", 0.5, 50, 1.0), job("acc", "b", 0.6, 60, 1.0)]
    results = pd.DataFrame(rows)
    results["higher_is_better"] = results["task"] != "ppl"
    table = pareto(results)
    # perplexity: b (9.0) beats no_press (10.0) with less memory, so no_press is dominated; a has the least memory
    assert {p: f[0] for p, f in flags(table, "ppl").items()} == {"no_press": False, "a": True, "b": True}
    mean = table[table.task == "mean"].set_index("press")
    assert mean.loc["b", "score"] == pytest.approx(0.6)  # the mean holds the accuracy task only
    assert not table.loc[table.task == "ppl", "higher_is_better"].any()


def test_failed_jobs_are_left_out_like_oom(results):
    failed = pd.DataFrame([job("t1", "f", None, None, None, status="failed")])
    assert "f" not in set(pareto(pd.concat([results, failed], ignore_index=True)).press)


def test_decoding_press_sits_at_the_cache_it_held():
    """kvstudy.cache_held columns (as aggregate writes them): the front is computed on kv_bytes_held, and the
    measured ratio travels with the row."""
    rows = [job("t", "no_press", 0.9, 100, 1.0), job("t", "decoding-cr0.50", 0.9, 100, 1.0),
            job("t", "snapkv-cr0.50", 0.8, 50, 1.0)]
    table = pd.DataFrame(rows).assign(
        phase=["prefill", "decoding", "prefill"], kv_bytes_held=[100, 30, 50], effective_ratio=[0.0, 0.7, 0.5])
    out = pareto(table).set_index(["task", "press"])
    dec = out.loc[("t", "decoding-cr0.50")]
    assert dec.kv_bytes == 30 and dec.effective_ratio == pytest.approx(0.7) and dec.phase == "decoding"
    assert bool(dec.front_memory) and not bool(out.loc[("t", "no_press"), "front_memory"])
    assert not bool(out.loc[("t", "snapkv-cr0.50"), "front_memory"])  # decoding holds less and scores more
