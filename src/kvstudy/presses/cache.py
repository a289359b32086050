"""The KV cache an eval job fills: the one the model itself would use, and what it holds.

`make_cache(config, quantization)` builds one layer per decoder layer, of the kind transformers' own
`DynamicCache(config=...)` builds for `generate()`: a sliding-window layer (transformers'
`DynamicSlidingWindowLayer`, which keeps the last `sliding_window - 1` tokens) where the config says the layer
attends within a window (Mistral/Phi3 with `sliding_window`, Gemma3's local layers, Qwen2 with
`use_sliding_window`), a full layer elsewhere. So KV bytes, the full-cache baseline and every saving are those of
the model's own cache; a cache built without the config would keep every token of a sliding-window layer.

kvstudy's rule for presses (README, "Presses"): a press compresses **full-attention layers only**; sliding-window
layers keep the model's own window, untouched (kvpress does the same for Gemma3). A quantized variant quantizes
the full layers; sliding-window layers keep their window in full precision.

Full layers here count the tokens they have *seen* apart from the entries they *hold*. transformers'
`DynamicLayer` reads both from `keys.shape`, so once a press has evicted (kvpress replaces `keys`/`values` in
place) the next step's `cache_position` (read from layer 0) and the masks of layers of another kind disagree, e.g.
on Gemma3 a question token would see later question tokens. Here `get_seq_length()` is the tokens seen, as in a
sliding-window layer, so `cache_position` is every token's true position in every layer; `get_mask_sizes()` covers
the entries held (offset so the held context is visible and the new tokens causal). Written here because
transformers has no cache layer that tracks both.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, DynamicSlidingWindowLayer, QuantizedCache

from kvstudy.presses import QUANTIZATIONS
from kvstudy.presses.quantized import quantized_layer

SLIDING = ("sliding_attention", "chunked_attention")


def layer_kinds(config) -> list[str]:
    """"sliding" or "full" per decoder layer of `config`, as transformers' `DynamicCache(config=...)` decides, except
    that a window no shorter than the model's position range is full: it can never drop a token (Phi-3.5-mini's
    262144-token window at 131072 positions), and a press may compress such a layer like any full one."""
    c = config.get_text_config(decoder=True)
    window = sliding_window(c)
    types = getattr(c, "layer_types", None) or [
        "sliding_attention" if window is not None else "full_attention"] * c.num_hidden_layers
    if hasattr(c, "num_kv_shared_layers"):
        types = types[: -c.num_kv_shared_layers]
    max_pos = getattr(c, "max_position_embeddings", None)
    binds = window is not None and (max_pos is None or window < max_pos)
    return ["sliding" if t in SLIDING and binds else "full" for t in types]


def sliding_window(config) -> int | None:
    c = config.get_text_config(decoder=True)
    return getattr(c, "sliding_window", None) or getattr(c, "attention_chunk_size", None)


def own_cache_tokens(config, n_tokens: int) -> list[int]:
    """Tokens each layer of the model's own uncompressed cache holds after `n_tokens` were fed."""
    w = sliding_window(config)
    return [min(n_tokens, w - 1) if kind == "sliding" else n_tokens for kind in layer_kinds(config)]


class _Seen:
    """Mixin for a full layer a press may shrink: tokens seen (positions) apart from entries held (masks)."""

    seen = 0

    def update(self, key_states, value_states, cache_kwargs=None):
        self.seen += key_states.shape[-2]
        return super().update(key_states, value_states, cache_kwargs)

    def held(self) -> int:
        return super().get_seq_length()

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, cache_position: torch.Tensor) -> tuple[int, int]:
        held = self.held()
        return held + cache_position.shape[0], self.seen - held


class FullLayer(_Seen, DynamicLayer):
    """transformers' `DynamicLayer`, positions kept right after eviction."""


def held_tokens(layer) -> int:
    """Entries a cache layer holds (per KV head), whatever its kind."""
    from transformers.cache_utils import QuantizedLayer

    if isinstance(layer, _Seen):
        return layer.held()
    if isinstance(layer, QuantizedLayer):  # quantized part + residual; kvpress sets it after evicting
        return layer.cumulative_length
    k = getattr(layer, "keys", None)
    return k.shape[-2] if isinstance(k, torch.Tensor) and k.dim() == 4 else 0


def uneven(cache) -> bool:
    """Full layers holding different numbers of entries (per-layer budgets): transformers builds one mask per kind
    of layer, which cannot fit them all for a step of several tokens."""
    return len({held_tokens(layer) for layer in cache.layers if not getattr(layer, "is_sliding", False)}) > 1


def make_cache(config, quantization: str | None = None, backend: str = "auto"):
    """An empty cache for one sample: the model's own layer kinds, full layers quantized when asked."""
    if quantization is None:
        full = FullLayer
    else:
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization: unknown kind {quantization!r} (known: {', '.join(QUANTIZATIONS)})")
        base, args, kwargs = quantized_layer(quantization, backend)
        layer = type(base.__name__, (_Seen, base), {})  # counts what it holds, as FullLayer does
        full = lambda: layer(*args, **kwargs)  # noqa: E731
    w = sliding_window(config)
    layers = [DynamicSlidingWindowLayer(w) if kind == "sliding" else full() for kind in layer_kinds(config)]
    return (_QuantizedCache if quantization is not None else _DynamicCache)(layers)


class _DynamicCache(DynamicCache):
    def __init__(self, layers):
        Cache.__init__(self, layers=layers)


class _QuantizedCache(QuantizedCache):
    """A `QuantizedCache` (kvpress re-quantizes after eviction only for that class) of the given layers."""

    def __init__(self, layers):
        Cache.__init__(self, layers=layers)
