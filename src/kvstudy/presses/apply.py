"""How a kvpress press is applied to a model here: `applied(press, model, cache)` instead of `press(model)`.

kvpress hooks every attention layer; here its hook acts only
- on **full-attention layers**: a sliding-window layer keeps the model's own window (`kvstudy.presses.cache`,
  README "Presses"). The cache says which layer is which, so the rule holds for any architecture; kvpress itself
  skips sliding layers for `Gemma3ForConditionalGeneration` only;
- on **the job's cache** when one is given: a second cache fed while the press is active (perplexity's
  uncompressed reference, fed in lockstep) is never compressed nor counted as a decoding step.

On a model not laid out like Llama (GPT-NeoX) kvpress is given `kvstudy.presses.adapter`'s view of it: the hook
sees the attention module and its kwargs under Llama's names.

And where a model's rotary embedding is per layer type (Gemma3: local and global layers have their own RoPE base),
the `rotary_emb` kvpress attaches to each attention layer (used by ExpectedAttention) gets the layer's type bound.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from kvstudy.models import layout
from kvstudy.presses.adapter import attention_view, hook_kwargs, model_view


@contextlib.contextmanager
def applied(press, model, cache=None):
    hook = press.forward_hook

    def forward_hook(module, args, kwargs, output):
        kwargs = hook_kwargs(args, kwargs)
        past = kwargs.get("past_key_values")
        if past is None or (cache is not None and past is not cache):
            return output
        if getattr(past.layers[module.layer_idx], "is_sliding", False):
            return output
        return hook(attention_view(module), args, kwargs, output)

    press.forward_hook = forward_hook  # kvpress registers `self.forward_hook` when entered
    try:
        with press(model_view(model)):
            _bind_layer_types(model)
            yield
    finally:
        del press.forward_hook


class _TypedRotary(torch.nn.Module):
    def __init__(self, rotary, layer_type: str):
        super().__init__()
        self.rotary, self.layer_type = rotary, layer_type

    def forward(self, x, position_ids):
        return self.rotary(x, position_ids, layer_type=self.layer_type)


def _bind_layer_types(model) -> None:
    rotary = layout.rotary(model)
    if rotary is None or "layer_type" not in inspect.signature(rotary.forward).parameters:
        return
    types = model.config.get_text_config(decoder=True).layer_types
    for attn, layer_type in zip(layout.attention_modules(model), types):
        attn.rotary_emb = _TypedRotary(rotary, layer_type)
