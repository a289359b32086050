"""DuoAttention (kvpress `DuoAttentionPress`) with head patterns that are never downloaded.

kvpress loads DuoAttention head patterns from GitHub for six hub models, and its on-the-fly variant downloads
BookSum and the model's tokenizer. Here the patterns come from a local file named in the config
(`patterns: path/to/full_attention_heads.tsv`, the DuoAttention repo's format: one row per layer, one column per
KV head, scores in [0, 1], higher = retrieval head), or are computed on the fly (`patterns: on_the_fly`) with
kvpress's own recipe (mean query and key over sample texts, RoPE over `q_len` positions, area under the last
query's cumulative attention curve) on local text: haystack contexts from kvstudy's synthetic retrieval task,
tokenized with the model's own tokenizer. That recipe is rewritten here only because kvpress's version fetches
its data from the hub.

Streaming heads keep `sink_size` + `recent_size` tokens, retrieval heads everything; the fraction of heads made
streaming is the variant's `compression_ratio`, of the full-attention layers' KV heads (sliding-window layers keep
the model's own window: `kvstudy.presses.cache`). kvpress masks the streaming heads' other keys in attention: the
cache keeps every token and frees no memory.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from kvpress import DuoAttentionPress
from kvpress.utils import get_prerope_key_states, get_prerope_query_states

from kvstudy.models import layout
from kvstudy.presses.adapter import attention_view, unwrap
from kvstudy.presses.cache import layer_kinds


def load_patterns(path: str | Path, n_layers: int, n_kv_heads: int) -> np.ndarray:
    scores = np.loadtxt(path, dtype=float, delimiter="\t", ndmin=2)
    if scores.shape != (n_layers, n_kv_heads):
        raise ValueError(f"patterns: {path} holds {scores.shape[0]}x{scores.shape[1]} head scores, the model has "
                         f"{n_layers} layers x {n_kv_heads} KV heads")
    return np.clip(scores, 0, 1)


@lru_cache(maxsize=8)
def _on_the_fly(model, n_samples: int, q_len: int) -> np.ndarray:
    from transformers import AutoTokenizer

    from kvstudy.tasks import get_task

    tokenizer = AutoTokenizer.from_pretrained(model.config.name_or_path, local_files_only=True)  # never fetched
    texts = [s.context_ids for s in get_task("kv_retrieval", {"n_samples": n_samples}).samples(tokenizer, q_len, 12345)]
    return on_the_fly_patterns(model, texts, q_len)


@torch.no_grad()
def on_the_fly_patterns(model, texts: list[list[int]], q_len: int) -> np.ndarray:
    """kvpress's `duo_attention_on_the_fly` on the token-id sequences `texts` (layers x KV heads, in [0, 1]).
    Queries and keys come from kvpress's own helpers (fused qkv of Phi3 and GPT-NeoX, QK norm of Qwen3/Gemma3),
    RoPE from the layer's own rotary embedding (Gemma3's local and global layers differ; GPT-NeoX rotates part of
    each head: `kvstudy.models.layout.apply_rope`)."""
    cfg = model.config.get_text_config(decoder=True)
    n_kv = layout.kv_heads(cfg)
    groups = cfg.num_attention_heads // n_kv
    position_ids = torch.arange(q_len, device=model.device).unsqueeze(0)
    rotary = layout.rotary(model)
    typed = "layer_type" in inspect.signature(rotary.forward).parameters
    scores = torch.zeros(cfg.num_hidden_layers, n_kv)
    layers, attns = layout.layers(model), layout.attention_modules(model)
    for ids in texts:
        hidden = model(input_ids=torch.tensor([ids], device=model.device), output_hidden_states=True).hidden_states
        for layer_idx, h in enumerate(hidden[:-1]):
            attn = attention_view(attns[layer_idx])
            d = attn.head_dim
            h = layers[layer_idx].input_layernorm(h)
            q = get_prerope_query_states(attn, h).mean(2, keepdim=True).repeat(1, 1, q_len, 1)
            k = get_prerope_key_states(attn, h).mean(2, keepdim=True).repeat(1, 1, q_len, 1)
            kw = {"layer_type": cfg.layer_types[layer_idx]} if typed else {}
            cos, sin = (t.unsqueeze(1) for t in rotary(h, position_ids, **kw))
            q, k = layout.apply_rope(q, cos, sin), layout.apply_rope(k, cos, sin)
            k = k.repeat_interleave(groups, dim=1)
            w = (q[:, :, -1:] @ k.transpose(2, 3) / d**0.5).softmax(-1, dtype=torch.float32).squeeze()
            s = torch.cumsum(w, dim=1).mean(1).view(-1, groups).mean(1)
            scores[layer_idx] += s.cpu() / len(texts)
    return scores.numpy()


@dataclass
class LocalDuoAttentionPress(DuoAttentionPress):
    patterns: str = "on_the_fly"
    sink_size: int = 128
    recent_size: int = 256
    n_samples: int = 8
    q_len: int = 512

    def post_init_from_model(self, model):
        model = unwrap(model)  # kvpress's view of a GPT-NeoX model (kvstudy.presses.adapter)
        cfg = model.config
        if self.patterns == "on_the_fly":
            head_scores = _on_the_fly(model, self.n_samples, self.q_len)
        else:
            head_scores = load_patterns(self.patterns, cfg.num_hidden_layers, layout.kv_heads(cfg))
        # streaming heads are chosen among the full-attention layers' heads, the only ones a press acts on here
        # (kvstudy.presses.cache): `compression_ratio` is the fraction of those heads that stream
        full = np.array([kind == "full" for kind in layer_kinds(cfg)])
        n_pruned = round(int(full.sum()) * head_scores.shape[1] * self.head_compression_ratio)
        head_scores = np.where(full[:, None], head_scores, np.inf)
        self.streaming_mask = torch.zeros(head_scores.shape, dtype=torch.bool, device=model.device)
        if n_pruned > 0:
            idx = np.argsort(head_scores, axis=None, kind="stable")[:n_pruned]
            self.streaming_mask[np.unravel_index(idx, head_scores.shape)] = True

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        # kvpress masks [sink, -recent) on streaming heads whenever head_compression_ratio > 0; with a context
        # shorter than sink + recent that slice would be empty or wrap around, so there is nothing to mask.
        if keys.shape[2] <= self.sink_size + self.recent_size or not self.streaming_mask.any():
            module.masked_key_indices = None
            self.compression_ratio_ = 0.0
            return keys, values
        return super().compress(module, hidden_states, keys, values, attentions, kwargs)
