"""Presses taken as they are from kvpress (NVIDIA, pinned): one line each.

kvpress is imported lazily inside each factory: importing it costs ~5 s (it pulls in transformers' model
registry and datasets), which the config validator and `kvstudy presses` should not pay.
"""

from __future__ import annotations

import importlib

from kvstudy.presses import NOTHING, PressSpec, Reads, register


def _kvpress(cls_name: str):
    def factory(**kwargs):
        return getattr(importlib.import_module("kvpress"), cls_name)(**kwargs)

    return factory


# What each press's prefill compression reads (kvstudy.presses.Reads; proven by tests/test_engine.py): SnapKV scores
# with its last window of queries, TOVA with the last query (or those rows of the attention weights under eager
# attention), expected attention with every query's statistics; the rest look at keys and values only.
_READS = {
    "knorm": NOTHING, "streaming_llm": NOTHING, "random": NOTHING, "keydiff": NOTHING,
    "snapkv": lambda p: Reads(p["window_size"], True),
    "tova": Reads(1, True),
    "expected_attention": Reads(None, False),
}

for name, cls_name, description, defaults in [
    ("knorm", "KnormPress", "keep the keys with the lowest L2 norm", {}),
    ("streaming_llm", "StreamingLLMPress", "keep the first n_sink tokens and the most recent ones", {"n_sink": 4}),
    (
        "snapkv",
        "SnapKVPress",
        "keep the tokens the last window's queries attend to most (pooled)",
        {"window_size": 64, "kernel_size": 5},
    ),
    ("tova", "TOVAPress", "keep the tokens the last query attends to most (head-averaged)", {}),
    (
        "expected_attention",
        "ExpectedAttentionPress",
        "keep the tokens future queries are expected to attend to (query statistics)",
        {"n_future_positions": 512, "n_sink": 4, "use_covariance": True, "use_vnorm": True},
    ),
    ("random", "RandomPress", "keep random tokens (a floor for every method)", {"seed": 0}),
    ("keydiff", "KeyDiffPress", "keep the keys least similar to the mean key direction", {}),
]:
    register(PressSpec(name, description, _kvpress(cls_name), defaults, reads=_READS[name]))


def _pyramidkv(**kwargs):
    from kvstudy.presses.pyramid_press import FullLayerPyramidKVPress

    return FullLayerPyramidKVPress(**kwargs)


register(
    PressSpec(
        "pyramidkv",
        "SnapKV scores with a per-layer budget shrinking from the first layer to the last (same total tokens)",
        _pyramidkv,
        {"window_size": 64, "kernel_size": 5, "beta": 20},
        reads=lambda p: Reads(p["window_size"], True),
    )
)

# H2O-style: the average attention each token received during prefill, read from the attention weights, which
# only eager attention returns. The model is loaded with eager attention for this press (never silently SDPA).
register(
    PressSpec(
        "observed_attention",
        "keep the tokens that received the most attention during prefill (H2O-style; eager attention)",
        _kvpress("ObservedAttentionPress"),
        {},
        attn_implementation="eager",
        reads=Reads(0, True),  # the attention weights only
    )
)
