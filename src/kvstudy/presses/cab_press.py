"""CAB: a budget split into a local window, bridge tokens and heavy hitters (our own kvpress `ScorerPress`).

Of the `n_kept = int(k_len * (1 - compression_ratio))` entries each KV head keeps (kvpress's rule):
- **local** (`local_fraction`, default 30%): the most recent `round(0.3 * n_kept)` positions;
- **importance** (the rest, default 50%): the positions with the highest cumulative attention, i.e. the mean
  attention weight a position received from every query that could see it during the forward being compressed
  (kvpress's H2O normalisation, `ObservedAttentionPress`), averaged over the query heads of the KV group;
- **bridges** (`bridge_fraction`, default 20%): a *bridge token* is the position immediately before a heavy
  hitter (`i - 1` for a kept heavy hitter `i`), taken in the heavy hitters' rank order, skipping positions already
  kept. Why: attention concentrates on one token of a multi-token unit, usually its last one (the key of a
  value-first `v k` pair, the final piece of a word, the token after which a previous-token head has copied its
  predecessor in). Eviction by attention keeps that token and drops its neighbour, cutting the unit in two; the
  bridge keeps the token that links the heavy hitter to what it stands for, so the unit survives whole. When
  fewer bridges exist than the share allows (heavy hitters at position 0, adjacent heavy hitters), the rest of
  the share goes to the next heavy hitters, so the cache always holds exactly `n_kept` entries.

The press only returns scores (selected positions score above every other one, in the order local > heavy >
bridge, and the unselected keep their attention score), so kvpress's `ScorerPress.compress` does the eviction and
every kvpress wrapper (`DecodingPress` for eviction during generation, `AdaKVPress`) can use it. With eager
attention the observed weights are used; otherwise the attention of the forward's queries is recomputed here in
chunks (post-RoPE queries from kvpress's helper, as SnapKV does for its window), because SDPA returns no weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kvpress import ScorerPress
from kvpress.utils import compute_n_kept, get_prerope_query_states

from kvstudy.models.layout import apply_rope

_CHUNK = 512  # queries per chunk when recomputing attention: bounds the (heads, chunk, k_len) buffer


def received_attention(module, hidden_states, keys, attentions, kwargs) -> torch.Tensor:
    """(batch, query heads, k_len): the attention each cached position received, summed over the queries of this
    forward (the last `q_len` positions: the whole context at prefill, the newest tokens during decoding).

    Under eager attention the layer's weights; otherwise (SDPA returns none) recomputed in chunks from the post-RoPE
    queries, causally masked, the layer's scaling (Gemma3 scales by query_pre_attn_scalar)."""
    bsz, n_kv, k_len, head_dim = keys.shape
    if attentions is not None:
        return attentions.float().sum(2)
    q = get_prerope_query_states(module, hidden_states)  # (b, heads, q_len, d)
    cos, sin = kwargs["position_embeddings"]
    q = apply_rope(q, cos.unsqueeze(1), sin.unsqueeze(1))  # the model's RoPE, whole-head or partial (GPT-NeoX)
    q_len, groups = q.shape[2], q.shape[1] // n_kv
    scale = getattr(module, "scaling", head_dim**-0.5)
    k = keys.repeat_interleave(groups, dim=1).float()
    received = torch.zeros(bsz, q.shape[1], k_len, device=keys.device)
    for start in range(0, q_len, _CHUNK):
        qc = q[:, :, start:start + _CHUNK].float()
        w = qc @ k.transpose(2, 3) * scale
        qpos = torch.arange(start, start + qc.shape[2], device=keys.device) + (k_len - q_len)
        w = w.masked_fill(torch.arange(k_len, device=keys.device)[None, :] > qpos[:, None], float("-inf"))
        received += w.softmax(-1).sum(2)
    return received


def seen_by(k_len: int, q_len: int, device) -> torch.Tensor:
    """(k_len,): how many of a forward's `q_len` queries (at positions k_len - q_len ... k_len - 1) see each key."""
    return (k_len - torch.clamp(torch.arange(k_len, device=device), min=k_len - q_len)).float()


def mean_received_attention(module, hidden_states, keys, attentions, kwargs) -> torch.Tensor:
    """(batch, kv_heads, k_len): mean attention each position got from the queries of this forward that see it,
    averaged over the query heads of each KV group."""
    bsz, n_kv, k_len, _ = keys.shape
    received = received_attention(module, hidden_states, keys, attentions, kwargs)
    q_len = attentions.shape[2] if attentions is not None else hidden_states.shape[1]
    scores = received / seen_by(k_len, q_len, keys.device)
    return scores.view(bsz, n_kv, -1, k_len).mean(2)


def select(importance: torch.Tensor, n_kept: int, local_fraction: float, bridge_fraction: float,
           adjacent: torch.Tensor | None = None) -> torch.Tensor:
    """Scores (same shape as `importance`, one row per head) whose top `n_kept` are CAB's selection.

    `adjacent` (bool, same shape): whether entry `i - 1` holds token `i`'s predecessor; a cache already evicted
    from (`cab_accumulated`) has gaps, and an entry across a gap is no bridge. None: every entry is (a prefill)."""
    k_len = importance.shape[-1]
    n_local = min(round(local_fraction * n_kept), n_kept)
    n_bridge = min(round(bridge_fraction * n_kept), n_kept - n_local)
    n_heavy = n_kept - n_local - n_bridge
    out = importance.clone().float().clamp(0, 1)
    flat, rows = out.view(-1, k_len), importance.reshape(-1, k_len).float()
    local = torch.arange(k_len - n_local, k_len, device=out.device)
    for r in range(flat.shape[0]):  # one row per (batch, KV head): a handful
        kept = torch.zeros(k_len, dtype=torch.bool, device=out.device)
        kept[local] = True
        order = torch.argsort(rows[r, : k_len - n_local], descending=True, stable=True)
        heavy, rest = order[:n_heavy], order[n_heavy:]
        kept[heavy] = True
        # predecessors of distinct heavy hitters are distinct: no de-duplication needed
        linked = heavy >= 1
        if adjacent is not None:
            linked &= adjacent.reshape(-1, k_len)[r, heavy]
        pred = heavy[linked] - 1
        bridges = pred[~kept[pred]][:n_bridge]
        kept[bridges] = True
        filler = rest[~kept[rest]][: n_bridge - len(bridges)]  # too few bridges: the next heavy hitters
        flat[r, local] = 4.0
        flat[r, heavy] = 3.0
        flat[r, torch.cat([bridges, filler])] = 2.0
    return out


@dataclass
class CABPress(ScorerPress):
    compression_ratio: float = 0.0
    local_fraction: float = 0.3
    bridge_fraction: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        lf, bf = self.local_fraction, self.bridge_fraction
        assert 0 <= lf and 0 <= bf and lf + bf <= 1, "local_fraction and bridge_fraction must sum to at most 1"

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        importance = mean_received_attention(module, hidden_states, keys, attentions, kwargs)
        n_kept = compute_n_kept(keys.shape[2], self.compression_ratio)
        return select(importance, n_kept, self.local_fraction, self.bridge_fraction)
