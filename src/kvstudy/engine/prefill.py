"""One sample's prefill, and each press variant's cache from it.

`OwnPrefill`: every variant prefills the tokens itself, under its press (kvpress compresses each layer in the layer's
forward hook, as soon as the layer has attended over the whole context). A one-variant job does this.

`SharedPrefill`: the tokens are prefilled once, uncompressed, into the model's own cache, while a forward hook on each
full-attention layer keeps what that layer's forward gave kvpress's hook (the forward's kwargs: position embeddings,
cache positions, mask; of the hidden states and attention weights only what the class's presses read,
`kvstudy.presses.Reads`). A variant's cache is then derived from it: a new cache of the variant's kind whose
full-attention layers get the shared keys and values through the same `update` the prefill makes (a quantized layer
quantizes them), then the press's own forward hook runs on each of them with what its forward gave. Sliding-window
layers are the shared ones (no press touches them). A press is prefill-invariant when that equals its own prefill:
its hook acts after the layer's attention, and the next layer reads the layer's output, never the compressed cache.
tests/test_engine.py proves it, bit for bit, for every registered press.

Derived caches share tensors with the shared cache until they replace them: every cache update here and in
transformers assigns new tensors (`torch.cat`, kvpress's gather), none writes in place.

Written here because kvpress applies a press only inside the forward that fills the cache.
"""

from __future__ import annotations

import copy

import torch

from kvstudy.models import layout
from kvstudy.presses import Reads
from kvstudy.presses.adapter import hook_kwargs
from kvstudy.presses.cache import _DynamicCache, layer_kinds, make_cache


def attention_modules(model) -> list[torch.nn.Module]:
    return layout.attention_modules(model)


def reset_masks(model) -> None:
    """Forget the keys a masking press (AdaKV, DuoAttention) masked for the previous variant."""
    for module in attention_modules(model):
        if getattr(module, "masked_key_indices", None) is not None:
            module.masked_key_indices = None


def union(reads: list[Reads]) -> Reads:
    """What a class of variants reads: the longest tail of hidden states (None: all) and any attention weights."""
    tails = [r.hidden_states for r in reads]
    return Reads(None if None in tails else max(tails, default=0), any(r.attentions for r in reads))


class OwnPrefill:
    """The prefill of `ids` that each variant makes for itself, under its press."""

    shared_by = 1

    def __init__(self, model, ids: list[int], clock):
        self.model, self.ids, self.clock = model, torch.tensor([ids], device=model.device), clock

    def __len__(self) -> int:
        return self.ids.shape[1]

    @torch.no_grad()
    def cache_for(self, run) -> tuple[object, dict]:
        """(the variant's cache, its timing: the prefill with the press acting inside it)."""
        reset_masks(self.model)
        cache = run.new_cache(self.model)
        t0 = self.clock.now()
        with run.prefill(self.model, cache):
            layout.body(self.model)(input_ids=self.ids, past_key_values=cache)
        return cache, {"prefill_seconds": self.clock.now() - t0, "compress_seconds": None, "prefill_shared_by": 1}

    @torch.no_grad()
    def full(self):
        """The uncompressed, full-precision cache of the tokens (a reference the caller may feed); not timed."""
        cache = make_cache(self.model.config)
        layout.body(self.model)(input_ids=self.ids, past_key_values=cache)
        return cache


class SharedPrefill:
    """One uncompressed prefill of `ids` for `shared_by` variants of a prefill class that read `reads`."""

    def __init__(self, model, ids: list[int], reads: Reads, clock, shared_by: int):
        self.model, self.clock, self.shared_by, self.reads = model, clock, shared_by, reads
        self.layers: dict[int, tuple] = {}  # layer -> (forward kwargs, kept hidden states, hidden shape, weights)
        modules = attention_modules(model)
        full = [i for i, kind in enumerate(layer_kinds(model.config)) if kind == "full"]
        hooks = [modules[i].register_forward_hook(self._keep, with_kwargs=True) for i in full]
        self.cache = make_cache(model.config)
        reset_masks(model)
        try:
            t0 = clock.now()
            with torch.no_grad():
                layout.body(model)(input_ids=torch.tensor([ids], device=model.device), past_key_values=self.cache)
            self.seconds = clock.now() - t0
        finally:
            for h in hooks:
                h.remove()
        self.n = len(ids)

    def __len__(self) -> int:
        return self.n

    def _keep(self, module, args, kwargs, output):
        kwargs = hook_kwargs(args, kwargs)  # kvpress's names (GPT-NeoX passes the hidden states positionally)
        h, tail = kwargs["hidden_states"], self.reads.hidden_states
        if tail is None or tail >= h.shape[1]:
            kept = h  # a fresh tensor per layer (the layer norm's output): kept as it is
        else:  # a copy of the tail, so the whole tensor is freed
            kept = h[:, -tail:].clone() if tail > 0 else None
        kwargs = {k: v for k, v in kwargs.items() if k not in ("hidden_states", "past_key_values")}
        weights = output[1] if self.reads.attentions else None
        self.layers[module.layer_idx] = (kwargs, kept, (h.shape, h.dtype, h.device), weights)

    @torch.no_grad()
    def cache_for(self, run) -> tuple[object, dict]:
        """(the variant's cache derived from the shared prefill, its timing: the shared prefill's, and this
        variant's compression apart)."""
        t0 = self.clock.now()
        reset_masks(self.model)
        cache = self._filled(run)
        if run.at_prefill:
            self._compress(run, cache)
        times = {"prefill_seconds": self.seconds, "compress_seconds": self.clock.now() - t0,
                 "prefill_shared_by": self.shared_by}
        return cache, times

    def _filled(self, run):
        """A new cache of the variant's kind holding the shared prefill's keys and values."""
        cache = run.new_cache(self.model)
        for i, (mine, shared) in enumerate(zip(cache.layers, self.cache.layers)):
            if type(mine) is type(shared):  # full precision, or a sliding window: the same state, shared tensors
                cache.layers[i] = copy.copy(shared)
            else:  # a quantized full layer quantizes what the prefill stored, as the prefill's update does
                mine.update(shared.keys, shared.values)
        return cache

    def _compress(self, run, cache) -> None:
        """The press's own forward hook on each full-attention layer, given what that layer's forward gave."""
        need, modules = run.prefill_reads(), attention_modules(self.model)
        with run.prefill(self.model, cache):
            for i in sorted(self.layers):
                kwargs, kept, (shape, dtype, device), weights = self.layers[i]
                hidden = _hidden(kept, shape, dtype, device, need.hidden_states)
                kwargs = {**kwargs, "hidden_states": hidden, "past_key_values": cache}
                run.press.forward_hook(modules[i], (), kwargs, (None, weights if need.attentions else None))

    def full(self):
        """The shared, uncompressed cache as a new cache the caller may feed (it never changes the shared one)."""
        return _DynamicCache([copy.copy(layer) for layer in self.cache.layers])


def _hidden(kept, shape, dtype, device, tail: int | None) -> torch.Tensor:
    """Hidden states of the whole context's shape holding what was kept of them: the kept tail after zeros, or
    zeros (a broadcast view, no memory) for a press that reads none. A press reading more than it declared would
    see zeros and compress differently: the invariance test would fail."""
    if kept is not None and kept.shape[1] == shape[1]:
        return kept
    if kept is None or tail == 0:
        return torch.zeros((), dtype=dtype, device=device).expand(shape)
    out = torch.zeros(shape, dtype=dtype, device=device)
    out[:, -kept.shape[1]:] = kept
    return out
