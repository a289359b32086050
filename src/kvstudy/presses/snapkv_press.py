"""SnapKV (kvpress `SnapKVPress`) with a choice of pooling: `avgpool` (kvpress's) or `maxpool`.

SnapKV smooths each key's attention from the last window's queries with a 1-D pooling before keeping the top
tokens. kvpress pools with an average kernel only; the original implementation (KVCache-Factory's
`SnapKVCluster`/`PyramidKVCluster`, which the HELMET workshop log swept) also offers max pooling. kvpress's
`score` calls `F.avg_pool1d` inline, so the score is written out here, line for line kvpress's but for the pooling
call (`tests/test_presses.py` checks `avgpool` gives kvpress's scores exactly), its window attention the model's own
RoPE, whole-head or partial (`partial_rope.py`). PyramidKV scores the same way
(`pyramid_press.py` takes this score).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kvpress import SnapKVPress
from torch.nn import functional as F

from kvstudy.presses import check_pooling
from kvstudy.presses.partial_rope import window_attention


def pooled_score(press, module, hidden_states, keys, values, attentions, kwargs) -> torch.Tensor:
    """kvpress's `SnapKVPress.score` with `press.pooling` choosing the 1-D pooling of the window's attention."""
    bsz, num_key_value_heads, k_len, _ = keys.shape
    groups = module.config.num_attention_heads // num_key_value_heads
    w = press.window_size
    if hidden_states.shape[1] <= w:
        raise ValueError(f"window_size: {w} is not below the {hidden_states.shape[1]} prefilled tokens")
    if attentions is not None:
        weights = attentions[..., -w:, :-w]
    else:
        weights = window_attention(module, hidden_states, keys, w, kwargs["position_embeddings"])
    scores = weights.mean(dim=-2)
    pool = F.max_pool1d if press.pooling == "maxpool" else F.avg_pool1d
    scores = pool(scores, kernel_size=press.kernel_size, padding=press.kernel_size // 2, stride=1)
    scores = scores.view(bsz, num_key_value_heads, groups, k_len - w).mean(2)
    return F.pad(scores, (0, w), value=scores.max().item() + 1)  # the window itself is always kept


@dataclass
class Pooled:
    """The `pooling` field and `pooled_score`, mixed in before a kvpress SnapKV-scored press (SnapKV, PyramidKV)."""

    pooling: str = "avgpool"

    def __post_init__(self):
        super().__post_init__()
        check_pooling(self.pooling)

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        return pooled_score(self, module, hidden_states, keys, values, attentions, kwargs)


@dataclass
class PooledSnapKVPress(Pooled, SnapKVPress):
    pass
