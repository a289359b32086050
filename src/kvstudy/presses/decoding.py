"""`decoding`: eviction while generating (kvpress `CompressionRatioDecodingPress`), H2O-style.

Prefill keeps the full context; then every `compression_interval` decoding steps each layer's cache (context,
question and generated tokens) is cut back to `int(tokens_seen * (1 - compression_ratio))` entries, chosen by the
wrapped scorer press (`observed_attention` gives H2O's attention-based eviction and loads the model with eager
attention; `cab` is our CAB). Because kvpress compresses after a layer's attention, the forward that triggers an
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
    _inner(params["press"])
    if params["compression_interval"] < 1:
        raise ValueError("compression_interval: must be >= 1")


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
        "scored by `press` (observed_attention = H2O)",
        _build,
        {"press": "observed_attention", "compression_interval": 1, "hidden_states_buffer_size": 0},
        phase="decoding",
        attn_for=lambda p: get_press(p["press"]).attention({}),
        check_values=_check,
    )
)
