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
from kvstudy.plots.style import method_color, method_label, paper_style, task_label
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


@pytest.mark.parametrize("name", ["pareto_latency", "delta_heatmap", "context_scaling", "throughput_vs_ratio"])
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


def _job_delta(results, press, task, length):
    """Mean over seeds of variant - no_press job scores (results.csv) in one cell."""
    r = results[(results.task == task) & (results.length == length)].set_index(["press", "seed"])["score"]
    return float((r.loc[press] - r.loc["no_press"]).mean())


def test_delta_heatmap_flips_sign_for_lower_is_better(tables):
    flipped = tables["results"].assign(higher_is_better=False)
    fig = _build("delta_heatmap", {**tables, "results": flipped})
    try:
        sig = tables["significance"]
        cell = sig[(sig.press == "knorm-cr0.90") & (sig.task == "niah") & (sig.length == 1024)]
        delta = -_job_delta(tables["results"], "knorm-cr0.90", "niah", 1024)
        assert f"{delta:+.2f}" + ("*" if cell["significant"].all() else "") in _texts(fig)
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


def test_throughput_vs_ratio_lines_from_the_baseline_and_oom_in_a_note(tables):
    fig = _build("throughput_vs_ratio", tables)
    try:
        panels = {ax.get_title().split("\n")[0]: ax for ax in fig.axes}
        assert sorted(panels) == ["1K tokens", "2K tokens"]
        for title, ax in panels.items():
            knorm = next(ln for ln in ax.get_lines() if ln.get_gid() == "tps:knorm")
            ratios = [0.0, 0.5, 0.9] if title == "1K tokens" else [0.0, 0.5]  # no value where it ran out of memory
            assert list(knorm.get_xdata()) == ratios
            assert list(knorm.get_ydata()) == pytest.approx([900 * (1 + r) for r in ratios])  # results' means
            assert to_hex(knorm.get_color()) == method_color("knorm")
        assert panels["2K tokens"].get_title() == "2K tokens\nOOM: Knorm 0.90"
        assert panels["1K tokens"].get_title() == "1K tokens"
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


def test_sweep_heatmap_per_model_draws_that_model_alone():
    """The log's per-model sweeps: model "m2" scores 1 everywhere; its own heatmap shows 1.00, m's never does."""
    results = _sweep_results()
    other = results.assign(model="m2", score=results["score"].where(results["status"] != "ok", 1.0))
    both = pd.concat([results, other], ignore_index=True)
    for models, has_one in ((["m2"], True), (["m"], False)):
        fig = _build("sweep_heatmap", {"results": both}, x="window_size", y="compression_ratio", models=models)
        try:
            assert ("1.00" in [t.get_text() for t in fig.axes[0].texts]) == has_one
        finally:
            plt.close(fig)
    with pytest.raises(ValueError, match="after the methods/tasks/models options"):
        _build("sweep_heatmap", {"results": both}, models=["nope"])


def test_sweep_heatmap_draws_citation_precision_and_recall_as_their_own_panels():
    """A cite task with precision 0.25 and recall 0.75 in every cell: two more columns of panels for it only."""
    results = _sweep_results()
    cite = results[results.task == "kv"].assign(task="cite", citation_precision=0.25, citation_recall=0.75)
    both = pd.concat([results, cite], ignore_index=True)
    fig = _build("sweep_heatmap", {"results": both}, x="window_size", y="compression_ratio",
                 metrics=["score", "citation_precision", "citation_recall"])
    try:
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert len(titles) == 5 and "SnapKV · Cite · citation precision" in titles  # 3 scores + 2 cite sub-scores
        by_title = {ax.get_title(): {t.get_text() for t in ax.texts} - {"OOM"} for ax in fig.axes}
        assert by_title["SnapKV · Cite · citation precision"] == {"0.25"}
        assert by_title["SnapKV · Cite · citation recall"] == {"0.75"}
        assert "0.25" not in by_title["SnapKV · Cite"]  # the score column still shows the score
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="no task has citation_recall"):
        _build("sweep_heatmap", {"results": both[both.task != "cite"]}, metrics=["citation_recall"])
    with pytest.raises(ValueError, match="option metrics: 'f1'"):
        _build("sweep_heatmap", {"results": both}, metrics=["f1"])


def test_sweep_heatmap_draws_an_extra_metric_for_the_tasks_that_have_it():
    """A QA task with token F1 0.4 in every cell (results.csv column token_f1): a column of panels for it only."""
    results = _sweep_results()
    qa = results[results.task == "kv"].assign(task="qa", token_f1=0.4)
    both = pd.concat([results, qa], ignore_index=True)
    fig = _build("sweep_heatmap", {"results": both}, x="window_size", y="compression_ratio",
                 metrics=["score", "token_f1"])
    try:
        by_title = {ax.get_title(): {t.get_text() for t in ax.texts} - {"OOM"} for ax in fig.axes if ax.get_title()}
        assert len(by_title) == 4 and by_title["SnapKV · Qa · token f1"] == {"0.40"}
    finally:
        plt.close(fig)


def test_model_groups_tasks_option_averages_over_those_tasks_only():
    results = _results(_samples(models=("a", "b")), models=("a", "b"))
    groups = {"a": "base", "b": "reasoning"}
    lines = []
    for tasks in (None, ["niah"]):
        fig = _build("model_groups", {"results": results}, groups=groups, tasks=tasks)
        try:
            lines.append({ln.get_gid(): list(ln.get_ydata()) for ax in fig.axes for ln in ax.get_lines()
                          if (ln.get_gid() or "").startswith("group:")})
        finally:
            plt.close(fig)
    assert lines[0].keys() == lines[1].keys() and lines[0] != lines[1]  # niah alone is not the mean with kv


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


def test_pareto_has_no_mean_panel_over_one_higher_is_better_task():
    """NIAH and perplexity: the mean over higher-is-better tasks is NIAH again, so no "Mean over tasks" column;
    with a second accuracy task it is there."""
    def rows(task, hib, scores):
        return [{"model": "m", "task": task, "length": 1024, "press": p, "method": m, "compression_ratio": r,
                 "seed": 0, "status": "ok", "score": sc, "kv_bytes": b, "ttft_seconds": 0.01, "higher_is_better": hib}
                for (p, m, r, b), sc in zip((("no_press", "no_press", 0.0, 1000), ("knorm-cr0.50", "knorm", 0.5, 500)),
                                            scores)]
    for extra, mean_panel in (([], False), (rows("kv", True, (0.9, 0.5)), True)):
        results = pd.DataFrame(rows("niah", True, (1.0, 0.6)) + rows("ppl", False, (10.0, 12.0)) + extra)
        fig = _build("pareto_memory", {"pareto": pareto(results), "results": results})
        try:
            assert any("Mean over tasks" in ax.get_title() for ax in fig.axes) == mean_panel
        finally:
            plt.close(fig)


def test_score_vs_ratio_draws_perplexity_on_a_log_axis():
    """Perplexity (lower is better, 10 to 1e13 when a press breaks the model) on a log axis of real values, in its
    natural direction, with an accuracy task beside it keeping its 0-1 axis."""
    rows = [{"model": "m", "task": "wikitext", "length": 1024, "press": p, "method": m, "compression_ratio": r,
             "seed": 0, "status": "ok", "score": s, "metric": "perplexity", "higher_is_better": False}
            for p, m, r, s in (("no_press", "no_press", 0.0, 10.0), ("knorm-cr0.50", "knorm", 0.5, 12.0),
                               ("knorm-cr0.90", "knorm", 0.9, 6e13))]
    rows += [{**r, "task": "niah", "metric": "string_match_all", "higher_is_better": True, "score": s}
             for r, s in zip(rows, (1.0, 0.8, 0.1))]
    fig = _build("score_vs_ratio", {"results": pd.DataFrame(rows)})
    try:
        ppl = next(ax for ax in fig.axes if ax.get_title().startswith("Wikitext"))
        line = next(ln for ln in ppl.get_lines() if ln.get_gid() == "score:knorm")
        assert list(line.get_ydata()) == [10.0, 12.0, 6e13]  # real perplexities, not rescaled
        assert ppl.get_yscale() == "log"
        low, high = ppl.get_ylim()
        assert low < 10 and high > 6e13  # not inverted, every point inside
        assert all(low <= t <= high for t in ppl.get_yticks())  # no tick outside the data's range
        acc = next(ax for ax in fig.axes if ax.get_title().startswith("NIAH"))
        assert acc.get_yscale() == "linear" and acc.get_ylim() == (0.0, 1.02)
    finally:
        plt.close(fig)


# --- holes, no OOM, failed cells: every figure builds and draws what is missing honestly -----------------------

FAILED_EVERYWHERE = "tova-cr0.50"  # every job of this variant raised (status "failed")
FAILED_CELL = ("snapkv-cr0.50", "niah", 2048)  # and these jobs (both seeds)
GROUPS = {"m": "base", "r": "reasoning"}


def _with_depth(samples):
    i = samples["sample_id"].astype(int)
    return samples.assign(depth=(i + 0.5) / (i.max() + 1))


def _case(kind):
    """samples, results, pareto, significance for one scenario: "holes" (a press missing on a task, a length missing
    on a task, a second model with fewer presses), "no_oom" (no job ran out of memory: every CPU run) or "failed"
    (some jobs failed)."""
    samples = _with_depth(_samples(models=("m", "r")))
    results = _results(samples, models=("m", "r"))
    if kind == "holes":
        drop = lambda d: (((d.press == "snapkv-cr0.90") & (d.task == "kv"))  # noqa: E731
                          | ((d.task == "niah") & (d.length == 2048)) | ((d.model == "r") & d.press.str.startswith("knorm")))
        samples, results = samples[~drop(samples)], results[~drop(results)]
    if kind == "no_oom":
        results = results[results.status != "oom"]
    if kind == "failed":
        failed = [{"model": m, "task": t, "length": n, "press": FAILED_EVERYWHERE, "method": "tova",
                   "compression_ratio": 0.5, "seed": s, "status": "failed", "params": "{}",
                   "error": "RuntimeError: boom"}
                  for m in ("m", "r") for t in ("niah", "kv") for n in (1024, 2048) for s in (0, 1)]
        press, task, length = FAILED_CELL
        cell = lambda d: (d.press == press) & (d.task == task) & (d.length == length)  # noqa: E731
        results = results.copy()
        results.loc[cell(results), ["status", "score", "kv_bytes", "ttft_seconds", "decode_tokens_per_second",
                                    "peak_memory_bytes"]] = ["failed", np.nan, np.nan, np.nan, np.nan, np.nan]
        samples = samples[~cell(samples)]
        results = pd.concat([results, pd.DataFrame(failed)], ignore_index=True)
    results = results.reset_index(drop=True)
    return {"samples": samples.reset_index(drop=True), "results": results, "pareto": pareto(results),
            "significance": significance(samples)}


def _timing_of(results):
    """A timing.csv of the results' variants: ok where any job of it ran ok, else its lost status; warm and cold
    runtimes made up from the TTFT (the figure draws what it is given)."""
    keys = ["model", "length", "press", "method", "compression_ratio"]
    per = results.groupby(keys).agg(status=("status", lambda s: "ok" if (s == "ok").any() else s.iloc[0]),
                                    t=("ttft_seconds", "mean")).reset_index()
    ok = per["status"] == "ok"
    return per.assign(run_seconds=per.t.where(ok), run_seconds_low=per.t * 0.9, run_seconds_high=per.t * 1.1,
                      cold_status=per.status, cold_run_seconds=(per.t * 5).where(ok),
                      cold_run_seconds_low=per.t * 4, cold_run_seconds_high=per.t * 6).drop(columns="t")


def _sweep_case(kind):
    results = _sweep_results()
    if kind == "holes":
        results = results[~((results.task == "kv") & results.press.str.contains("-ws16-"))]
    if kind == "no_oom":
        results = results[results.status != "oom"]
    if kind == "failed":
        results = results.copy()
        results.loc[results.press.str.startswith("snapkv-cr0.9-ws32-"), ["status", "score"]] = ["failed", None]
    return {"results": results.reset_index(drop=True)}


FIGURE_OPTIONS = {"model_groups": {"groups": GROUPS}, "score_vs_ratio": {"average": True}}


def _everything_drawn(fig) -> str:
    """Every text, tick label, axis label, legend entry and line gid of a figure, as one string."""
    parts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        parts += [t.get_text() for t in ax.texts] + [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
        parts += [t.get_text() for t in ax.get_yticklabels() + ax.get_xticklabels()]
        parts += [ln.get_gid() or "" for ln in ax.get_lines()] + [p.get_gid() or "" for p in ax.patches]
    parts += [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    return "\n".join(parts)


@pytest.mark.parametrize("kind", ["holes", "no_oom", "failed"])
@pytest.mark.parametrize("name", sorted(set(FIGURES) - {"tuning_sweep"}))
def test_every_figure_builds_with_holes_without_oom_and_with_failed_cells(name, kind, tmp_path):
    tables = _sweep_case(kind) if name == "sweep_heatmap" else _case(kind)
    if name == "runtime_vs_ratio":  # it reads timing.csv alone
        tables["timing"] = _timing_of(tables["results"])
    options = FIGURE_OPTIONS.get(name, {})
    _check(FIGURES[name].draw(tables, tmp_path / name, options))
    fig = _build(name, tables, **options)
    try:
        drawn = _everything_drawn(fig)
        if kind == "failed":
            assert "failed" in drawn, name  # drawn as failed, like OOM cells
        if kind == "no_oom":
            assert "OOM" not in drawn and "oom" not in drawn, name
    finally:
        plt.close(fig)


def test_model_groups_without_any_oom_job():
    """Issue 14: model_groups raised KeyError "None of [Index(['method', 'family'])]" whenever no job ran out of
    memory, i.e. on every CPU run."""
    results = _results(_samples(models=("a", "b")), models=("a", "b"))
    results = results[results.status == "ok"]
    fig = _build("model_groups", {"results": results}, groups={"a": "base", "b": "reasoning"})
    try:
        gids = {ln.get_gid() for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}
        assert {"group:base:knorm", "group:reasoning:knorm"} <= gids
    finally:
        plt.close(fig)


def test_failed_variant_is_a_black_cross_apart_from_oom():
    tables = _case("failed")
    fig = _build("score_vs_ratio", tables)
    try:
        ax = next(a for a in fig.axes if a.get_title().startswith("NIAH") and "2K" in a.get_title()
                  and a.get_title().endswith("m · 2K tokens"))
        gids = [ln.get_gid() for ln in ax.get_lines() if ln.get_gid()]
        assert "failed:tova" in gids and "failed:snapkv" in gids and "oom:knorm" in gids
        crosses = {ln.get_gid(): to_hex(ln.get_markeredgecolor()) for ln in ax.get_lines()
                   if (ln.get_gid() or "").endswith("-cross:tova") or (ln.get_gid() or "").endswith("-cross:knorm")}
        assert crosses == {"failed-cross:tova": "#000000", "oom-cross:knorm": "#d00000"}
        assert ax.get_yticklabels()[0].get_text() == "OOM / failed"
        line = next(ln for ln in ax.get_lines() if ln.get_gid() == "score:snapkv")
        assert 0.5 not in list(line.get_xdata())  # no score where the jobs failed
        legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
        assert "OOM (out of memory)" in legend and "failed (job error, see results.csv)" in legend
    finally:
        plt.close(fig)
    fig = _build("delta_heatmap", tables)
    try:
        gids = [p.get_gid() for ax in fig.axes for p in ax.patches]
        # tova: models x tasks x lengths; snapkv 0.50 at niah 2K: one per model; knorm 0.90 at 2K: models x tasks
        assert gids.count("failed-cell") == 2 * 2 * 2 + 2 and gids.count("oom-cell") == 2 * 2
    finally:
        plt.close(fig)


def _decoding_results():
    """One cell: no_press, a prefill press, and a decoding press asked for 0.5 that evicted 30 % by the end
    (results.csv columns of kvstudy.cache_held)."""
    rows = [("no_press", "no_press", 0.0, "prefill", 0.0, 1.0, 1000), ("knorm-cr0.75", "knorm", 0.75, "prefill", 0.75,
                                                                       0.6, 250),
            ("decoding-cr0.50-pknorm", "decoding", 0.5, "decoding", 0.3, 0.9, 700)]
    return pd.DataFrame([{"model": "m", "task": "niah", "length": 1024, "press": p, "method": m, "compression_ratio": r,
                          "seed": 0, "status": "ok", "score": s, "kv_bytes": 1000 if ph == "decoding" else b,
                          "kv_bytes_held": b, "phase": ph, "effective_ratio": e, "ttft_seconds": 0.01}
                         for p, m, r, ph, e, s, b in rows])


def test_decoding_press_is_drawn_at_the_ratio_and_memory_it_really_held():
    results = _decoding_results()
    fig = _build("score_vs_ratio", {"results": results})
    try:
        line = next(ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "score:decoding-pknorm")
        assert list(np.round(line.get_xdata(), 6)) == [0.0, 0.3]  # measured, not the nominal 0.5
    finally:
        plt.close(fig)
    fig = _build("pareto_memory", {"pareto": pareto(results), "results": results})
    try:
        ax = fig.axes[0]
        xs = sorted(round(float(x)) for c in ax.collections for x, _ in c.get_offsets())  # unit: B
        assert xs == [250, 700, 1000]  # bytes held; the decoding press is not at its full prefill cache
        labels = [t.get_text() for t in ax.texts if t.get_gid() == "ratio-label"]
        assert "0.30" in labels and "0.50" not in labels
    finally:
        plt.close(fig)


def test_delta_heatmap_shows_the_corpus_perplexity_difference():
    """Perplexity: the cell is the difference of corpus perplexities exp(mean NLL) (results.csv), as every table
    shows it, not a difference of means of per-sample perplexities (which differ by far more than 10x here)."""
    nll = {"no_press": [1.0, 1.1, 0.9, 1.2], "knorm-cr0.50": [1.2, 1.3, 1.0, 8.0]}
    tokens = [500, 500, 500, 10]
    samples, results = [], []
    for press, values in nll.items():
        for i, (x, n) in enumerate(zip(values, tokens)):
            samples.append({"model": "m", "task": "ppl", "length": 1024, "press": press, "method": press.split("-")[0],
                            "compression_ratio": 0.0 if press == "no_press" else 0.5, "seed": 0, "sample_id": str(i),
                            "score": float(np.exp(x)), "nll": x, "nll_sum": x * n, "scored_tokens": n,
                            "higher_is_better": False})
        corpus = float(np.exp(np.dot(values, tokens) / sum(tokens)))
        results.append({**samples[-1], "status": "ok", "score": corpus, "metric": "perplexity"})
    samples, results = pd.DataFrame(samples), pd.DataFrame(results)
    per_sample = samples.groupby("press")["score"].mean()
    corpus_ratio = results.score.iloc[1] / results.score.iloc[0]  # perplexity: a ratio on its own log scale
    assert per_sample["knorm-cr0.50"] / per_sample["no_press"] > 10 * corpus_ratio
    fig = _build("delta_heatmap", {"results": results, "significance": significance(samples)})
    try:
        cells = [t.get_text().rstrip("*") for t in fig.axes[0].texts]
        assert cells == [f"×{corpus_ratio:.2f}"]
    finally:
        plt.close(fig)


def test_score_vs_ratio_gives_each_model_its_own_perplexity_range():
    """Two models whose perplexities differ by decades: each panel's log axis spans its own values, so the random
    model's 591-611 are not flattened by the other's 1e7-1e13 (one range per task did that)."""
    rows = []
    for model, scores in (("tiny", (1e7, 3e9, 1e13)), ("random", (591.0, 598.0, 611.0))):
        rows += [{"model": model, "task": "wikitext", "length": 1024, "press": p, "method": m, "compression_ratio": r,
                  "seed": 0, "status": "ok", "score": s, "metric": "perplexity", "higher_is_better": False}
                 for (p, m, r), s in zip((("no_press", "no_press", 0.0), ("knorm-cr0.50", "knorm", 0.5),
                                          ("knorm-cr0.90", "knorm", 0.9)), scores)]
    fig = _build("score_vs_ratio", {"results": pd.DataFrame(rows)})
    try:
        panels = {ax.get_title(): ax for ax in fig.axes}
        small = next(ax for t, ax in panels.items() if "random" in t.lower())
        large = next(ax for t, ax in panels.items() if "tiny" in t.lower())
        low, high = small.get_ylim()
        assert low <= 591 and high >= 611 and high / low < 1.5  # its own decade, not 10^2..10^13
        low, high = large.get_ylim()
        assert low <= 1e7 and high >= 1e13
        assert 2 <= len(small.get_yticks()) <= 5  # a few readable ticks inside the narrow range
    finally:
        plt.close(fig)


# --- Pareto options: every model in one panel, the 1x2 / 2x2 layouts, filters (kvstudy.plots._pareto_views) --------

@pytest.fixture(scope="module")
def two_models():
    results = _results(_samples(models=("a", "b"), n=10), models=("a", "b"))
    return {"results": results, "pareto": pareto(results)}


def _series(fig) -> dict:
    return {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines()
            if (ln.get_gid() or "").startswith("series:")}


def _shown_axes(fig):
    return [ax for ax in fig.axes if ax.axison]


def test_pareto_together_draws_every_model_of_a_task_in_one_panel(two_models):
    fig = _build("pareto_memory", two_models, together=True, tasks=["niah"])
    try:
        (ax,) = _shown_axes(fig)
        assert ax.get_title() == f"{task_label('niah')} · 2K"
        series = _series(fig)
        assert {"series:a:snapkv", "series:b:snapkv", "series:a:knorm", "series:a:no_press"} <= set(series)
        assert series["series:a:snapkv"].get_color() != series["series:b:snapkv"].get_color()  # colour: model
        assert series["series:a:snapkv"].get_marker() == series["series:b:snapkv"].get_marker()  # marker: method
        p = two_models["pareto"]
        want = p[(p.model == "b") & (p.task == "niah") & (p.length == 2048) & (p.method == "snapkv")]
        assert list(series["series:b:snapkv"].get_ydata()) == list(want.sort_values("kv_bytes")["score"])
        notes = [" ".join(t.get_text().split()) for t in [*ax.texts, ax.xaxis.label] if t.get_gid() == "oom-note"]
        knorm = method_label("knorm")
        assert notes == [f"OOM: a: {knorm} 0.90; b: {knorm} 0.90"]  # OOM at 2K: noted, not drawn
    finally:
        plt.close(fig)
    fig = _build("pareto_latency", two_models, together=True, colour_by="method")
    try:
        titles = sorted(ax.get_title() for ax in _shown_axes(fig))
        assert titles == sorted(f"{task_label(t)} · 2K" for t in ("niah", "kv"))  # a panel per task
        series = _series(fig)
        assert series["series:a:snapkv"].get_color() == series["series:b:snapkv"].get_color()
        assert series["series:a:snapkv"].get_marker() != series["series:b:snapkv"].get_marker()
    finally:
        plt.close(fig)


@pytest.mark.parametrize("layout, panels", [
    ("1x2", [("KV cache memory", "Score"), ("Time to first token", "Score")]),
    ("2x2", [("KV cache memory", "Score"), ("Time to first token", "Score"),
             ("KV cache memory", "Time to first token")]),
])
def test_pareto_layouts_have_the_panels_they_claim(two_models, layout, panels):
    fig = _build("pareto_memory", two_models, layout=layout)
    try:
        shown = _shown_axes(fig)
        got = [(ax.get_xlabel().split(" (")[0], ax.get_ylabel().split(" (")[0] or "Score") for ax in shown]
        assert got == panels
        assert len(fig.axes) == (2 if layout == "1x2" else 4)  # 2x2: the fourth cell is left to the legend
        assert {ax.get_title() for ax in shown} == {"Mean over tasks · 2K"}
        per_panel = [sorted(ln.get_gid() for ln in ax.get_lines()) for ax in shown]
        assert all(g == per_panel[0] for g in per_panel) and len(per_panel[0]) == 6  # 2 models x 3 press families
    finally:
        plt.close(fig)
    fig = _build("pareto_latency", two_models, layout=layout, tasks=["kv"])
    try:
        assert {ax.get_title() for ax in _shown_axes(fig)} == {f"{task_label('kv')} · 2K"}
    finally:
        plt.close(fig)


def test_pareto_filters_keep_the_chosen_models_and_methods_and_no_press(two_models):
    fig = _build("pareto_memory", two_models, layout="1x2", models=["a"], methods=["snapkv"])
    try:
        assert {g.split(":", 2)[1:] and tuple(g.split(":")[1:]) for g in _series(fig)} == {
            ("a", "snapkv"), ("a", "no_press")}
    finally:
        plt.close(fig)
    fig = _build("pareto_memory", two_models, methods=["snapkv"])  # the default grid, filtered
    try:
        legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
        assert method_label("snapkv") in legend and method_label("knorm") not in legend
        assert not any(method_label("knorm") in t for t in _texts(fig))  # nor its OOM note
    finally:
        plt.close(fig)


def test_pareto_view_options_are_checked(two_models):
    from kvstudy.plots.catalog import _pareto_view

    with pytest.raises(ValueError, match="option layout: '3x3'"):
        _build("pareto_memory", two_models, layout="3x3")
    with pytest.raises(ValueError, match="layout draws one task"):
        _build("pareto_memory", two_models, layout="1x2", tasks=["niah", "kv"])
    jobs = [_job(model="a", method="snapkv", task="niah")]
    assert _pareto_view(jobs, {"layout": "2x2", "models": ["a"]}) is None
    assert "not in this study" in _pareto_view(jobs, {"models": ["z"]})
    assert "colour_by" in _pareto_view(jobs, {"colour_by": "task"})


def test_sweep_metrics_option_needs_a_judged_cite_task():
    from kvstudy.plots.catalog import _sweep

    job = {"model": "m", "method": "snapkv", "task": "t", "compression_ratio": 0.5,
           "params": {"window_size": 64, "cache_size": 1024}}
    jobs = [job, {**job, "compression_ratio": 0.75, "params": {"window_size": 32, "cache_size": 2048}}]
    assert "option metrics: 'citation_recall'" in _sweep([_job(**j, task_kind="niah") for j in jobs],
                                                          {"metrics": ["citation_recall"]})
    assert _sweep([_job(**j, task_kind="helmet_cite") for j in jobs],
                  {"metrics": ["score", "citation_recall"]}) is None
    qa = [_job(**j, task_kind="hf_qa", task_params={"source": "x.jsonl"}) for j in jobs]  # QA: EM, F1, ROUGE-L
    assert _sweep(qa, {"metrics": ["score", "token_f1", "rouge_l_f1"]}) is None
    assert "option metrics: 'token_f1'" in _sweep([_job(**j, task_kind="niah") for j in jobs], {"metrics": ["token_f1"]})


def _job(**fields):
    """A study's eval job (kvstudy.job.Job) with `fields`, the rest any valid values."""
    from kvstudy.job import Job

    return Job.from_dict({"model_path": "m", "length": 1024, "seed": 0, "press": "p", **fields})


def test_score_vs_ratio_log_ticks_of_large_values_are_each_their_own():
    """A perplexity axis under four decades takes 1-2-5 ticks; 2e7 and 5e7 read as such, not both as 10^7."""
    rows = [{"model": "m", "task": "wikitext", "length": 256, "press": p, "method": m, "compression_ratio": r,
             "seed": 0, "status": "ok", "score": s, "metric": "perplexity", "higher_is_better": False}
            for p, m, r, s in (("no_press", "no_press", 0.0, 1.1e7), ("knorm-cr0.50", "knorm", 0.5, 3e7),
                               ("knorm-cr0.90", "knorm", 0.9, 4.5e8))]
    fig = _build("score_vs_ratio", {"results": pd.DataFrame(rows)})
    try:
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
    finally:
        plt.close(fig)
