"""runtime_vs_ratio (issue 21.1): warm and cold runtime per call against the compression ratio, from timing.csv."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from kvstudy.plots import FIGURES
from kvstudy.plots.style import method_color, paper_style
from kvstudy.timing_table import COLUMNS

VARIANTS = [("no_press", "no_press", 0.0), ("knorm-cr0.50", "knorm", 0.5), ("knorm-cr0.90", "knorm", 0.9),
            ("streaming_llm-cr0.50", "streaming_llm", 0.5)]


def _timing(cold: bool) -> pd.DataFrame:
    rows = []
    for i, (press, method, ratio) in enumerate(VARIANTS):
        warm, first = 0.04 + 0.1 * ratio, 0.4 + i  # distinct values, cold ten times slower or more
        row = {c: np.nan for c in COLUMNS}
        row |= {"model": "m", "length": 1024, "press": press, "method": method, "compression_ratio": ratio,
                "status": "ok", "run_seconds": warm, "run_seconds_low": warm - 0.01, "run_seconds_high": warm + 0.02}
        if cold:
            row |= {"cold_status": "ok", "cold_runs": 3, "cold_run_seconds": first,
                    "cold_run_seconds_low": first - 0.1, "cold_run_seconds_high": first + 0.1}
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _build(table, **options):
    with paper_style():
        return FIGURES["runtime_vs_ratio"].build({"timing": table}, **options)


def _lines(fig):
    return {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}


def test_warm_and_cold_lines_start_at_no_press_with_their_own_medians():
    fig = _build(_timing(cold=True))
    try:
        lines = _lines(fig)
        assert set(lines) == {"warm_knorm", "cold_knorm", "warm_streaming_llm", "cold_streaming_llm"}
        assert list(lines["warm_knorm"].get_xdata()) == [0.0, 0.5, 0.9]
        assert list(lines["warm_knorm"].get_ydata()) == pytest.approx([0.04, 0.09, 0.13])
        assert list(lines["cold_knorm"].get_ydata()) == pytest.approx([0.4, 1.4, 2.4])
        assert lines["cold_knorm"].get_linestyle() == "--" and lines["cold_knorm"].get_markerfacecolor() == "white"
        assert to_hex(lines["cold_streaming_llm"].get_color()) == method_color("streaming_llm")
        assert "cold (first call" in fig._supxlabel.get_text()
    finally:
        plt.close(fig)


def test_without_cold_runs_it_draws_warm_lines_and_says_so():
    fig = _build(_timing(cold=False))
    try:
        assert set(_lines(fig)) == {"warm_knorm", "warm_streaming_llm"}
        assert "warm runs only" in fig._supxlabel.get_text()
    finally:
        plt.close(fig)


def test_an_unknown_measure_or_no_timing_is_one_clear_error():
    with pytest.raises(ValueError, match="measure 'decode'"):
        _build(_timing(cold=True), measure="decode")
    with pytest.raises(ValueError, match="runtime_vs_ratio"):
        _build(pd.DataFrame(columns=COLUMNS))


def test_a_variant_lost_only_cold_is_named_cold_and_not_drawn_cold():
    table = _timing(cold=True)
    lost = table["press"] == "knorm-cr0.90"
    table.loc[lost, ["cold_status", "cold_run_seconds", "cold_run_seconds_low", "cold_run_seconds_high"]] = [
        "oom", np.nan, np.nan, np.nan]
    fig = _build(table)
    try:
        assert fig.axes[0].get_title() == "1K tokens\ncold OOM: Knorm 0.90"
        lines = _lines(fig)
        assert list(lines["cold_knorm"].get_xdata()) == [0.0, 0.5]
        assert list(lines["warm_knorm"].get_xdata()) == [0.0, 0.5, 0.9]
    finally:
        plt.close(fig)
