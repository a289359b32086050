"""kvpress's query-rotating scores with the model's own RoPE, whether it covers the whole head or part of it.

Three kvpress scores rotate queries themselves, assuming RoPE over the whole head (Llama's `rotate_half` over
`head_dim`): SnapKV's window attention (`SnapKVPress.compute_window_attention`, which TOVA under SDPA and
PyramidKV use too) and ExpectedAttention's averaged rotation (`apply_avg_rope`). GPT-NeoX (Pythia) rotates only
the first `rotary_pct` of each head (its rotary embedding's cos/sin are that narrow): kvpress's code fails on it
(shapes) and no renaming of the module can fix that (its `rotate_half` pairs dimension i with i + head_dim/2).
Here they rotate as `kvstudy.models.layout.apply_rope` does: exactly kvpress's arithmetic when RoPE covers the
head (so scores on Llama-like models are kvpress's bit for bit: tests/test_presses.py), the rotated part only,
the rest passed through, when it covers part of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kvpress import ExpectedAttentionPress, TOVAPress
from kvpress.utils import get_prerope_query_states
from torch import nn
from torch.nn import functional as F
from transformers.models.llama.modeling_llama import repeat_kv

from kvstudy.models.layout import apply_rope


def window_attention(module, hidden_states, keys, window_size: int, position_embeddings) -> torch.Tensor:
    """kvpress's `SnapKVPress.compute_window_attention`, line for line, queries rotated by `apply_rope`: the last
    `window_size` queries' attention weights over the keys before the window."""
    bsz, _, k_len, _ = keys.shape
    num_key_value_groups = module.config.num_attention_heads // module.config.num_key_value_heads
    query_states = get_prerope_query_states(module, hidden_states[:, -window_size:])
    cos, sin = position_embeddings
    cos, sin = cos[:, -window_size:], sin[:, -window_size:]
    query_states = apply_rope(query_states, cos.unsqueeze(1), sin.unsqueeze(1))
    key_states = repeat_kv(keys, num_key_value_groups)
    attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(module.head_dim)
    attention_mask = torch.ones_like(attn_weights) * float("-inf")
    attention_mask = torch.triu(attention_mask, diagonal=k_len - window_size + 1)
    attn_weights += attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
    return attn_weights[..., :-window_size]


@dataclass
class RopeTOVAPress(TOVAPress):
    """kvpress's TOVA, its SDPA path (no attention weights) through `window_attention`."""

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        if attentions is not None:
            attn_weights = attentions[..., -1:, :-1]
        else:
            attn_weights = window_attention(module, hidden_states, keys, 1, kwargs["position_embeddings"])
        scores = attn_weights.mean(1).repeat(1, keys.shape[1], 1)
        return F.pad(scores, (0, 1), value=scores.max().item() + 1)


@dataclass
class RopeExpectedAttentionPress(ExpectedAttentionPress):
    """kvpress's ExpectedAttention; with RoPE over part of the head, the averaged rotation acts on that part."""

    def apply_avg_rope(self, module, mu, cov, q_len: int):
        d = module.head_dim
        position_ids = torch.arange(q_len, q_len + self.n_future_positions).unsqueeze(0).to(mu.device)
        cos, sin = module.rotary_emb(mu, position_ids)
        r = cos.shape[-1]
        if r == d:
            return super().apply_avg_rope(module, mu, cov, q_len)
        cos, sin = cos[0], sin[0]
        P = torch.zeros((r, r), device=cos.device, dtype=cos.dtype)  # rotate_half over the rotated part
        P[r // 2:, : r // 2], P[: r // 2, r // 2:] = torch.eye(r // 2), -torch.eye(r // 2)
        R = torch.eye(d, device=cos.device, dtype=cos.dtype)
        R[:r, :r] = (cos.unsqueeze(1) * torch.eye(r, device=cos.device, dtype=cos.dtype)
                     + sin.unsqueeze(1) * P).mean(dim=0)
        R = R.to(mu.device)
        mu = torch.matmul(mu, R.T)
        if cov is not None:
            cov = torch.matmul(R, torch.matmul(cov, R.T))
        return mu, cov
