"""Exact per-head key masking for the masking presses (AdaKV, DuoAttention), instead of kvpress's fake keys.

kvpress masks the keys a press dropped (`module.masked_key_indices`: batch, KV head, position) by overwriting
them, at every step after prefill, with one fake key k per KV group such that <q, k> << 0 for every query q of the
step (`kvpress.attention_patch.search_hyperplane`). For a step of several tokens (the question, a perplexity
chunk) whose queries point in directions around the origin no such k exists and kvpress raises ("Could not find
fake keys ..."); for queries that are all zero no k changes anything; and the fake keys overwrite the cache's own
key tensors.

Here a masked step runs SDPA with a boolean mask instead: the model's causal mask for the step (the bottom-right
aligned causal mask where the model passes none: SDPA's `is_causal`, flash attention) and, per query head, not
the (KV head, position) entries the press masked. That is exact whatever the queries, and the cache is left
unchanged. Steps without masked keys (prefill included) run the model's attention untouched. With
`flash_attention_2`, which takes no per-head mask, the masked steps run through the same SDPA call. Eager
attention is not patched: kvpress's masking presses refuse it. Written by hand because neither kvpress nor
transformers masks individual (head, key) entries.
"""

from __future__ import annotations

import contextlib

import torch

_installed = False


def install() -> None:
    """Patch transformers' SDPA and flash attention functions (once per process)."""
    global _installed
    if _installed:
        return
    import kvpress  # noqa: F401  (kvpress patches the attention functions on import: wrap its patch)
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    for name in list(ALL_ATTENTION_FUNCTIONS.keys()):
        if name == "sdpa" or name.startswith("flash_attention"):
            ALL_ATTENTION_FUNCTIONS[name] = _exact(ALL_ATTENTION_FUNCTIONS[name], sdpa_attention_forward)
    _installed = True


def _exact(inner, sdpa):
    def attention(module, query, key, value, attention_mask, dropout=0.0, **kwargs):
        idx = getattr(module, "masked_key_indices", None)
        if idx is None or query.shape[2] == key.shape[2]:  # nothing masked, or prefill (kvpress resets the mask)
            return inner(module, query, key, value, attention_mask, dropout, **kwargs)
        mask = head_mask(attention_mask, idx, query.shape[1], query.shape[2], key)
        return sdpa(module, query, key, value, mask, dropout, scaling=kwargs.get("scaling"))

    return attention


def head_mask(attention_mask, idx, n_heads: int, q_len: int, key: torch.Tensor) -> torch.Tensor:
    """(batch, query heads, q_len, k_len) attention mask: `attention_mask` (or causal) minus the masked entries."""
    bsz, n_kv, k_len, _ = key.shape
    keep = torch.ones(bsz, n_kv, k_len, dtype=torch.bool, device=key.device)
    keep[idx] = False
    keep = keep.repeat_interleave(n_heads // n_kv, dim=1)[:, :, None, :]
    if attention_mask is not None and attention_mask.dim() == 4:
        base = attention_mask[:, :, :, :k_len]
        return base & keep if base.dtype == torch.bool else base.masked_fill(~keep, torch.finfo(base.dtype).min)
    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("masking presses: a padded batch cannot be masked per head here")
    causal = torch.ones(q_len, k_len, dtype=torch.bool, device=key.device).tril(k_len - q_len)
    return causal[None, None] & keep


@contextlib.contextmanager
def suspended(model):
    """Attention as if no key were masked (a second, uncompressed cache fed while a masking press is active)."""
    mods = [m for m in model.modules() if getattr(m, "masked_key_indices", None) is not None]
    saved = [m.masked_key_indices for m in mods]
    for m in mods:
        m.masked_key_indices = None
    try:
        yield
    finally:
        for m, s in zip(mods, saved):
            m.masked_key_indices = s
