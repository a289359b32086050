"""Score vs latency (time to first token, from pareto.csv): the pareto_memory figure with latency on the x axis
and the latency Pareto front (score max, latency min). Same panels, colours, ratio labels and OOM notes."""

from __future__ import annotations

from kvstudy.plots import Figure, register
from kvstudy.plots.pareto_memory import build_front

NAME = "pareto_latency"


def seconds_unit(max_seconds: float) -> tuple[str, float]:
    """("ms", 1e-3) below ten seconds, else ("s", 1)."""
    return ("s", 1.0) if max_seconds >= 10 else ("ms", 1e-3)


def build(tables):
    return build_front(tables, NAME, "latency_seconds", "front_latency", seconds_unit, "Time to first token",
                       "Latency Pareto front")


register(Figure(NAME, "score vs time to first token per task x length with the latency Pareto front; OOM noted",
                ("pareto", "results"), build))
