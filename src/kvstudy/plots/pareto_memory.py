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
the end of generation for decoding presses, whose ratio label is the fraction they really evicted.
"""

from __future__ import annotations

from kvstudy.plots._pareto_views import build_view
from kvstudy.plots.style import byte_unit

NAME = "pareto_memory"


def build(tables, **options):
    """Options (layout, together, colour_by, models, methods, tasks): kvstudy.plots._pareto_views."""
    return build_view(tables, NAME, "memory", **options, x_column="kv_bytes", front_column="front_memory",
                      x_unit=byte_unit, x_label="KV cache memory", front_label="Memory Pareto front")
