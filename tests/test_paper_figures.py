"""The paper's further figures (pareto_latency, delta_heatmap, context_scaling, sweep_heatmap, model_groups), built
from small synthetic tables: PDF + 300-dpi PNG, OOM drawn as OOM (never as a value), options honoured, one
colour per method, a clear error when there is nothing to draw."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from kvstudy.pareto import pareto
from kvstudy.plots import FIGURES
from kvstudy.plots.style import method_color, paper_style
from kvstudy.significance import significance

PRESSES = [("no_press", "no_press", 0.0), ("snapkv-cr0.50", "snapkv", 0.5), ("snapkv-cr0.90", "snapkv", 0.9),
           ("knorm-cr0.50", "knorm", 0.5), ("knorm-cr0.90", "knorm", 0.9)]
OOM = ("knorm-cr0.90", 2048)  # this variant ran out of memory at 2048 tokens


def _samples(models=("m",), n=30):
    rng = np.random.default_rng(0)
    rows = []
    for model in models:
        for task in ("niah", "kv"):
            for length in (1024, 2048):
                for press, method, ratio in PRESSES:
                    if (press, length) == OOM:
                        continue
                    for seed in (0, 1):
                        for i in range(n):
                            p = 0.95 - ratio * (0.3 if method == "snapkv" else 0.8)
                            rows.append({"model": model, "task": task, "length": length, "press": press,
                                         "method": method, "compression_ratio": ratio, "seed": seed,
                                         "sample_id": str(i), "score": float(rng.uniform() < p)})
    return pd.DataFrame(rows)


def _results(samples, models=("m",)):
    keys = ["model", "task", "length", "press", "method", "compression_ratio", "seed"]
    r = samples.groupby(keys).agg(score=("score", "mean")).reset_index()
    r["status"] = "ok"
    oom = [{"model": m, "task": t, "length": OOM[1], "press": OOM[0], "method": "knorm", "compression_ratio": 0.9,
            "seed": s, "status": "oom"} for m in models for t in ("niah", "kv") for s in (0, 1)]
    r = pd.concat([r, pd.DataFrame(oom)], ignore_index=True)
    kept = r["length"] * (1 - r["compression_ratio"])
    ok = r["status"] == "ok"
    r["kv_bytes"] = np.where(ok, kept * 256, np.nan)
    r["ttft_seconds"] = np.where(ok, 1e-5 * r["length"] * (0.5 + 0.5 * (1 - r["compression_ratio"])), np.nan)
    r["decode_tokens_per_second"] = np.where(ok, 900 * (1 + r["compression_ratio"]), np.nan)
    r["peak_memory_bytes"] = np.where(ok, 4e8 + kept * 256 * 1000, np.nan)
    r["params"] = "{}"
    return r


@pytest.fixture(scope="module")
def tables():
    samples = _samples()
    results = _results(samples)
    return {"samples": samples, "results": results, "pareto": pareto(results), "significance": significance(samples)}


def _check(paths):
    pdf, png = paths
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    with Image.open(png) as im:
        assert im.info["dpi"][0] == pytest.approx(300, abs=0.5) and min(im.size) > 300


def _build(name, tables, **options):
    with paper_style():
        return FIGURES[name].build(tables, **options)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for ax in fig.axes
                                                                   for t in ax.get_yticklabels()]


@pytest.mark.parametrize("name", ["pareto_latency", "delta_heatmap", "context_scaling"])
def test_writes_pdf_and_png(name, tables, tmp_path):
    _check(FIGURES[name].draw(tables, tmp_path / name))


def test_pareto_latency_plots_latency_and_its_front(tables):
    fig = _build("pareto_latency", tables)
    try:
        assert "Time to first token (ms)" in fig._supxlabel.get_text()
        legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
        assert "Latency Pareto front" in legend
        # the front line of the first panel follows the latency front flags of pareto.csv
        p = tables["pareto"]
        first = p[(p.task == "kv") & (p.length == 1024) & p.front_latency].sort_values("latency_seconds")
        line = fig.axes[0].get_lines()[0]
        np.testing.assert_allclose(line.get_xdata()[:-1], first["latency_seconds"] * 1e3)
        assert any("OOM" in t for ax in fig.axes for t in [x.get_text() for x in ax.texts])  # knorm 0.90 at 2K
    finally:
        plt.close(fig)


def test_delta_heatmap_values_stars_and_oom(tables):
    fig = _build("delta_heatmap", tables)
    try:
        sig = tables["significance"]
        cell = sig[(sig.press == "knorm-cr0.50") & (sig.task == "niah") & (sig.length == 1024)]
        expected = f"{cell['diff'].mean():+.2f}" + ("*" if cell["significant"].all() else "")
        texts = _texts(fig)
        assert expected in texts
        assert texts.count("OOM") == 2  # knorm 0.90 at 2K on both tasks
        assert any(t.endswith("*") for t in texts)  # 0.9 knorm is significantly worse
    finally:
        plt.close(fig)


def test_delta_heatmap_flips_sign_for_lower_is_better(tables):
    flipped = tables["significance"].assign(higher_is_better=False)
    fig = _build("delta_heatmap", {**tables, "significance": flipped})
    try:
        sig = tables["significance"]
        cell = sig[(sig.press == "knorm-cr0.90") & (sig.task == "niah") & (sig.length == 1024)]
        assert f"{-cell['diff'].mean():+.2f}" + ("*" if cell["significant"].all() else "") in _texts(fig)
    finally:
        plt.close(fig)


def test_context_scaling_marks_oom_and_keeps_method_colours(tables):
    fig = _build("context_scaling", tables)
    try:
        ax = fig.axes[0]
        oom = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("oom:")]
        assert [ln.get_gid() for ln in oom] == ["oom:knorm-cr0.90"] and list(oom[0].get_xdata()) == [2048]
        line = next(ln for ln in ax.get_lines() if ln.get_gid() == "scale:knorm-cr0.90")
        assert list(line.get_xdata()) == [1024]  # no value where it ran out of memory
        assert to_hex(line.get_color()) == method_color("knorm")
    finally:
        plt.close(fig)
    fig = _build("context_scaling", tables, methods=["no_press", "snapkv"], ratios=[0.5])
    try:
        gids = {ln.get_gid() for ln in fig.axes[0].get_lines()}
        assert gids == {"scale:no_press", "scale:snapkv-cr0.50"}
    finally:
        plt.close(fig)


def _sweep_results():
    rows = []
    for task in ("niah", "kv"):
        for w in (16, 32, 64):
            for cr in (0.5, 0.9):
                for k in (5, 7):
                    oom = (w, cr) == (64, 0.5)
                    rows.append({"model": "m", "task": task, "length": 1024, "press": f"snapkv-cr{cr}-ws{w}-ks{k}",
                                 "method": "snapkv", "compression_ratio": cr, "seed": 0,
                                 "status": "oom" if oom else "ok", "score": None if oom else 0.5 + w / 200 - cr / 5,
                                 "params": json.dumps({"window_size": w, "kernel_size": k})})
    rows.append({"model": "m", "task": "niah", "length": 1024, "press": "knorm-cr0.5", "method": "knorm",
                 "compression_ratio": 0.5, "seed": 0, "status": "ok", "score": 0.5, "params": "{}"})
    return pd.DataFrame(rows)


def test_sweep_heatmap_two_parameters_and_oom(tmp_path):
    results = _sweep_results()
    _check(FIGURES["sweep_heatmap"].draw({"results": results}, tmp_path / "sweep",
                                         {"x": "window_size", "y": "compression_ratio"}))
    fig = _build("sweep_heatmap", {"results": results}, x="window_size", y="compression_ratio")
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "32", "64"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0.5", "0.9"]
        texts = [t.get_text() for t in ax.texts]
        assert texts.count("OOM") == 1
        assert f"{0.5 + 16 / 200 - 0.5 / 5:.2f}" in texts  # mean over the kernel sizes (equal here)
        assert len(fig.axes) == 3  # snapkv x 2 tasks + colour bar; knorm sweeps nothing and is left out
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="sweeps two parameters"):
        _build("sweep_heatmap", {"results": results[results.method == "knorm"]})


def test_model_groups_needs_groups_and_draws_one_line_per_group():
    samples = _samples(models=("a", "b", "c"))
    results = _results(samples, models=("a", "b", "c"))
    with pytest.raises(ValueError, match="two model groups"):
        _build("model_groups", {"results": results})
    groups = {"a": "base", "b": "base", "c": "reasoning"}
    fig = _build("model_groups", {"results": results}, groups=groups)
    try:
        gids = {ln.get_gid() for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}
        assert {"group:base:snapkv", "group:reasoning:snapkv", "group:base:knorm"} <= gids
        assert "oom:reasoning:knorm" not in gids  # knorm 0.90 ran at 1024 tokens: ok somewhere, so no OOM mark
        legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
        assert "base (a, b)" in legend and "reasoning (c)" in legend
    finally:
        plt.close(fig)


def test_options_are_checked(tables, tmp_path):
    with pytest.raises(ValueError, match="has no option"):
        FIGURES["delta_heatmap"].draw(tables, tmp_path / "x", {"colour": "red"})


def test_score_vs_ratio_average_adds_a_task_mean_column(tables):
    fig = _build("score_vs_ratio", tables, average=True)
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert sum("Mean over tasks" in t for t in titles) == 2  # one per length
        mean_1k = next(ax for ax in fig.axes if ax.get_title().startswith("Mean over tasks") and "1K" in ax.get_title())
        line = next(ln for ln in mean_1k.get_lines() if ln.get_gid() == "score:snapkv")
        r = tables["results"]
        snap = r[(r.press == "snapkv-cr0.50") & (r.length == 1024)]
        assert np.isclose(line.get_ydata(), snap.score.mean()).any()  # tasks and seeds balanced: plain mean
        mean_2k = next(ax for ax in fig.axes if ax.get_title().startswith("Mean over tasks") and "2K" in ax.get_title())
        assert [ln.get_gid() for ln in mean_2k.get_lines() if (ln.get_gid() or "").startswith("oom:")] == ["oom:knorm"]
    finally:
        plt.close(fig)


def test_pareto_with_perplexity_uses_its_own_inverted_axis():
    rows = [{"model": "m", "task": "ppl", "length": 1024, "press": p, "method": m, "compression_ratio": r, "seed": 0,
             "status": "ok", "score": s, "kv_bytes": b, "ttft_seconds": 0.01, "higher_is_better": False}
            for p, m, r, s, b in (("no_press", "no_press", 0.0, 10.0, 1000), ("knorm-cr0.50", "knorm", 0.5, 12.0, 500),
                                  ("knorm-cr0.90", "knorm", 0.9, 30.0, 100))]
    results = pd.DataFrame(rows)
    fig = _build("pareto_memory", {"pareto": pareto(results), "results": results})
    try:
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        assert low > high  # inverted: lower perplexity is up
        assert high < 10.0 and low > 30.0  # every point inside the axes
        front = ax.get_lines()[0]
        assert list(front.get_ydata()[:-1]) == [30.0, 12.0, 10.0]  # all three are on the perplexity front
    finally:
        plt.close(fig)


def test_score_vs_ratio_with_perplexity_labels_real_values_upside_down():
    rows = [{"model": "m", "task": "wikitext", "length": 1024, "press": p, "method": m, "compression_ratio": r,
             "seed": 0, "status": "ok", "score": s, "metric": "perplexity", "higher_is_better": False}
            for p, m, r, s in (("no_press", "no_press", 0.0, 10.0), ("knorm-cr0.50", "knorm", 0.5, 12.0),
                               ("knorm-cr0.90", "knorm", 0.9, 30.0))]
    fig = _build("score_vs_ratio", {"results": pd.DataFrame(rows)})
    try:
        ax = fig.axes[0]
        line = next(ln for ln in ax.get_lines() if ln.get_gid() == "score:knorm")
        y = np.asarray(line.get_ydata(), float)
        assert ((y >= 0) & (y <= 1)).all() and y[0] > y[-1]  # ppl 10 (the baseline) high, ppl 30 low
        labels = [float(t.get_text()) for t in ax.get_yticklabels()]
        assert labels[0] > 30 and labels[-1] < 10  # real perplexities, decreasing upwards
    finally:
        plt.close(fig)
