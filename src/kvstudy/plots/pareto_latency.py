"""Score vs latency (time to first token, from pareto.csv): the pareto_memory figure with latency on the x axis
and the latency Pareto front (score max, latency min). Same panels, colours, ratio labels and OOM notes.

Latency is the timing protocol's median TTFT with its interval drawn as a horizontal bar (pareto.csv
`latency_low`/`latency_high`, `latency_source` "timing"); the front counts a variant faster only where the
intervals say so (kvstudy.pareto.non_dominated). A study with timing off falls back to the eval jobs' mean TTFT
(one measurement each, no interval), and the x label says so.
"""

from __future__ import annotations

from kvstudy.plots._pareto_views import build_view
from kvstudy.plots.style import seconds_unit

NAME = "pareto_latency"


def source_note(pareto) -> str:
    """One line on where the latencies come from (pareto.csv `latency_source`)."""
    if pareto is None:
        return ""
    sources = set(pareto["latency_source"].dropna().astype(str)) if "latency_source" in pareto.columns else set()
    if sources == {"timing"}:
        return "median of the timing protocol's runs; bars: its interval"
    if "timing" in sources:
        return "timing-protocol medians (bars: interval) where timed; else eval-job means, no interval"
    return "mean over the eval jobs' samples (timing protocol off: one measurement each, no interval)"


def build(tables, **options):
    """Options (layout, together, colour_by, models, methods, tasks): kvstudy.plots._pareto_views."""
    return build_view(tables, NAME, "latency", **options, x_column="latency_seconds", front_column="front_latency",
                      x_unit=seconds_unit, x_label="Time to first token", front_label="Latency Pareto front",
                      bounds=("latency_low", "latency_high"), note=source_note(tables.get("pareto")))
