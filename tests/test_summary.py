"""Summary tables (kvstudy.summary): score x task with significance marks, memory, throughput; CSV and booktabs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kvstudy.summary import memory_table, score_table, summary_tables, throughput_table, write_summary


def job(press, task, score, seed=0, length=1024, status="ok", kv=1000.0, hib=True):
    ok = status == "ok"
    method = press.split("-")[0]
    return {"model": "m", "task": task, "length": length, "press": press, "method": method,
            "compression_ratio": 0.0 if press == "no_press" else float(press.split("cr")[1]), "seed": seed,
            "status": status, "score": score if ok else None, "kv_bytes": kv * 2**20 if ok else None,
            "peak_memory_bytes": 2e9 if ok else None, "decode_tokens_per_second": 100.0 if ok else None,
            "ttft_seconds": 0.05 if ok else None, "higher_is_better": hib, "extra_column": "x",
            "kv_fraction_kept": (0.2 if press.startswith("adakv") else kv / 1000) if ok else None}


@pytest.fixture
def results():
    rows = []
    for seed in (0, 1):
        rows += [job("no_press", "niah", 1.0, seed), job("snapkv-cr0.50", "niah", 0.8, seed, kv=500.0),
                 job("knorm-cr0.50", "niah", 0.4, seed, kv=500.0), job("no_press", "ppl", 10.0, seed, hib=False),
                 job("snapkv-cr0.50", "ppl", 11.0, seed, kv=500.0, hib=False),
                 job("knorm-cr0.50", "ppl", None, seed, status="oom", hib=False)]
    return pd.DataFrame(rows)


@pytest.fixture
def significance():
    rows = []
    for seed in (0, 1):
        rows += [{"model": "m", "task": "niah", "length": 1024, "press": "knorm-cr0.50", "seed": seed,
                  "better": "worse"},
                 {"model": "m", "task": "niah", "length": 1024, "press": "snapkv-cr0.50", "seed": seed,
                  "better": "worse" if seed == 0 else None}]  # not significant in seed 1: no mark
    return pd.DataFrame(rows)


def test_score_table_baseline_first_marks_and_oom(results, significance):
    t = score_table(results, significance).set_index("press")
    assert list(t.index) == ["no_press", "knorm-cr0.50", "snapkv-cr0.50"]  # baseline, then method order
    assert t.loc["no_press", "niah"] == 100.0 and t.loc["snapkv-cr0.50", "niah"] == pytest.approx(80.0)
    assert t.loc["snapkv-cr0.50", "ppl"] == 11.0  # lower-is-better score: not scaled
    assert t.loc["knorm-cr0.50", "niah_mark"] == "worse" and t.loc["snapkv-cr0.50", "niah_mark"] == ""
    assert t.loc["knorm-cr0.50", "ppl_mark"] == "oom" and pd.isna(t.loc["knorm-cr0.50", "ppl"])
    assert "mean" not in t.columns  # one higher-is-better task: no mean column
    assert "cline" not in summary_tables(results, significance)["summary_score"][1]


def test_memory_and_throughput(results):
    m = memory_table(results).set_index("press")
    assert m.loc["snapkv-cr0.50", "kv_mib@1024"] == pytest.approx(500.0)
    assert m.loc["snapkv-cr0.50", "kv_saving_pct@1024"] == pytest.approx(50.0)
    assert m.loc["knorm-cr0.50", "status@1024"] == "ok"  # ok on niah: not an OOM row
    assert m.loc["snapkv-cr0.50", "kept_pct@1024"] == pytest.approx(50.0)
    t = throughput_table(results).set_index("press")
    assert t.loc["no_press", "ttft_ms@1024"] == pytest.approx(50.0)


def test_oom_everywhere_is_oom_in_latex(results):
    results = pd.concat([results, pd.DataFrame([job("tova-cr0.90", t, None, status="oom") for t in ("niah", "ppl")])])
    tables = summary_tables(results, None)
    mem = tables["summary_memory"][0].set_index("press")
    assert mem.loc["tova-cr0.90", "status@1024"] == "oom" and pd.isna(mem.loc["tova-cr0.90", "kv_mib@1024"])
    assert "OOM" in tables["summary_memory"][1] and "OOM" in tables["summary_score"][1]


def test_latex_is_booktabs_and_escaped(results, significance, tmp_path):
    results.to_csv(tmp_path / "results.csv", index=False)
    significance.to_csv(tmp_path / "significance.csv", index=False)
    paths = write_summary(tmp_path / "results.csv", tmp_path / "significance.csv", tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted(
        f"summary_{n}.{e}" for n in ("score", "memory", "throughput", "seeds") for e in ("csv", "tex"))
    tex = (tmp_path / "out" / "summary_score.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\caption{", r"\label{tab:score}"):
        assert rule in tex
    assert r"no\_press" in tex and "no_press" not in tex.replace(r"no\_press", "")
    assert r"40.0$^{\downarrow}$" in tex and "80.0" in tex and r"80.0$^" not in tex
    assert pd.read_csv(tmp_path / "out" / "summary_score.csv").loc[0, "press"] == "no_press"


def test_masking_press_shows_kept_fraction_beside_real_bytes(results):
    masked = pd.DataFrame([job("adakv-cr0.80", t, 0.9, kv=1000.0) for t in ("niah", "ppl")])
    tables = summary_tables(pd.concat([results, masked], ignore_index=True), None)
    m = tables["summary_memory"][0].set_index("press")
    assert m.loc["adakv-cr0.80", "kept_pct@1024"] == pytest.approx(20.0)
    assert m.loc["adakv-cr0.80", "kv_saving_pct@1024"] == pytest.approx(0.0)  # no byte freed
    assert "kept \\%" in tables["summary_memory"][1]


def test_failed_cells_are_marked_failed_never_a_number(results):
    failed = pd.DataFrame([job("tova-cr0.50", t, None, status="failed") for t in ("niah", "ppl")]
                          + [job("snapkv-cr0.50", "niah", None, seed=2, status="failed")])  # snapkv has ok seeds
    tables = summary_tables(pd.concat([results, failed], ignore_index=True), None)
    score = tables["summary_score"][0].set_index("press")
    assert score.loc["tova-cr0.50", "niah_mark"] == "failed" and pd.isna(score.loc["tova-cr0.50", "niah"])
    assert score.loc["snapkv-cr0.50", "niah"] == pytest.approx(80.0)  # the failed seed counts for nothing
    mem = tables["summary_memory"][0].set_index("press")
    assert mem.loc["tova-cr0.50", "status@1024"] == "failed" and pd.isna(mem.loc["tova-cr0.50", "kv_mib@1024"])
    assert "failed" in tables["summary_score"][1] and "failed" in tables["summary_throughput"][1]


def test_summaries_build_with_holes(results):
    """A press run on one task and one length only (a study's exclude:), and a length without no_press."""
    holes = pd.DataFrame([job("tova-cr0.50", "niah", 0.7, kv=500.0), job("snapkv-cr0.50", "niah", 0.6, length=2048,
                                                                          kv=1000.0)])
    tables = summary_tables(pd.concat([results, holes], ignore_index=True), None)
    score = tables["summary_score"][0].set_index(["length", "press"])
    assert score.loc[(1024, "tova-cr0.50"), "niah"] == pytest.approx(70.0)
    assert pd.isna(score.loc[(1024, "tova-cr0.50"), "ppl"]) and score.loc[(1024, "tova-cr0.50"), "ppl_mark"] == ""
    mem = tables["summary_memory"][0].set_index("press")
    assert mem.loc["tova-cr0.50", "kv_mib@1024"] == pytest.approx(500.0) and pd.isna(mem.loc["tova-cr0.50", "kv_mib@2048"])
    assert pd.isna(mem.loc["snapkv-cr0.50", "kv_saving_pct@2048"])  # no no_press at 2048 to compare with
    assert "--" in tables["summary_memory"][1]


def test_decoding_press_memory_is_the_cache_it_held_at_the_end():
    """results.csv as aggregate writes it (kvstudy.cache_held): the decoding press is at its final cache,
    compared with no_press's final cache, and kept = 1 - the fraction it evicted; not full memory, 0% saved."""
    rows = [job("no_press", "niah", 1.0, kv=1000.0), job("decoding-cr0.50", "niah", 0.9, kv=1000.0)]
    frame = pd.DataFrame(rows).assign(phase=["prefill", "decoding"], kv_bytes_held=[1000 * 2**20, 390 * 2**20],
                                      kv_bytes_reference=[1000 * 2**20, 1010 * 2**20], effective_ratio=[0.0, 0.61],
                                      kv_fraction_kept=[1.0, 1.0])
    mem = memory_table(frame).set_index("press")
    dec = mem.loc["decoding-cr0.50"]
    assert dec["kv_mib@1024"] == pytest.approx(390.0)
    assert dec["kv_saving_pct@1024"] == pytest.approx((1 - 390 / 1010) * 100)
    assert dec["kept_pct@1024"] == pytest.approx(39.0)
    assert mem.loc["no_press", "kv_saving_pct@1024"] == pytest.approx(0.0)


def test_mean_over_tasks_is_marked_from_one_test_over_all_paired_samples(tmp_path):
    """The mean column's mark comes from significance.csv's "mean" rows (kvstudy.significance_mean), both ways; a
    variant whose every task moves a little is marked on the mean even where no single task is."""
    from kvstudy.significance_write import write_significance

    scores = {"no_press": ([1] * 14 + [0] * 6, [1] * 14 + [0] * 6),
              "knorm-cr0.50": ([1] * 10 + [0] * 10, [1] * 10 + [0] * 10),  # 4 losses per task
              "snapkv-cr0.50": ([1] * 20, [1] * 20),  # 6 gains per task
              "tova-cr0.50": ([1] * 14 + [0] * 6, [1] * 13 + [0] * 7)}  # one loss
    samples = pd.DataFrame([
        {"model": "m", "task": task, "length": 1024, "press": press, "method": press.split("-")[0],
         "compression_ratio": 0.0 if press == "no_press" else 0.5, "seed": 0, "sample_id": str(i), "score": s}
        for press, per_task in scores.items() for task, values in zip(("niah", "kv"), per_task)
        for i, s in enumerate(values)])
    results = pd.DataFrame([job(press, task, float(np.mean(values))) for press, per_task in scores.items()
                            for task, values in zip(("niah", "kv"), per_task)])
    samples.to_csv(tmp_path / "samples.csv", index=False)
    results.to_csv(tmp_path / "results.csv", index=False)
    write_significance(tmp_path / "samples.csv", tmp_path / "significance.csv")
    sig = pd.read_csv(tmp_path / "significance.csv").set_index(["task", "press"])
    assert not sig.loc[("niah", "knorm-cr0.50"), "significant"]  # 4 of 20 alone: p = 0.125
    write_summary(tmp_path / "results.csv", tmp_path / "significance.csv", tmp_path / "out")
    t = pd.read_csv(tmp_path / "out" / "summary_score.csv", keep_default_na=False).set_index("press")
    assert t.loc["knorm-cr0.50", "mean_mark"] == "worse" and t.loc["snapkv-cr0.50", "mean_mark"] == "better"
    assert t.loc["tova-cr0.50", "mean_mark"] == "" and t.loc["knorm-cr0.50", "niah_mark"] == ""
    assert float(t.loc["knorm-cr0.50", "mean"]) == pytest.approx(50.0)
    assert r"50.0$^{\downarrow}$" in (tmp_path / "out" / "summary_score.tex").read_text()

    # the kv job of knorm ran out of memory (in a rerun): its mean is lost, whatever significance.csv says
    oom = results.copy()
    oom.loc[(oom["press"] == "knorm-cr0.50") & (oom["task"] == "kv"), ["status", "score"]] = ["oom", None]
    row = score_table(oom, pd.read_csv(tmp_path / "significance.csv")).set_index("press").loc["knorm-cr0.50"]
    assert row["mean_mark"] == "oom" and pd.isna(row["mean"])


def test_seeds_table_gives_mean_std_min_max_over_seeds(results):
    results = results.copy()
    results.loc[(results["press"] == "snapkv-cr0.50") & (results["task"] == "niah"), "score"] = [0.6, 1.0]
    seeds = summary_tables(results, None)["summary_seeds"][0].set_index(["task", "press"])
    row = seeds.loc[("niah", "snapkv-cr0.50")]
    assert row["n_seeds"] == 2 and row["score_mean"] == pytest.approx(0.8)
    assert row["score_std"] == pytest.approx(np.std([0.6, 1.0], ddof=1))
    assert (row["score_min"], row["score_max"]) == (0.6, 1.0)
    assert seeds.loc[("ppl", "knorm-cr0.50"), "status"] == "oom" and seeds.loc[("ppl", "knorm-cr0.50"), "n_seeds"] == 0
    assert list(seeds.loc["niah"].index) == ["no_press", "knorm-cr0.50", "snapkv-cr0.50"]  # baseline first
    tex = summary_tables(results, None)["summary_seeds"][1]
    assert "0.800 $\\pm$ 0.283 [0.600, 1.000]" in tex and "OOM" in tex


def test_seeds_table_of_one_seed_has_no_std(results):
    one = summary_tables(results[results["seed"] == 0], None)["summary_seeds"][0]
    assert one["n_seeds"].eq(1).sum() == 5 and one["score_std"].isna().all()


def test_extra_metrics_follow_their_tasks_score_with_their_mean_and_seed_spread(results, significance):
    """token_f1 (a task's extra metric, a results.csv column) of niah only: summary_score's `niah.token_f1` is its
    mean over seeds x 100, unmarked; ppl has no such column; summary_seeds gives its spread; LaTeX shows it."""
    results = results.assign(token_f1=np.nan)
    niah = results["task"] == "niah"
    results.loc[niah, "token_f1"] = [0.5, 0.25, 0.0, 0.7, 0.75, 0.2]  # seed 0 then seed 1: no_press, snapkv, knorm
    t = score_table(results, significance).set_index("press")
    assert t.loc["no_press", "niah.token_f1"] == pytest.approx(60.0)
    assert t.loc["snapkv-cr0.50", "niah.token_f1"] == pytest.approx(50.0)
    assert "ppl.token_f1" not in t.columns and "niah.token_f1_mark" not in t.columns
    seeds = summary_tables(results, significance)["summary_seeds"][0].set_index(["task", "press"])
    row = seeds.loc[("niah", "knorm-cr0.50")]
    assert (row["token_f1_mean"], row["token_f1_min"], row["token_f1_max"]) == pytest.approx((0.1, 0.0, 0.2))
    assert row["token_f1_std"] == pytest.approx(np.std([0.0, 0.2], ddof=1))
    assert pd.isna(seeds.loc[("ppl", "snapkv-cr0.50"), "token_f1_mean"])
    tex = summary_tables(results, significance)["summary_score"][1]
    assert "niah token\\_f1" in tex and "60.0" in tex
