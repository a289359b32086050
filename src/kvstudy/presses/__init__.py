"""Press registry: method name -> how to build it, its parameters and defaults.

Adding a method is one module that calls `register(...)`. kvpress-backed presses are declared in
`kvpress_backed.py`; presses kvpress lacks (or that need more than a constructor call) get a file of their own.

Besides its own parameters, every press variant takes two variant options (`VARIANT_OPTIONS`), handled by
`kvstudy.presses.variant`, not by the press: `query_aware` (the question is appended to the context before
compression) and `quantization` (`int8`/`int4`/`int2` KV cache, composable with any eviction press).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Reads:
    """What a press's compression of a layer reads besides the layer's keys and values (kvpress's `compress`
    arguments): the last `hidden_states` positions of the layer's hidden states (None: all of them, 0: none; the
    shape is always the whole context's) and the attention weights when the model returns them (eager attention).
    The default is everything: safe for a press that declares nothing."""

    hidden_states: int | None = None
    attentions: bool = True


NOTHING = Reads(0, False)


POOLINGS = ("avgpool", "maxpool")  # SnapKV / PyramidKV smoothing of the window's attention (snapkv_press.py)


def check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")


@dataclass(frozen=True)
class PressSpec:
    name: str
    description: str
    factory: Callable[..., Any] | None  # kwargs -> press object (context manager over a model); None = no press
    defaults: dict[str, Any] = field(default_factory=dict)  # every accepted parameter with its default
    has_ratio: bool = True  # takes `compression_ratio`
    attn_implementation: str | None = None  # attention the model must be loaded with, if the press needs one
    phase: str = "prefill"  # "prefill": compresses the context once; "decoding": evicts while generating
    # a decoding press that is entered for the prefill too, to read it (accumulated attention: h2o), reading
    # `reads` of it like a prefill press; it leaves the prefilled cache whole
    observes_prefill: bool = False
    masking: bool = False  # masks keys per head but frees no memory (AdaKV, DuoAttention in kvpress)
    quantization: str | None = None  # KV quantization the method itself stands for (`int8`, `int4`)
    # params -> attention the model needs, for wrappers whose need depends on the wrapped press
    attn_for: Callable[[dict[str, Any]], str | None] | None = None
    # params -> None, or raise ValueError("<param>: what is wrong") for values no schema can check
    check_values: Callable[[dict[str, Any]], None] | None = None
    # Prefill-invariant: the press compresses each layer in kvpress's forward hook, after the layer attended over the
    # whole context, from what the hook is given (hidden states, keys, values, attention weights, the forward's
    # kwargs); nothing it does changes later layers. Its cache can then be derived from a prefill shared with other
    # variants (kvstudy.engine). False for a press that chunks the prefill or re-runs the model: it prefills alone.
    shares_prefill: bool = True
    # params -> what the prefill compression reads (or one Reads for every variant)
    reads: Reads | Callable[[dict[str, Any]], Reads] = Reads()
    # takes `cache_size` (tokens kept per layer) instead of `compression_ratio`: a kvpress ScorerPress at prefill
    # (kvstudy.presses.budget)
    sizes: bool = False

    def attention(self, params: dict[str, Any]) -> str | None:
        """Attention implementation this variant needs (None: whatever the model config says)."""
        return self.attn_for({**self.defaults, **params}) if self.attn_for else self.attn_implementation

    def prefill_reads(self, params: dict[str, Any]) -> Reads:
        """What this variant's prefill compression reads (nothing for a press that does not compress at prefill)."""
        if self.factory is None or not (self.phase == "prefill" or self.observes_prefill):
            return NOTHING
        return self.reads({**self.defaults, **params}) if callable(self.reads) else self.reads

    def check(self, params: dict[str, Any]) -> None:
        """Raise ValueError naming the first parameter this press does not take."""
        unknown = (set(params) - set(self.defaults) - ({"compression_ratio"} if self.has_ratio else set())
                   - ({"cache_size"} if self.sizes else set()))
        if unknown:
            raise ValueError(f"press {self.name!r} has no parameter {sorted(unknown)[0]!r}")
        if self.check_values:
            self.check_values({**self.defaults, **params})

    def build(self, params: dict[str, Any]):
        self.check(params)
        if self.factory is None:
            return None
        size = params.get("cache_size")
        press = self.factory(**{**self.defaults, **{k: v for k, v in params.items() if k != "cache_size"}})
        if size is None:
            return press
        from kvstudy.presses.budget import with_cache_size

        return with_cache_size(press, size)


PRESSES: dict[str, PressSpec] = {}
# Options every press variant accepts (not passed to the press): see kvstudy.presses.variant
VARIANT_OPTIONS: dict[str, Any] = {"query_aware": False, "quantization": None}
QUANTIZATIONS = ("int8", "int4", "int2")


def register(spec: PressSpec) -> PressSpec:
    PRESSES[spec.name] = spec
    return spec


def get_press(name: str) -> PressSpec:
    if name not in PRESSES:
        raise KeyError(f"unknown press {name!r}; registered: {', '.join(PRESSES)}")
    return PRESSES[name]


register(PressSpec("no_press", "full KV cache (the baseline)", None, has_ratio=False))
for _module in ("kvpress_backed", "adakv", "duo", "decoding", "cab", "quantized", "h2o", "cab_accumulated"):
    importlib.import_module(f"kvstudy.presses.{_module}")
