"""The figures' tables and text: `load_table` applies the data contract's types once (kvstudy.plots.tables), and no
two ratio labels of a Pareto figure print over each other, however crowded the panel."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kvstudy.pareto import pareto
from kvstudy.plots import FIGURES
from kvstudy.plots.style import paper_style
from kvstudy.plots.tables import load_table, lower_is_better


def test_load_table_applies_the_contract_types(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("model,task,press,length,score,higher_is_better,front_memory,sample_id\n"
                    "007,ppl,no_press,1024,12.5,False,True,001\n"
                    "007,niah,knorm-cr0.50,2048,,,False,002\n")
    df = load_table(path)
    assert list(df["model"]) == ["007", "007"] and list(df["sample_id"]) == ["001", "002"]  # ids stay text
    assert df["length"].dtype.kind == "i" and df["score"].dtype.kind == "f" and np.isnan(df["score"][1])
    assert df["higher_is_better"].tolist() == [False, True]  # empty: true, the contract's default
    assert df["front_memory"].dtype == bool and df["front_memory"].tolist() == [True, False]
    assert lower_is_better(df).tolist() == [True, False]
    (tmp_path / "empty.csv").write_text("")
    assert load_table(tmp_path / "empty.csv").empty


def _crowded_results() -> pd.DataFrame:
    """Twelve variants at two ratios and nearly the same memory and score: every label wants the same place."""
    rows = [{"model": "m", "task": "niah", "length": 1024, "press": "no_press", "method": "no_press",
             "compression_ratio": 0.0, "seed": 0, "status": "ok", "score": 1.0, "kv_bytes": 1000, "ttft_seconds": 0.1}]
    methods = ("knorm", "snapkv", "tova", "streaming_llm", "random", "cab")
    for i, method in enumerate(methods):
        for ratio in (0.5, 0.9):
            rows.append({**rows[0], "press": f"{method}-cr{ratio:.2f}", "method": method, "compression_ratio": ratio,
                         "score": 0.9 - 0.01 * i, "kv_bytes": int(1000 * (1 - ratio)) + i})
    return pd.DataFrame(rows)


def test_pareto_ratio_labels_never_overlap():
    results = _crowded_results()
    with paper_style():
        fig = FIGURES["pareto_memory"].build({"pareto": pareto(results), "results": results})
    try:
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            shown = [t.get_window_extent(renderer) for t in ax.texts
                     if t.get_gid() == "ratio-label" and t.get_visible()]
            assert shown  # the labels that fit are there
            assert not any(a.overlaps(b) for i, a in enumerate(shown) for b in shown[i + 1:])
            texts = [t.get_text() for t in ax.texts if t.get_gid() == "ratio-label"]
            assert "0.00" not in texts  # no press (the full cache) gets no ratio label
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
