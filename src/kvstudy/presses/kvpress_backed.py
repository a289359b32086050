"""Presses taken as they are from kvpress (NVIDIA, pinned): one line each; `random` draws its mask per sample.

kvpress is imported lazily inside each factory: importing it costs ~5 s (it pulls in transformers' model
registry and datasets), which the config validator and `kvstudy presses` should not pay.
"""

from __future__ import annotations

import functools
import hashlib
import importlib

import numpy as np

from kvstudy.presses import NOTHING, PressSpec, Reads, check_pooling, register


def _kvpress(cls_name: str):
    def factory(**kwargs):
        return getattr(importlib.import_module("kvpress"), cls_name)(**kwargs)

    return factory


def _rope_aware(cls_name: str):
    """kvpress's press whose score rotates queries, rotating them as the model does (GPT-NeoX: part of each head;
    `partial_rope.py`)."""

    def factory(**kwargs):
        return getattr(importlib.import_module("kvstudy.presses.partial_rope"), cls_name)(**kwargs)

    return factory


_FACTORIES = {"tova": _rope_aware("RopeTOVAPress"), "expected_attention": _rope_aware("RopeExpectedAttentionPress")}


def _check_snap(p: dict) -> None:
    check_pooling(p["pooling"])


def _snapkv(**kwargs):
    from kvstudy.presses.snapkv_press import PooledSnapKVPress  # kvpress's SnapKVPress with a pooling choice

    return PooledSnapKVPress(**kwargs)


# What each press's prefill compression reads (kvstudy.presses.Reads; proven by tests/test_engine.py): SnapKV scores
# with its last window of queries, TOVA with the last query (or those rows of the attention weights under eager
# attention), expected attention with every query's statistics, random (seeded per sample) with a subsample of every
# position at the first layer it scores (`context_bits`); the rest look at keys and values only.
_READS = {
    "knorm": NOTHING, "streaming_llm": NOTHING, "random": Reads(None, False), "keydiff": NOTHING,
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
        "keep the tokens the last window's queries attend to most (pooled: avgpool, kvpress's, or maxpool)",
        {"window_size": 64, "kernel_size": 5, "pooling": "avgpool"},
    ),
    ("tova", "TOVAPress", "keep the tokens the last query attends to most (head-averaged)", {}),
    (
        "expected_attention",
        "ExpectedAttentionPress",
        "keep the tokens future queries are expected to attend to (query statistics)",
        {"n_future_positions": 512, "n_sink": 4, "use_covariance": True, "use_vnorm": True},
    ),
    ("keydiff", "KeyDiffPress", "keep the keys least similar to the mean key direction", {}),
]:
    factory = _snapkv if name == "snapkv" else _FACTORIES.get(name, _kvpress(cls_name))
    register(PressSpec(name, description, factory, defaults, reads=_READS[name], sizes=True,
                       check_values=_check_snap if name == "snapkv" else None))


def context_bits(hidden_states) -> bytes:
    """What identifies a context to the press: the signs of a fixed subsample (up to ~512 positions x 16 channels)
    of the hidden states it scores. Identical contexts give identical bits; different ones differ."""
    n = hidden_states.shape[1]
    probe = hidden_states[:, :: max(1, n // 256), :16] > 0
    return f"{n}:".encode() + np.packbits(probe.cpu().numpy().ravel()).tobytes()


def sample_seed(seed: int, layer_idx: int, context: bytes) -> int:
    """A 64-bit seed from the variant's seed, the layer and the context (`context_bits`)."""
    digest = hashlib.blake2b(f"{seed}:{layer_idx}:".encode() + context, digest_size=8).digest()
    return int.from_bytes(digest, "little")


@functools.cache
def _random_press_class():
    """kvpress's RandomPress seeds one generator with `seed` at every call, so every sample and layer of a job
    drops the same positions: its "floor" would be one draw. Here each (sample, layer) draws its own mask, seeded
    from `seed`, the layer and the context, so the floor is an average over masks and a rerun draws the same ones.

    The press sees no token ids (a wrapping press, e.g. `decoding`, calls only its scorer), so the context is read
    from the hidden states of the first layer it scores in a forward (layers are scored in order): at the first
    layer they are the normalised token embeddings, bitwise the same on a rerun, where deeper layers' states could
    differ in the last bit on some devices."""
    import torch
    from kvpress import RandomPress

    class SampleSeededRandomPress(RandomPress):
        def score(self, module, hidden_states, keys, values, attentions, kwargs):
            if self.seed is None:  # unseeded: kvpress's own (torch's global generator)
                return super().score(module, hidden_states, keys, values, attentions, kwargs)
            first = getattr(self, "_first_layer", None)
            if first is None or module.layer_idx <= first:  # a new forward (sample, or decoding eviction step)
                self._first_layer, self._context = module.layer_idx, context_bits(hidden_states)
            generator = torch.Generator(device=keys.device)
            generator.manual_seed(sample_seed(self.seed, module.layer_idx, self._context))
            return torch.rand(*keys.shape[:-1], generator=generator, device=keys.device, dtype=keys.dtype)

    return SampleSeededRandomPress


def _random(**kwargs):
    return _random_press_class()(**kwargs)


register(PressSpec("random", "keep random tokens, a new draw per sample and layer (a floor for every method)",
                   _random, {"seed": 0}, reads=_READS["random"], sizes=True))


def _pyramidkv(**kwargs):
    from kvstudy.presses.pyramid_press import FullLayerPyramidKVPress

    return FullLayerPyramidKVPress(**kwargs)


register(
    PressSpec(
        "pyramidkv",
        "SnapKV scores with a per-layer budget shrinking from the first layer to the last (same total tokens)",
        _pyramidkv,
        {"window_size": 64, "kernel_size": 5, "beta": 20, "pooling": "avgpool"},
        reads=lambda p: Reads(p["window_size"], True),
        sizes=True,
        check_values=_check_snap,
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
        sizes=True,
    )
)
