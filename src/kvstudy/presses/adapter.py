"""kvpress's view of a model that is not laid out like Llama (GPT-NeoX): what its presses read, under Llama's names.

kvpress reaches into a model in three places, all written for Llama's layout (`kvstudy.models.layout`):
- `BasePress.__call__` hooks `model.model.layers[i].self_attn` and gives each `rotary_emb`: `model_view(model)`
  answers those two names from the layout (everything else is the model's own, so `press(view)` is kvpress's
  own entry, with any press's override of it, e.g. `DecodingPress` resetting its buffers on exit);
- the hook reads `kwargs["hidden_states"]` and `kwargs["past_key_values"]`: GPT-NeoX's layer passes the hidden
  states positionally and the cache as `layer_past`; `hook_kwargs` renames them;
- scorer presses read the attention module as Llama's: `head_dim`, `q_proj`/`k_proj`, `config.num_key_value_heads`
  (`kvpress.utils.get_prerope_query_states`, SnapKV's window attention, ExpectedAttention). `attention_view`
  gives GPT-NeoX's attention those names: projections sliced from the fused `query_key_value` (per head: query,
  key, value), `o_proj` its `dense`, as many KV heads as heads. Attributes a press sets (AdaKV's and
  DuoAttention's `masked_key_indices`) land on the module itself, where the attention function reads them.

RoPE over part of each head (GPT-NeoX's `rotary_pct`) is handled where queries are rotated
(`kvstudy.models.layout.apply_rope`, `kvstudy.presses.partial_rope`). For Llama-like models every function here
returns its argument unchanged: nothing about them changes. Written here because kvpress supports Llama-like
layouts only.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch

from kvstudy.models import layout


def model_view(model):
    """What `kvpress.BasePress.__call__` is given: the model itself when Llama-like, else `_ModelView`."""
    if layout.is_llama_like(model):
        return model
    _quiet_untested_warning()
    return _ModelView(model)


def _quiet_untested_warning() -> None:
    """kvpress warns "Model <class ...> not tested" at every entry of a press: on a view it would name the view, once
    per sample. kvstudy tests these architectures itself (tests/test_architectures.py), so that line is dropped."""
    logger = logging.getLogger("kvpress.presses.base_press")
    if not any(isinstance(f, _NotTheView) for f in logger.filters):
        logger.addFilter(_NotTheView())


class _NotTheView(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "_ModelView" not in record.getMessage()


def unwrap(model):
    """The model behind a `model_view` (a press's `post_init_from_model` receives the view)."""
    return getattr(model, "wrapped_model", model)


def hook_kwargs(args: tuple, kwargs: dict) -> dict:
    """An attention forward's kwargs as kvpress's hook reads them (`hidden_states`, `past_key_values` by name);
    the same dict when they already are."""
    if "hidden_states" in kwargs and "layer_past" not in kwargs:
        return kwargs
    out = {k: v for k, v in kwargs.items() if k != "layer_past"}
    if "hidden_states" not in out:
        out["hidden_states"] = args[0]
    out.setdefault("past_key_values", kwargs.get("layer_past"))
    return out


def attention_view(module):
    """The attention module as kvpress's presses read it (Llama's names)."""
    return _GPTNeoXAttentionView(module) if hasattr(module, "query_key_value") else module


class _ModelView:
    """A model whose decoder layers' attention modules and rotary embedding sit where kvpress looks for them."""

    def __init__(self, model):
        self.wrapped_model = model
        layers = [SimpleNamespace(self_attn=attn) for attn in layout.attention_modules(model)]
        self.model = SimpleNamespace(layers=layers, rotary_emb=layout.rotary(model))

    def __getattr__(self, name):
        return getattr(self.wrapped_model, name)


class _FusedSlice:
    """One of query, key or value (`which`: 0, 1, 2) from a fused projection laid out per head (q, k, v), as a
    projection of its own: (..., hidden) -> (..., heads * head_dim)."""

    def __init__(self, fused: torch.nn.Linear, which: int, heads: int, head_dim: int):
        self.fused, self.which, self.heads, self.head_dim = fused, which, heads, head_dim

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        d = self.head_dim
        qkv = self.fused(hidden).view(*hidden.shape[:-1], self.heads, 3 * d)
        return qkv[..., self.which * d:(self.which + 1) * d].reshape(*hidden.shape[:-1], self.heads * d)


class _ConfigView:
    """The model's config with the fields kvpress reads that GPT-NeoX's config lacks."""

    def __init__(self, config, **fields):
        self.__dict__.update(fields, _config=config)

    def __getattr__(self, name):
        return getattr(self._config, name)


class _GPTNeoXAttentionView:
    """GPT-NeoX attention under Llama's names; reads and writes of anything else go to the module."""

    def __init__(self, module):
        heads, d = module.config.num_attention_heads, module.head_size
        own = {"head_dim": d, "num_key_value_heads": heads, "num_key_value_groups": 1, "o_proj": module.dense,
               "config": _ConfigView(module.config, num_key_value_heads=heads, head_dim=d),
               **{name: _FusedSlice(module.query_key_value, i, heads, d)
                  for i, name in enumerate(("q_proj", "k_proj", "v_proj"))}}
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_own", own)

    def __getattr__(self, name):
        own = object.__getattribute__(self, "_own")
        return own[name] if name in own else getattr(object.__getattribute__(self, "_module"), name)

    def __setattr__(self, name, value):
        setattr(self._module, name, value)
