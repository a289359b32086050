"""AdaKV (kvpress `AdaKVPress`) around any registered scorer press: per-head budgets from one global top-k.

kvpress implements the per-head budgets by *masking* the evicted keys in attention (exactly, per head:
`kvstudy.presses.masking`); the cache keeps every token, so it frees no memory. Eval results therefore report the
fraction of keys still attended (`kv_fraction_attended`) beside the real bytes, which stay those of the full cache.
"""

from __future__ import annotations

import importlib

from kvstudy.presses import PressSpec, get_press, register


def _inner_spec(name: str) -> PressSpec:
    try:
        spec = get_press(name)
    except KeyError as e:
        raise ValueError(f"press: {e.args[0]}") from None
    if not spec.has_ratio or spec.phase != "prefill" or spec.masking or spec.quantization:
        raise ValueError(f"press: AdaKV wraps a prefill scorer press, not {name!r}")
    if spec.attention({}) == "eager":
        raise ValueError(f"press: AdaKV masks keys in SDPA/flash attention and cannot wrap {name!r} (eager only)")
    return spec


def _check(params: dict) -> None:
    _inner_spec(params["press"])
    if not 0 <= params["alpha_safeguard"] <= 1:
        raise ValueError("alpha_safeguard: must be in [0, 1]")


def _build(press: str, alpha_safeguard: float, compression_ratio: float):
    kvpress = importlib.import_module("kvpress")
    importlib.import_module("kvstudy.presses.masking").install()
    inner = _inner_spec(press).build({"compression_ratio": compression_ratio})
    if not isinstance(inner, kvpress.ScorerPress):
        raise ValueError(f"press: AdaKV needs a kvpress ScorerPress, {press!r} builds {type(inner).__name__}")
    return kvpress.AdaKVPress(press=inner, alpha_safeguard=alpha_safeguard)


register(
    PressSpec(
        "adakv",
        "AdaKV: per-head budgets (global top-k) around a scorer press",
        _build,
        {"press": "snapkv", "alpha_safeguard": 0.2},
        masking=True,
        check_values=_check,
        reads=lambda p: _inner_spec(p["press"]).prefill_reads({}),  # what the scorer it wraps reads
    )
)
