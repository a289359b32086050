"""Where a causal LM keeps what kvstudy (and kvpress) reach into: the decoder body, each layer's attention module,
the rotary embedding, each attention's output projection, and how the model rotates queries and keys.

Llama-like models (Llama, Mistral, Phi3, Qwen2/3, the shipped tiny model; Gemma3's text decoder behind
`model.model.language_model`) keep them at `model.model.layers[i].self_attn` (`o_proj`) and
`model.model.rotary_emb`; GPT-NeoX (Pythia) at `model.gpt_neox.layers[i].attention` (`dense`) and
`model.gpt_neox.rotary_emb`, with a fused `query_key_value` projection and RoPE over the first `rotary_pct` of
each head only. Every other module asks here, so adding an architecture is one entry in `LAYOUTS` (and, if its
attention differs from Llama's, an adapter in `kvstudy.presses.adapter`).

Imports nothing heavy: the DAG and config validation import kvstudy modules that import this one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    body: str  # attribute of the causal LM holding the decoder body (called for a prefill without logits)
    attention: str  # attribute of a decoder layer holding its attention module
    out_proj: str  # attribute of an attention module holding its output projection (input: heads concatenated)


LLAMA = Layout("model", "self_attn", "o_proj")
LAYOUTS = {"gpt_neox": Layout("gpt_neox", "attention", "dense")}  # config.model_type -> layout; else LLAMA


def layout(model) -> Layout:
    return LAYOUTS.get(getattr(model.config, "model_type", None), LLAMA)


def is_llama_like(model) -> bool:
    """Whether kvpress's own layout assumptions (`model.model.layers[i].self_attn`, Llama's names inside the
    attention module, hook kwargs by name) hold for `model`."""
    return layout(model) is LLAMA


def body(model):
    """The decoder body: `body(model)(input_ids=..., past_key_values=cache)` fills the cache without computing
    logits (a prefill needs none)."""
    return getattr(model, layout(model).body)


def text_decoder(model):
    """The module holding the decoder layers and the rotary embedding (Gemma3's language model, else the body)."""
    b = body(model)
    return b.language_model if hasattr(b, "language_model") else b


def layers(model) -> list:
    return list(text_decoder(model).layers)


def attention_modules(model) -> list:
    """Each decoder layer's attention module, in layer order (kvpress's hooks and masks live on these)."""
    name = layout(model).attention
    return [getattr(layer, name) for layer in layers(model)]


def out_projs(model) -> list:
    """Each layer's attention output projection, whose input is the heads' outputs concatenated."""
    name = layout(model).out_proj
    return [getattr(attn, name) for attn in attention_modules(model)]


def rotary(model):
    """The model's rotary embedding module (None if it has none)."""
    return getattr(text_decoder(model), "rotary_emb", None)


def kv_heads(config) -> int:
    """KV heads per layer: `num_key_value_heads`, or every attention head where the config has no such field
    (GPT-NeoX: multi-head attention)."""
    c = config.get_text_config(decoder=True)
    return getattr(c, "num_key_value_heads", None) or c.num_attention_heads


def head_dim(config) -> int:
    c = config.get_text_config(decoder=True)
    return getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads


def rotate_half(x):
    """Llama's `rotate_half` (transformers'): (x1, x2) -> (-x2, x1) over the last dimension."""
    import torch

    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin):
    """`x` (batch, heads, positions, head_dim) rotated as the model rotates queries and keys, given its rotary
    embedding's `cos`/`sin` (already broadcastable over heads). RoPE over the whole head when `cos` is as wide as
    the head (exactly Llama's arithmetic, so presses score bit for bit as kvpress's code does); over the first
    `cos.shape[-1]` dimensions only, the rest passed through, when it is narrower (GPT-NeoX's `rotary_pct`)."""
    import torch

    r = cos.shape[-1]
    if r == x.shape[-1]:
        return (x * cos) + (rotate_half(x) * sin)
    rot, rest = x[..., :r], x[..., r:]
    return torch.cat(((rot * cos) + (rotate_half(rot) * sin), rest), dim=-1)
