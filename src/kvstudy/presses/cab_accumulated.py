"""`cab_accumulated`: CAB's selection (`cab_press.select`: local window, bridges, heavy hitters) while generating,
its importance accumulated over every query so far, prefill and decoding, per KV head.

CAB's importance in kvstudy is the mean attention a position received from the queries that could see it
(`cab_press`); here those are every query since the token entered the cache, not only the forward being compressed:
accumulated attention / the number of observed queries that saw the entry (`accumulated_press`). Every
`compression_interval` steps each KV head keeps `int(tokens_seen * (1 - compression_ratio))` entries: the most
recent `local_fraction`, the top by importance, and `bridge_fraction` of bridges, the entry before a heavy hitter
when it holds the heavy hitter's predecessor token (an earlier eviction may have left a gap). The log's CAB is 30%
local + 20% bridges + 50% importance (the defaults). `cab` under `decoding` instead scores each eviction by the
queries since the last one (the newest token's attention at `compression_interval: 1`).
"""

from __future__ import annotations

from kvstudy.presses import PressSpec, Reads, register
from kvstudy.presses.cab import _check as _check_split


def _build(**params):
    from kvstudy.presses.cab_accumulated_press import CABAccumulatedPress

    return CABAccumulatedPress(**params)


def _check(params: dict) -> None:
    _check_split(params)
    if params["compression_interval"] < 1:
        raise ValueError("compression_interval: must be >= 1")


register(
    PressSpec(
        "cab_accumulated",
        "CAB while generating: every compression_interval steps keep (1 - ratio) of all tokens seen: a local "
        "window, bridge tokens and heavy hitters by mean attention accumulated over every query so far (prefill "
        "and decoding), per KV head",
        _build,
        {"local_fraction": 0.3, "bridge_fraction": 0.2, "compression_interval": 1},
        phase="decoding",
        observes_prefill=True,
        check_values=_check,
        reads=Reads(None, True),
    )
)
