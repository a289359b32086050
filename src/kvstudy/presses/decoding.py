"""`decoding` / `decoding_budget`: eviction while generating (kvpress decoding presses), H2O-style.

`decoding` (kvpress `CompressionRatioDecodingPress`) keeps a fraction of the tokens seen; `decoding_budget`
(kvpress `DecodingPress`) keeps a fixed number of tokens, `target_size`, per layer and head.

Prefill keeps the full context; then every `compression_interval` decoding steps each layer's cache (context,
question and generated tokens) is cut back to `int(tokens_seen * (1 - compression_ratio))` entries, chosen by the
wrapped scorer press from the queries of the steps since the last eviction only (kvpress's buffer): at
`compression_interval: 1` the newest token's attention alone (`observed_attention`, eager attention) and nothing
is remembered across evictions. That is *newest-token* scoring, not H2O: H2O's heavy hitters by attention
accumulated over every query so far, with a recent window, are `h2o`; CAB's the same way is `cab_accumulated`
(`accumulated_press`). Because kvpress compresses after a layer's attention, the forward that triggers an
eviction still sees the whole cache: the first answer token is never affected, later ones are.
Eval results record the cache after prefill and after decoding (`kv_tokens_final`, `kv_bytes_final`).
"""

from __future__ import annotations

import importlib

from kvstudy.presses import PressSpec, get_press, register


def _inner(name: str):
    try:
        spec = get_press(name)
    except KeyError as e:
        raise ValueError(f"press: {e.args[0]}") from None
    if not spec.has_ratio or spec.phase != "prefill" or spec.masking or spec.quantization or name == "pyramidkv":
        raise ValueError(f"press: decoding-time eviction needs a scorer press, not {name!r}")
    return spec


def _check(params: dict) -> None:
    spec = _inner(params["press"])
    if params["compression_interval"] < 1:
        raise ValueError("compression_interval: must be >= 1")
    # SnapKV scores with its last `window_size` queries: kvpress hands it the hidden states buffered since the last
    # eviction (at most `hidden_states_buffer_size`), and asserts there are more than the window
    w = spec.defaults.get("window_size")
    if w is not None and min(params["compression_interval"], params["hidden_states_buffer_size"]) <= w:
        raise ValueError(f"compression_interval: press {params['press']!r} scores with its last {w} queries, so "
                         f"decoding-time eviction needs compression_interval and hidden_states_buffer_size above {w}")
    if params.get("target_size", 1) < 1:
        raise ValueError("target_size: must be >= 1")


def _build(press: str, compression_interval: int, hidden_states_buffer_size: int, compression_ratio: float):
    kvpress = importlib.import_module("kvpress")
    inner = _inner(press).build({"compression_ratio": 0.0})  # the decoding press sets the ratio at every eviction
    return kvpress.CompressionRatioDecodingPress(
        base_press=inner,
        target_compression_ratio=compression_ratio,
        compression_interval=compression_interval,
        hidden_states_buffer_size=hidden_states_buffer_size,
    )


register(
    PressSpec(
        "decoding",
        "evict during generation: every compression_interval steps keep (1 - ratio) of all tokens seen, "
        "scored by `press` on the queries since the last eviction (interval 1: the newest token's attention; "
        "not H2O's accumulated scores, which are `h2o`)",
        _build,
        {"press": "observed_attention", "compression_interval": 1, "hidden_states_buffer_size": 0},
        phase="decoding",
        attn_for=lambda p: get_press(p["press"]).attention({}),
        check_values=_check,
    )
)


def _build_budget(press: str, target_size: int, compression_interval: int, hidden_states_buffer_size: int):
    kvpress = importlib.import_module("kvpress")
    return kvpress.DecodingPress(
        base_press=_inner(press).build({"compression_ratio": 0.0}),
        target_size=target_size,
        compression_interval=compression_interval,
        hidden_states_buffer_size=hidden_states_buffer_size,
    )


register(
    PressSpec(
        "decoding_budget",
        "evict during generation: every compression_interval steps cut each layer's cache to target_size tokens, "
        "scored by `press` on the queries since the last eviction (interval 1: the newest token's attention)",
        _build_budget,
        {"press": "observed_attention", "target_size": 256, "compression_interval": 1, "hidden_states_buffer_size": 0},
        has_ratio=False,
        phase="decoding",
        attn_for=lambda p: get_press(p["press"]).attention({}),
        check_values=_check,
    )
)
