"""Peak memory against the score (issue 21.2, log 003's memory-vs-perplexity): pareto.csv's peak_memory_bytes and
front_peak_memory, and pareto_memory's `memory: peak`, with peaks measured (CUDA) and with none (CPU)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from kvstudy.pareto import pareto
from kvstudy.plots.style import byte_unit
from test_paper_figures import _build, _results, _samples


def _rows(peaks):
    return pd.DataFrame([{"model": "m", "task": "ppl", "length": 1024, "press": p, "method": p.split("-")[0],
                          "compression_ratio": 0.0 if p == "no_press" else 0.5, "seed": 0, "status": "ok",
                          "score": s, "kv_bytes": kv, "ttft_seconds": 1.0, "peak_memory_bytes": peak,
                          "higher_is_better": False}
                         for (p, s, kv), peak in zip([("no_press", 12.0, 100), ("h2o-cr0.50", 12.5, 50),
                                                      ("cab-cr0.50", 13.0, 50)], peaks)])


def test_peak_front_is_perplexity_against_the_measured_peak():
    # h2o: worse perplexity than no_press, lower peak -> on; cab: worse than h2o and a higher peak -> off
    front = pareto(_rows([300.0, 200.0, 250.0])).query("task == 'ppl'").set_index("press")
    assert front["front_peak_memory"].to_dict() == {"no_press": True, "h2o-cr0.50": True, "cab-cr0.50": False}
    assert front.loc["cab-cr0.50", "peak_memory_bytes"] == 250.0
    # the KV front is its own: cab holds as little KV as h2o, but scores worse
    assert front["front_memory"].to_dict() == {"no_press": True, "h2o-cr0.50": True, "cab-cr0.50": False}


def test_without_any_peak_nothing_is_on_the_peak_front():
    front = pareto(_rows([np.nan] * 3))
    assert front["peak_memory_bytes"].isna().all() and not front["front_peak_memory"].any()
    assert front["front_memory"].any()


def test_pareto_memory_peak_draws_the_peak_where_measured():
    results = _results(_samples())
    tables = {"results": results, "pareto": pareto(results)}
    fig = _build("pareto_memory", tables, memory="peak")
    try:
        label = fig._supxlabel.get_text()
        assert label.startswith("Peak memory above the weights") and "KV cache memory" not in label
        xs = {round(float(x), 6) for ax in fig.axes for c in ax.collections for x in c.get_offsets()[:, 0]}
    finally:
        plt.close(fig)
    peaks = tables["pareto"]["peak_memory_bytes"]
    unit = byte_unit(float(peaks.max()))[1]
    assert xs == {round(float(v) / unit, 6) for v in peaks}  # every point sits at its peak, none at its KV bytes
    kv = _build("pareto_memory", tables)
    try:
        assert kv._supxlabel.get_text().startswith("KV cache memory")
    finally:
        plt.close(kv)


def test_pareto_memory_peak_says_so_when_no_peak_was_measured():
    results = _results(_samples()).assign(peak_memory_bytes=np.nan)  # a CPU run
    fig = _build("pareto_memory", {"results": results, "pareto": pareto(results)}, memory="peak")
    try:
        label = fig._supxlabel.get_text()
        assert label.startswith("KV cache memory") and "no peak memory was measured (CPU run)" in label
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="memory 'gpu'"):
        _build("pareto_memory", {"results": results, "pareto": pareto(results)}, memory="gpu")


def test_the_timing_protocols_peak_replaces_the_eval_jobs_where_it_measured_one():
    timing = pd.DataFrame([{"model": "m", "length": 1024, "press": p, "status": "ok", "ttft_seconds": 1.0,
                            "ttft_seconds_low": 0.9, "ttft_seconds_high": 1.1, "peak_memory_bytes": peak}
                           for p, peak in (("no_press", 900.0), ("h2o-cr0.50", np.nan))])
    front = pareto(_rows([300.0, 200.0, 250.0]), timing).query("task == 'ppl'").set_index("press")
    assert front["peak_memory_bytes"].to_dict() == {"no_press": 900.0, "h2o-cr0.50": 200.0, "cab-cr0.50": 250.0}
