"""Figures (kvstudy.plots): each writes a PDF and a 300-dpi PNG from small synthetic tables with the columns of
docs/data-contracts.md; colours are stable per method; the manifest checksums files; no data -> ValueError."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:
    import kvstudy  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from PIL import Image  # noqa: E402

from kvstudy.pareto import pareto as pareto_of  # noqa: E402
from kvstudy.plots import FIGURES, get_figure, make_figure  # noqa: E402
from kvstudy.plots._common import OOM_LABEL  # noqa: E402
from kvstudy.plots.manifest import HEADER, read_manifest, write_manifest  # noqa: E402
from kvstudy.plots.press_style import table as press_styles  # noqa: E402
from kvstudy.plots.style import method_color, method_label, method_marker, paper_style  # noqa: E402

RESULTS_COLS = (
    "model,model_path,task,length,press,method,compression_ratio,seed,status,metric,score,n,kv_tokens_kept,"
    "kv_tokens_full,kv_fraction_kept,kv_bytes,kv_bytes_full,peak_memory_bytes,peak_memory_kind,prefill_seconds,"
    "ttft_seconds,decode_tokens_per_second,total_seconds,params,device,host,git_commit,kvstudy_version"
).split(",")
SAMPLES_COLS = (
    "model,task,length,press,method,compression_ratio,seed,sample_id,score,prediction,references,input_tokens,"
    "context_tokens,depth,kv_tokens,kv_bytes,prefill_seconds,ttft_seconds"
).split(",")
PARETO_COLS = (
    "model,task,length,press,method,compression_ratio,score,kv_bytes,latency_seconds,front_memory,front_latency,"
    "front_all"
).split(",")

BYTES_PER_TOKEN = 256  # tiny model: 2 layers x 2 (K, V) x 1 head x 32 dims x fp32


# --- synthetic tables -----------------------------------------------------------------------------------------


def _press(method: str, ratio: float) -> str:
    return method if method == "no_press" else f"{method}-cr{ratio:.2f}"


def _variants(methods, ratios):
    return [("no_press", 0.0)] + [(m, r) for m in methods if m != "no_press" for r in ratios]


# how well each method keeps a needle at depth d when a fraction `ratio` of the cache is dropped
_QUALITY = {
    "no_press": lambda d, r: 0.97,
    "knorm": lambda d, r: 0.95 - 0.9 * r**1.5,
    "streaming_llm": lambda d, r: 0.97 if d < 0.05 or d > 1 - (1 - r) else 0.08,
    "snapkv": lambda d, r: 0.97 - 0.5 * r**3,
    "tova": lambda d, r: 0.96 - 0.6 * r**2.5,
    "expected_attention": lambda d, r: 0.97 - 0.35 * r**3,
    "random": lambda d, r: (1 - r) ** 1.3 * 0.97,
}


def sample_table(methods, ratios, tasks=("niah", "kv_retrieval"), lengths=(1024, 2048), seeds=(0, 1),
                 n=20, model="tiny", rng_seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    rows = []
    for task in tasks:
        for length in lengths:
            for method, ratio in _variants(methods, ratios):
                quality = _QUALITY.get(method, lambda d, r: 0.9 - 0.5 * r)
                for seed in seeds:
                    for i in range(n):
                        depth = (i + 0.5) / n if task == "niah" else float(rng.uniform())
                        p = float(np.clip(quality(depth, ratio) - (0.05 if length > 1024 else 0.0), 0, 1))
                        kept = length * (1 - ratio)
                        ok = rng.uniform() < p
                        rows.append({
                            "model": model, "task": task, "length": length, "press": _press(method, ratio),
                            "method": method, "compression_ratio": ratio, "seed": seed, "sample_id": str(i),
                            "score": float(ok), "prediction": "v001" if ok else "v999", "references": "v001",
                            "input_tokens": length + 12, "context_tokens": length, "depth": depth,
                            "kv_tokens": kept, "kv_bytes": int(kept * BYTES_PER_TOKEN),
                            "prefill_seconds": 1e-5 * length, "ttft_seconds": 1.2e-5 * length,
                        })
    return pd.DataFrame(rows, columns=SAMPLES_COLS)


def results_from_samples(samples: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "task", "length", "press", "method", "compression_ratio", "seed"]
    g = samples.groupby(keys, sort=False)
    out = g.agg(score=("score", "mean"), n=("score", "size"), kv_tokens_kept=("kv_tokens", "mean"),
                kv_bytes=("kv_bytes", "mean"), prefill_seconds=("prefill_seconds", "mean"),
                ttft_seconds=("ttft_seconds", "mean")).reset_index()
    out["model_path"] = "builtin:tiny-retrieval"
    out["status"] = "ok"
    out["metric"] = "string_match_all"
    out["kv_tokens_full"] = out["length"]
    out["kv_fraction_kept"] = out["kv_tokens_kept"] / out["length"]
    out["kv_bytes_full"] = out["length"] * BYTES_PER_TOKEN
    out["peak_memory_bytes"] = 5e8
    out["peak_memory_kind"] = "rss"
    out["decode_tokens_per_second"] = 900.0
    out["total_seconds"] = 1.3
    out["params"] = "{}"
    out["device"] = "cpu"
    out["host"] = "node1"
    out["git_commit"] = "abc"
    out["kvstudy_version"] = "0.1.0"
    return out[RESULTS_COLS]


def _front(cost: pd.Series, score: pd.Series) -> pd.Series:
    c, s = cost.to_numpy(float), score.to_numpy(float)
    dominated = [((c <= c[i]) & (s >= s[i]) & ((c < c[i]) | (s > s[i]))).any() for i in range(len(c))]
    return pd.Series(~np.array(dominated), index=cost.index)


def pareto_from_results(results: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "task", "length", "press", "method", "compression_ratio"]
    per_task = results.groupby(keys, sort=False).agg(
        score=("score", "mean"), kv_bytes=("kv_bytes", "mean"), latency_seconds=("ttft_seconds", "mean")
    ).reset_index()
    mean = per_task.groupby(["model", "length", "press", "method", "compression_ratio"], sort=False).agg(
        score=("score", "mean"), kv_bytes=("kv_bytes", "mean"), latency_seconds=("latency_seconds", "mean")
    ).reset_index()
    mean["task"] = "mean"
    out = pd.concat([per_task, mean], ignore_index=True)
    parts = []
    for _, grp in out.groupby(["model", "task", "length"], sort=False):
        grp = grp.copy()
        grp["front_memory"] = _front(grp["kv_bytes"], grp["score"])
        grp["front_latency"] = _front(grp["latency_seconds"], grp["score"])
        grp["front_all"] = grp["front_memory"] & grp["front_latency"]
        parts.append(grp)
    return pd.concat(parts, ignore_index=True)[PARETO_COLS]


def tables(methods=("no_press", "snapkv", "knorm"), ratios=(0.5,), **kw) -> dict[str, pd.DataFrame]:
    samples = sample_table(methods, ratios, **kw)
    results = results_from_samples(samples)
    return {"samples": samples, "results": results, "pareto": pareto_from_results(results)}


REALISTIC_METHODS = ("no_press", "knorm", "streaming_llm", "snapkv", "tova", "expected_attention", "random")
REALISTIC_RATIOS = (0.25, 0.5, 0.75, 0.9)


def realistic_tables() -> dict[str, pd.DataFrame]:
    """2 tasks x 2 lengths x 25 press variants x 2 seeds x 20 samples."""
    return tables(REALISTIC_METHODS, REALISTIC_RATIOS)


@pytest.fixture(scope="module")
def small():
    return tables(tasks=("niah",), lengths=(1024,), seeds=(0,), n=10)


# --- figures --------------------------------------------------------------------------------------------------


def _check_outputs(paths, stem: Path):
    assert [p.name for p in paths] == [f"{stem.name}.pdf", f"{stem.name}.png"]
    pdf, png = paths
    assert pdf.stat().st_size > 1000 and pdf.read_bytes().startswith(b"%PDF")
    with Image.open(png) as im:
        dpi = im.info["dpi"]
        assert dpi[0] == pytest.approx(300, abs=0.5) and dpi[1] == pytest.approx(300, abs=0.5)
        assert im.size[0] > 300 and im.size[1] > 300
    assert not [p for p in stem.parent.iterdir() if ".tmp" in p.name]


def test_registry():
    assert {"score_vs_ratio", "pareto_memory", "niah_heatmap"} <= set(FIGURES)
    assert FIGURES["score_vs_ratio"].needs == ("results",)
    assert FIGURES["pareto_memory"].needs == ("pareto", "results")  # results: the OOM variants
    assert FIGURES["niah_heatmap"].needs == ("samples", "results")
    with pytest.raises(KeyError, match="unknown figure"):
        get_figure("nope")


@pytest.mark.parametrize("name", ["score_vs_ratio", "pareto_memory", "niah_heatmap"])
def test_figure_writes_pdf_and_300dpi_png(name, small, tmp_path):
    stem = tmp_path / "sub" / "dir" / name
    paths = FIGURES[name].draw(small, stem)
    _check_outputs(paths, stem)


def test_make_figure_reads_csvs(small, tmp_path):
    tables_dir, analysis_dir = tmp_path / "tables", tmp_path / "analysis"
    tables_dir.mkdir()
    analysis_dir.mkdir()
    small["results"].to_csv(tables_dir / "results.csv", index=False)
    small["samples"].to_csv(tables_dir / "samples.csv", index=False)
    small["pareto"].to_csv(analysis_dir / "pareto.csv", index=False)
    for name in ("score_vs_ratio", "pareto_memory", "niah_heatmap"):
        stem = tmp_path / "figures" / name
        _check_outputs(make_figure(name, tables_dir, analysis_dir, stem), stem)
    with pytest.raises(FileNotFoundError):
        make_figure("pareto_memory", tables_dir, tmp_path / "missing", tmp_path / "x")


def test_method_style_is_stable():
    """The same colour and marker for a method in a fresh interpreter (no hash, no order of first use)."""
    methods = list(press_styles())
    assert [_fresh(m) for m in ("cab", "int4", "my_new_press")] == [
        f"{method_color(m)} {method_marker(m)!r}" for m in ("cab", "int4", "my_new_press")]
    assert len({method_color(m) for m in methods}) == len(methods)
    assert method_label("knorm") == "Knorm" and method_label("tova") == "TOVA"
    assert method_label("expected_attention") == "Expected attention"


def _fresh(method: str) -> str:
    import subprocess

    src = str(Path(__file__).resolve().parents[1] / "src")
    code = f"import sys; sys.path.insert(0, {src!r}); from kvstudy.plots.style import method_color, method_marker; " \
           f"print(method_color({method!r}), repr(method_marker({method!r})))"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()


def _legend_colors(fig) -> dict[str, str]:
    from matplotlib.colors import to_hex

    out = {}
    for legend in fig.legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            out[text.get_text()] = to_hex(handle.get_color())
    return out


def test_same_colour_for_a_method_across_figures(small):
    with paper_style():
        figs = [FIGURES[n].build(small) for n in ("score_vs_ratio", "pareto_memory")]
    try:
        seen = [_legend_colors(f) for f in figs]
    finally:
        import matplotlib.pyplot as plt

        for f in figs:
            plt.close(f)
    for m in ("no_press", "snapkv", "knorm"):
        for colors in seen:
            assert colors[method_label(m)] == method_color(m)


def test_manifest(tmp_path):
    (tmp_path / "figures").mkdir()
    a = tmp_path / "figures" / "a.pdf"
    b = tmp_path / "tables" / "t.csv"
    b.parent.mkdir()
    a.write_bytes(b"%PDF-1.4 fake")
    b.write_text("x,y\n1,2\n")
    out = tmp_path / "figures" / "all"
    write_manifest([b, a, a], out, tmp_path)
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER
    assert lines[1:] == [
        f"figure\tfigures/a.pdf\t{hashlib.sha256(a.read_bytes()).hexdigest()}\t{a.stat().st_size}",
        f"table\ttables/t.csv\t{hashlib.sha256(b.read_bytes()).hexdigest()}\t{b.stat().st_size}",
    ]
    assert [r["path"] for r in read_manifest(out)] == ["figures/a.pdf", "tables/t.csv"]
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]
    with pytest.raises(ValueError, match="not under"):
        write_manifest([a], out, tmp_path / "tables")


def test_manifest_of_real_figures(small, tmp_path):
    paths = FIGURES["score_vs_ratio"].draw(small, tmp_path / "figures" / "score_vs_ratio")
    write_manifest(paths, tmp_path / "figures" / "all", tmp_path)
    rows = read_manifest(tmp_path / "figures" / "all")
    assert {r["kind"] for r in rows} == {"figure"}
    for r in rows:
        data = (tmp_path / r["path"]).read_bytes()
        assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["bytes"] == len(data)


@pytest.mark.parametrize("name", ["score_vs_ratio", "pareto_memory", "niah_heatmap"])
def test_empty_data_raises(name, small, tmp_path):
    table = FIGURES[name].needs[0]
    empty = {**small, table: small[table].iloc[0:0]}
    with pytest.raises(ValueError, match=name):
        FIGURES[name].draw(empty, tmp_path / name)
    assert not list(tmp_path.iterdir())


def test_no_usable_rows_raise(small, tmp_path):
    oom = small["results"].assign(status="oom", score=np.nan)
    with pytest.raises(ValueError, match="score_vs_ratio.*status 'ok'"):
        FIGURES["score_vs_ratio"].draw({"results": oom}, tmp_path / "a")
    only_baseline = small["results"][small["results"]["method"] == "no_press"]
    with pytest.raises(ValueError, match="only no_press"):
        FIGURES["score_vs_ratio"].draw({"results": only_baseline}, tmp_path / "b")
    no_depth = small["samples"].assign(depth=np.nan)
    with pytest.raises(ValueError, match="niah_heatmap.*depth"):
        FIGURES["niah_heatmap"].draw({"samples": no_depth, "results": small["results"]}, tmp_path / "c")
    with pytest.raises(ValueError, match="pareto_memory.*front_memory"):
        FIGURES["pareto_memory"].draw({"pareto": small["pareto"].drop(columns="front_memory"),
                                       "results": small["results"]}, tmp_path / "d")
    with pytest.raises(ValueError, match="pareto_memory.*needs table.*results"):
        FIGURES["pareto_memory"].draw({"pareto": small["pareto"]}, tmp_path / "e")
    assert not list(tmp_path.iterdir())


def test_niah_heatmap_falls_back_to_tasks_with_depth(tmp_path):
    t = tables(tasks=("kv_retrieval",), lengths=(1024,), seeds=(0,), n=10)
    _check_outputs(FIGURES["niah_heatmap"].draw(t, tmp_path / "h"), tmp_path / "h")


def test_realistic_tables_render(tmp_path):
    """The 25-variant study of the preview; KVSTUDY_PLOTS_PREVIEW=DIR keeps the figures there to look at."""
    t = realistic_tables()
    assert t["results"]["press"].nunique() == 25
    out = Path(os.environ.get("KVSTUDY_PLOTS_PREVIEW", tmp_path))
    for name in ("score_vs_ratio", "pareto_memory", "niah_heatmap"):
        _check_outputs(FIGURES[name].draw(t, out / name), out / name)


def test_pdf_is_reproducible(small, tmp_path):
    a = FIGURES["score_vs_ratio"].draw(small, tmp_path / "a" / "f")
    b = FIGURES["score_vs_ratio"].draw(small, tmp_path / "b" / "f")
    assert a[0].read_bytes() == b[0].read_bytes()
    assert a[1].read_bytes() == b[1].read_bytes()


# --- out-of-memory jobs ---------------------------------------------------------------------------------------

_MEASURES = ["score", "n", "kv_tokens_kept", "kv_tokens_full", "kv_fraction_kept", "kv_bytes", "kv_bytes_full",
             "peak_memory_bytes", "peak_memory_kind", "prefill_seconds", "ttft_seconds", "decode_tokens_per_second",
             "total_seconds"]


def with_oom(t: dict[str, pd.DataFrame], jobs) -> dict[str, pd.DataFrame]:
    """The tables as the pipeline writes them when the jobs (press, length) ran out of memory in every task and
    seed: results rows with status "oom" and empty measures, no samples, pareto.csv from the ok jobs only."""
    results, samples = t["results"].copy(), t["samples"]
    hit = pd.Series(False, index=results.index)
    gone = pd.Series(False, index=samples.index)
    for press, length in jobs:
        hit |= (results["press"] == press) & (results["length"] == length)
        gone |= (samples["press"] == press) & (samples["length"] == length)
    assert hit.any(), jobs
    results[_MEASURES] = results[_MEASURES].astype(object)
    results.loc[hit, _MEASURES] = np.nan
    results.loc[hit, "status"] = "oom"
    return {"results": results, "samples": samples[~gone].reset_index(drop=True), "pareto": pareto_of(results)}


@pytest.fixture(scope="module")
def oom_tables():
    """snapkv at ratio 0.5 out of memory at 2K tokens (both tasks); everything else fits."""
    t = tables(("no_press", "snapkv", "knorm"), (0.25, 0.5, 0.75), seeds=(0,), n=10)
    return with_oom(t, [("snapkv-cr0.50", 2048)])


def _build(name, t):
    with paper_style():
        return FIGURES[name].build(t)


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def _texts(fig) -> list[str]:
    from matplotlib.text import Text

    fig.draw_without_rendering()  # tick labels are made at draw time
    return [t.get_text() for t in fig.findobj(Text)]


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def _panels(fig, length_text: str):
    return [ax for ax in fig.axes if length_text in ax.get_title()]


def test_oom_in_score_vs_ratio(oom_tables):
    fig = _build("score_vs_ratio", oom_tables)
    try:
        assert OOM_LABEL in _legend_labels(fig)
        assert "OOM" in _texts(fig)  # the strip's label on the y axis
        for length, oom_here in (("1K", False), ("2K", True)):
            panels = _panels(fig, length)
            assert len(panels) == 2  # niah, kv_retrieval
            for ax in panels:
                lines = [ln for ln in ax.get_lines() if ln.get_gid() == "score:snapkv"]
                xs = [np.asarray(ln.get_xdata(), float) for ln in lines]
                ys = [np.asarray(ln.get_ydata(), float) for ln in lines]
                # a scored point of snapkv at ratio 0.5 only where the job fitted in memory
                at_half = any(np.isfinite(y[np.isclose(x, 0.5)]).any() for x, y in zip(xs, ys))
                assert at_half is not oom_here
                crosses = [ln for ln in ax.get_lines() if ln.get_gid() == "oom:snapkv"]
                assert bool(crosses) is oom_here
                if oom_here:
                    # the crossed-out marker sits at ratio 0.5, below the score axis (not a score of 0)
                    (cx,), (cy,) = crosses[0].get_xdata(), crosses[0].get_ydata()
                    assert cx == pytest.approx(0.5) and cy < 0
                    # the line is broken there: no segment spans across 0.5; the other ratios are still drawn
                    assert not any(x.min() < 0.5 < x.max() for x in xs)
                    drawn = np.concatenate(xs)
                    assert np.isclose(drawn, 0.25).any() and np.isclose(drawn, 0.75).any()
                    # knorm fitted at every ratio: one unbroken line
                    knorm = [ln for ln in ax.get_lines() if ln.get_gid() == "score:knorm"]
                    assert len(knorm) == 1 and np.isclose(knorm[0].get_xdata(), 0.5).any()
    finally:
        _close(fig)


def test_no_oom_no_oom_marks(small):
    fig = _build("score_vs_ratio", small)
    try:
        assert OOM_LABEL not in _legend_labels(fig) and "OOM" not in _texts(fig)
        assert all(ax.get_ylim()[0] == 0.0 for ax in fig.axes)
    finally:
        _close(fig)
    for name in ("pareto_memory", "niah_heatmap"):
        fig = _build(name, small)
        try:
            assert not [t for t in _texts(fig) if "OOM" in t]
        finally:
            _close(fig)


def test_oom_in_pareto_memory(oom_tables):
    assert not (oom_tables["pareto"]["press"] == "snapkv-cr0.50").loc[oom_tables["pareto"]["length"] == 2048].any()
    fig = _build("pareto_memory", oom_tables)
    try:
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            notes = [t for t in ax.texts if t.get_gid() == "oom-note"]
            if "1K" in ax.get_title():
                assert not notes
                continue
            # 2K: niah, kv_retrieval and the task mean each list the variant, in a place free of points
            assert len(notes) == 1 and notes[0].get_text() == "OOM: SnapKV 0.50"
            box = notes[0].get_window_extent(renderer)
            points = np.concatenate([c.get_offset_transform().transform(c.get_offsets()) for c in ax.collections])
            assert len(points) == 6  # no_press + 2 x 3 ratios - the OOM one
            assert not any(box.contains(x, y) for x, y in points)
            assert ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1)
        assert len([ax for ax in fig.axes if "2K" in ax.get_title()]) == 3
    finally:
        _close(fig)


def test_oom_in_niah_heatmap(oom_tables):
    fig = _build("niah_heatmap", oom_tables)
    try:
        cells = [(ax, p) for ax in fig.axes for p in ax.patches if p.get_gid() == "oom-cell"]
        labels = [(ax, t) for ax in fig.axes for t in ax.texts if t.get_gid() == "oom-label"]
        assert len(cells) == 1 and len(labels) == 1
        ax, cell = cells[0]
        assert ax.get_title() == "2K tokens" and labels[0][0] is ax and labels[0][1].get_text() == "OOM"
        # the SnapKV 0.50 row, hatched across every depth bin
        rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert rows[int(cell.get_y())] == "SnapKV 0.50" and cell.get_width() == 10 and cell.get_hatch()
        assert len(rows) == 1 + 2 * 3 and all(rows)  # every variant's row is labelled
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0%", "50%", "100%"]
    finally:
        _close(fig)


def test_oom_everywhere_still_renders(tmp_path):
    """No press out of memory at 2K and a variant out of memory at every length: each figure shows them."""
    t = tables(("no_press", "snapkv", "knorm"), (0.25, 0.5), seeds=(0,), n=10)
    t = with_oom(t, [("no_press", 2048), ("knorm-cr0.25", 1024), ("knorm-cr0.25", 2048)])
    for name in ("score_vs_ratio", "pareto_memory", "niah_heatmap"):
        _check_outputs(FIGURES[name].draw(t, tmp_path / name), tmp_path / name)
    fig = _build("score_vs_ratio", t)
    try:
        for ax in _panels(fig, "2K"):  # no baseline there, its crossed-out marker at ratio 0
            assert [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_gid() == "oom:no_press"] == [0.0]
        assert "No press" in _legend_labels(fig) and "Knorm" in _legend_labels(fig)
    finally:
        _close(fig)
    fig = _build("niah_heatmap", t)
    try:  # knorm 0.25 has no sample at all, yet its row is there, OOM at both lengths; no press OOM at 2K
        rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        cells = [(ax.get_title(), rows[int(p.get_y())]) for ax in fig.axes for p in ax.patches
                 if p.get_gid() == "oom-cell"]
        assert sorted(cells) == [("1K tokens", "Knorm 0.25"), ("2K tokens", "Knorm 0.25"), ("2K tokens", "No press")]
    finally:
        _close(fig)


def test_realistic_oom_tables_render(tmp_path):
    """The preview study with one variant (TOVA at ratio 0.5) out of memory at 2K tokens;
    KVSTUDY_PLOTS_PREVIEW_OOM=DIR keeps the figures there to look at."""
    t = with_oom(realistic_tables(), [("tova-cr0.50", 2048)])
    out = Path(os.environ.get("KVSTUDY_PLOTS_PREVIEW_OOM", tmp_path))
    for name in ("score_vs_ratio", "pareto_memory", "niah_heatmap"):
        _check_outputs(FIGURES[name].draw(t, out / name), out / name)


def test_only_the_no_press_variant_is_the_baseline():
    """`no_press+int4` (quantized, no eviction) is drawn as a method of its own, not averaged into the baseline."""
    from kvstudy.plots._common import prepare

    df = prepare(pd.DataFrame({"press": ["no_press", "no_press+int4", "knorm-cr0.50"],
                               "method": ["no_press", "no_press", "knorm"], "length": [512] * 3,
                               "score": [1.0, 0.9, 0.5]}), "score_vs_ratio", "results")
    assert list(df["method"]) == ["no_press", "no_press+int4", "knorm"]
    assert (df["method"] == "no_press").sum() == 1


def test_score_vs_ratio_places_quantized_variants_at_the_memory_they_save():
    """int4 (no eviction) sits at 1 - kv_bytes_held / kv_bytes_reference, a `+int4` variant likewise and labelled
    as such; without the bytes, int4 is a marker at ratio 0 with a legend entry, not left out."""
    from kvstudy.plots import FIGURES

    rows = []
    for press, method, ratio, score, held in [("no_press", "no_press", 0.0, 1.0, 1000), ("knorm-cr0.50", "knorm", 0.5,
                                                                                        0.2, 500),
                                              ("int4", "int4", 0.0, 0.9, 160), ("knorm-cr0.50+int4", "knorm", 0.5,
                                                                                0.15, 80)]:
        rows.append({"model": "tiny", "task": "niah", "length": 512, "press": press, "method": method,
                     "compression_ratio": ratio, "seed": 0, "status": "ok", "score": score,
                     "metric": "string_match_all", "kv_bytes_held": held, "kv_bytes_reference": 1000})
    fig = FIGURES["score_vs_ratio"].build({"results": pd.DataFrame(rows)})
    try:
        ax = fig.axes[0]
        int4 = next(ln for ln in ax.lines if ln.get_gid() == "score:int4")
        assert list(int4.get_xdata()) == [0.0, pytest.approx(0.84)] and list(int4.get_ydata()) == [1.0, 0.9]
        combo = next(ln for ln in ax.lines if ln.get_gid() == "score:knorm+int4")
        assert list(combo.get_xdata())[-1] == pytest.approx(0.92)
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "Int4 (quantized)" in legend and "Knorm + int4" in legend and "Knorm" in legend
        assert "quantized" in fig.get_supxlabel()
    finally:
        _close(fig)
    fig = FIGURES["score_vs_ratio"].build({"results": pd.DataFrame(rows).drop(columns=["kv_bytes_held",
                                                                                       "kv_bytes_reference"])})
    try:
        marks = [ln for ln in fig.axes[0].lines if ln.get_gid() == "score:int4"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [0.0] and list(marks[0].get_ydata()) == [0.9]
    finally:
        _close(fig)
