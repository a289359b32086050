"""Eviction while generating by attention *accumulated* over every query so far: what `h2o` and `cab_accumulated`
share (a kvpress `BasePress` whose hook keeps per-head scores across forwards).

H2O (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models")
scores each cached token by the attention it has received from every query since it entered the cache, prefill
and decoding, per head, and evicts the lowest-scoring tokens outside a recent window; a token's score leaves with
it. kvpress's `DecodingPress` cannot express this: its scorer sees only the queries buffered since the last
eviction (with `compression_interval: 1`, the newest token alone) and keeps no score across evictions. So this
press keeps, per layer and KV head, for every cached entry:
- `scores`: attention received, summed over every observed query and averaged over the KV group's query heads;
- `seen`: how many observed queries could see it (CAB's importance is `scores / seen`, `cab_press`);
- `positions`: the token's position (what is recent; whether the entry before it is its predecessor).

It observes every forward of the job's cache on full-attention layers (`kvstudy.presses.apply`):
- the prefill (so the press is entered for the prefill too: `PressSpec.observes_prefill`): the context's scores
  from every context query; the cache is left whole, as with kvstudy's other decoding presses;
- each later forward (the question, each answer or continuation token): its queries' attention over the cache is
  added (new entries start at 0), and every `compression_interval` forwards each KV head's cache is cut to
  `int(tokens_seen * (1 - compression_ratio))` entries (kvpress's `CompressionRatioDecodingPress` budget, so
  `decoding` and these presses hold the same number of tokens), the subclass's `keep` choosing which. Kept entries
  stay in their order, so the cache's tail is its most recent tokens.

The attention weights are the layer's under eager attention; under SDPA (no weights) its queries' attention is
recomputed from the hidden states (`cab_press.received_attention`), so these presses run on the dense baseline's
kernel. The scores add 3 numbers per cached entry and KV head beside the 2 x head_dim of its key and value; they
are not counted in `kv_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from kvpress.presses.base_press import BasePress, is_prefilling
from kvpress.utils import extract_keys_and_values

from kvstudy.presses.cab_press import received_attention, seen_by


@dataclass
class Accumulated:
    """One layer's accumulated state, (batch, kv_heads, entries) each, aligned with the layer's cache."""

    scores: torch.Tensor
    seen: torch.Tensor
    positions: torch.Tensor

    def __len__(self) -> int:
        return self.scores.shape[-1]

    def grown(self, new: "Accumulated") -> "Accumulated":
        """The state after a forward: `new` holds this forward's received attention over every entry (old ones
        first) and its own entries' seen counts and positions; old entries were seen by all its queries."""
        q_len = len(new) - len(self)
        return Accumulated(new.scores + _pad(self.scores, q_len), new.seen + _pad(self.seen, q_len),
                           torch.cat([self.positions, new.positions[..., len(self):]], -1))

    def gather(self, idx: torch.Tensor) -> "Accumulated":
        return Accumulated(*(t.gather(-1, idx) for t in (self.scores, self.seen, self.positions)))


def _pad(t: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, n))


@dataclass
class AccumulatedAttentionPress(BasePress):
    """Subclasses define `keep(state, n_kept) -> (batch, kv_heads, n_kept)` indices of the entries to keep."""

    compression_ratio: float = 0.0
    compression_interval: int = 1
    state: dict = field(default_factory=dict, init=False, repr=False)  # layer -> Accumulated
    steps: dict = field(default_factory=dict, init=False, repr=False)  # layer -> forwards since the last eviction

    def __post_init__(self):
        assert 0 <= self.compression_ratio < 1, "compression_ratio must be in [0, 1)"
        assert self.compression_interval >= 1, "compression_interval must be >= 1"

    def keep(self, state: Accumulated, n_kept: int) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, module, kwargs, keys, attentions) -> Accumulated:
        """This forward's received attention over the layer's `keys`, per KV head, with its entries' counts."""
        hidden = kwargs["hidden_states"]
        bsz, n_kv, k_len, _ = keys.shape
        q_len = hidden.shape[1]
        received = received_attention(module, hidden, keys, attentions, kwargs).view(bsz, n_kv, -1, k_len).mean(2)
        seen = seen_by(k_len, q_len, keys.device).expand(bsz, n_kv, -1)
        pos = kwargs.get("position_ids")
        pos = kwargs["cache_position"][None].expand(bsz, -1) if pos is None else pos
        pos = pos[:, None, :].expand(bsz, n_kv, -1).to(keys.device)  # new entries only
        return Accumulated(received, seen, torch.nn.functional.pad(pos, (k_len - q_len, 0)))

    def forward_hook(self, module, input, kwargs, output):
        cache, layer = kwargs["past_key_values"], module.layer_idx
        q_len = kwargs["hidden_states"].shape[1]
        keys, values = extract_keys_and_values(cache, layer)
        new = self.observe(module, kwargs, keys, output[1] if len(output) > 1 else None)
        if is_prefilling(kwargs["cache_position"], q_len):
            self.state[layer], self.steps[layer] = new, 0
            return output
        old = self.state.get(layer)
        if old is None or len(old) + q_len != keys.shape[2]:
            raise RuntimeError(
                f"{type(self).__name__}: layer {layer} holds {keys.shape[2]} entries, the press has scores for "
                f"{0 if old is None else len(old)} + {q_len} new: it did not observe every forward of this cache "
                f"(a press that accumulates attention must be entered for the prefill too)")
        state = old.grown(new)
        self.steps[layer] += 1
        n_kept = max(1, int((int(state.positions.max()) + 1) * (1 - self.compression_ratio)))
        if self.steps[layer] >= self.compression_interval:
            self.steps[layer] = 0
            if n_kept < len(state):
                idx = self.keep(state, n_kept).sort(-1).values  # the cache stays in token order
                state = state.gather(idx)
                idx = idx[..., None].expand(-1, -1, -1, keys.shape[-1])
                cache.layers[layer].keys = keys.gather(2, idx).contiguous()
                cache.layers[layer].values = values.gather(2, idx).contiguous()
        self.state[layer] = state
        return output
