"""Absolute budgets: `cache_size: C` beside `compression_ratio` for the prefill presses that score tokens.

The HELMET workshop log (and KVCache-Factory, whose SnapKV/PyramidKV it ran) sets a cache size in tokens, not a
ratio: a prompt of n tokens keeps min(C, n) of them per layer (PyramidKV: C per layer on average, its pyramid
around it), so a prompt shorter than the cache is kept whole where a ratio would still drop a fixed share of it.
kvpress presses take a ratio; the press class is subclassed so that, at each compression, its ratio is the one that
keeps exactly C of the layer's n entries (kvpress keeps `int(n * (1 - ratio))`; the extra half token keeps the
float product from rounding down to C - 1). The job's `compression_ratio` of such a variant is nominal
(`1 - C / length`, kvstudy.grid); what a sample kept is its `kv_tokens`.
"""

from __future__ import annotations

import functools


def ratio_for(cache_size: int, n: int) -> float:
    """The compression ratio that keeps min(cache_size, n) of n entries under kvpress's budget rules."""
    return 0.0 if cache_size >= n else 1.0 - (cache_size + 0.5) / n


@functools.cache
def _sized(cls):
    class Sized(cls):
        def compress(self, module, hidden_states, keys, values, attentions, kwargs):
            self.compression_ratio = ratio_for(self.cache_size, keys.shape[2])
            return super().compress(module, hidden_states, keys, values, attentions, kwargs)

    Sized.__name__ = Sized.__qualname__ = f"{cls.__name__}WithCacheSize"
    return Sized


def with_cache_size(press, cache_size: int):
    """`press` keeping `cache_size` entries per layer at each compression instead of its ratio's share."""
    if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 1:
        raise ValueError(f"cache_size: {cache_size!r} is not a positive integer")
    press.__class__ = _sized(type(press))
    press.cache_size = cache_size
    return press
