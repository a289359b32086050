"""`h2o`: H2O as its paper defines it (Zhang et al. 2023): while generating, keep a recent window and the heavy
hitters by attention accumulated over every query so far, prefill and decoding, per KV head.

Of the `n_kept = int(tokens_seen * (1 - compression_ratio))` entries a KV head keeps (cut every
`compression_interval` steps; `accumulated_press` has the machinery): the last `round(recent_ratio * n_kept)`
entries of the cache (the most recent tokens; H2O's implementation keeps the cache's tail), and of the others the
`n_kept - n_recent` with the highest accumulated attention. The log's H2O is 20% recent + 80% heavy hitters
(`recent_ratio: 0.2`). Not to be confused with `decoding` + `observed_attention`, which scores each eviction by the
newest token's attention alone.
"""

from __future__ import annotations

from kvstudy.presses import PressSpec, Reads, register


def _build(**params):
    from kvstudy.presses.h2o_press import H2OPress

    return H2OPress(**params)


def _check(params: dict) -> None:
    if not 0 <= params["recent_ratio"] <= 1:
        raise ValueError("recent_ratio: must be between 0 and 1")
    if params["compression_interval"] < 1:
        raise ValueError("compression_interval: must be >= 1")


register(
    PressSpec(
        "h2o",
        "H2O: evict during generation, every compression_interval steps keep (1 - ratio) of all tokens seen: a "
        "recent window (recent_ratio of them) and the heavy hitters by attention accumulated over every query so "
        "far (prefill and decoding), per KV head",
        _build,
        {"recent_ratio": 0.2, "compression_interval": 1},
        phase="decoding",
        observes_prefill=True,
        check_values=_check,
        reads=Reads(None, True),  # every prefill query's attention: the weights (eager), else recomputed
    )
)
