"""Score vs KV-cache memory (from pareto.csv): one panel per task (columns, the task mean last) x context length
(rows); points coloured and marked by method, the memory Pareto front joined by a step line, points labelled with
their compression ratio.

Press variants with the same ratio keep about the same number of tokens, so they stack at one memory value: such a
stack gets one ratio label (above its top point) instead of one per point.

A variant that ran out of GPU memory (results.csv status "oom", so no row in pareto.csv) has neither a score nor a
memory value: each panel lists its OOM variants in a small note ("OOM: TOVA 0.50") placed in a corner free of
points, lines and labels; such a variant is never a point and never on the front. In the task-mean panel a variant
counts as OOM when it ran out of memory on any task (it then has no mean). A variant whose jobs failed (status
"failed") is listed the same way in a "failed: ..." line of the note.

Memory is the cache a variant held (pareto.csv `kv_bytes`, from results.csv `kv_bytes_held`): after prefill, or at
the end of generation for decoding presses, whose ratio label is the fraction they really evicted. With
`memory: peak` it is the peak memory above the weights where one was measured (pareto.csv `peak_memory_bytes`:
CUDA, the timing protocol's median where timed, else the eval jobs'; front `front_peak_memory`; a variant with no
peak is not drawn); where none was (a CPU run) the figure falls back to the KV
memory held and says so under its x axis.
"""

from __future__ import annotations

import pandas as pd

from kvstudy.plots._pareto_views import build_view
from kvstudy.plots.style import byte_unit

NAME = "pareto_memory"


PEAK_NOTE = "CUDA allocator peak: the timing protocol's median where timed, else the eval jobs'"
NO_PEAK = "no peak memory was measured (CPU run): KV cache memory held instead"


def build(tables, memory: str = "kv", **options):
    """`memory`: kv (the KV cache held) or peak (peak memory above the weights where measured, else the KV cache,
    said under the axis); the other options (layout, together, colour_by, models, methods, tasks):
    kvstudy.plots._pareto_views."""
    if memory not in ("kv", "peak"):
        raise ValueError(f"figure {NAME!r}: memory {memory!r} is not 'kv' or 'peak'")
    front = dict(x_column="kv_bytes", front_column="front_memory", x_unit=byte_unit, x_label="KV cache memory",
                 front_label="Memory Pareto front", note=NO_PEAK if memory == "peak" else "")
    if memory == "peak":
        pareto = tables.get("pareto")
        peaks = pareto["peak_memory_bytes"] if pareto is not None and "peak_memory_bytes" in pareto else pd.Series()
        if pd.to_numeric(peaks, errors="coerce").notna().any():
            front = dict(x_column="peak_memory_bytes", front_column="front_peak_memory", x_unit=byte_unit,
                         x_label="Peak memory above the weights", front_label="Peak-memory Pareto front",
                         note=PEAK_NOTE)
    return build_view(tables, NAME, "memory", **options, **front)
