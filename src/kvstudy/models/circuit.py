"""Analytic initialisation of the tiny model's retrieval circuit (then trained by `train-tiny`).

Why: trained from random weights on 2 CPU cores, the 2-layer model learns to copy *a* value from the context in
~100 steps but not *which* value (multi-key association) within thousands of steps; the curriculum recipe in
`shared/notes/tiny-model.md` did not reproduce here. So, extending the notes' frozen previous-token head, the whole
induction circuit is written into the weights and training only refines it (stop token, scales). The circuit is:

residual (128 dims) = K [0:16) key code | S [16:32) spare | V [32:64) value code | T [64:96) other tokens |
                      B [96:128) value code of the previous token
- embeddings: keys carry a random unit code in K, values one in V (dim 32 is shared by all values: "is a value"),
  every other word a code in T;
- layer 0, head 0: attends to the previous token (q/k biases under RoPE, frozen) and copies its V into B;
- layer 1, head 0: the query "? k" matches its key code against the key codes of the context (RoPE pairs slow
  enough to ignore distance), plus a bonus where B says "the previous token was a value", which is true for the
  needle's key ("v k") and false for the question's own key ("? k"); it copies B (the value) into V, which the
  tied unembedding reads out as the value's logit.
All other heads and both MLPs start at zero output and are free to train.
"""

from __future__ import annotations

import math

import torch

K, V, T, B = slice(0, 16), slice(32, 64), slice(64, 96), slice(96, 128)
EMB_NORM = 4.0
MATCH = 40.0  # logit scale of a perfect key match
VALUE_BONUS = 40.0  # logit bonus for a position preceded by a value
COPY_GAIN = 3.0


def _unit_codes(gen: torch.Generator, n: int, dim: int) -> torch.Tensor:
    c = torch.randn(n, dim, generator=gen)
    return c / c.norm(dim=1, keepdim=True)


def slow_pairs(model, max_distance: int, max_angle: float = 0.5) -> list[int]:
    """Rotary pair indices j whose rotation over `max_distance` tokens stays below `max_angle` radians."""
    inv_freq = model.model.rotary_emb.inv_freq
    return [j for j, f in enumerate(inv_freq.tolist()) if f * max_distance < max_angle]


@torch.no_grad()
def init_retrieval_circuit(model, tokenizer, keys, values, seed: int, max_distance: int = 4096) -> None:
    from kvstudy.models.tiny import init_previous_token_head

    cfg = model.config
    d = cfg.hidden_size // cfg.num_attention_heads
    gen = torch.Generator().manual_seed(seed)
    E = model.model.embed_tokens.weight
    E.zero_()
    key_ids = tokenizer.convert_tokens_to_ids(list(keys))
    val_ids = tokenizer.convert_tokens_to_ids(list(values))
    other = sorted(set(range(E.shape[0])) - set(key_ids) - set(val_ids))
    E[key_ids, K] = EMB_NORM * _unit_codes(gen, len(key_ids), K.stop - K.start)
    vcode = _unit_codes(gen, len(val_ids), V.stop - V.start - 1)
    E[val_ids, V.start] = EMB_NORM / math.sqrt(2)
    E[val_ids, V.start + 1 : V.stop] = EMB_NORM / math.sqrt(2) * vcode
    E[other, T] = EMB_NORM * _unit_codes(gen, len(other), T.stop - T.start)

    for layer in model.model.layers:
        layer.mlp.down_proj.weight.zero_()
        attn = layer.self_attn
        attn.o_proj.weight.zero_()
        attn.o_proj.bias.zero_()
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight.zero_()
            proj.bias.zero_()

    # Layer 0 head 0: previous-token head (q/k from tiny.py) copying the normalised V block into B.
    init_previous_token_head(model)
    a0 = model.model.layers[0].self_attn
    a0.v_proj.weight[0:d, V] = torch.eye(d)
    rms_value = EMB_NORM / math.sqrt(cfg.hidden_size)  # RMS of a value token's residual
    a0.o_proj.weight[B, 0:d] = torch.eye(d) * rms_value

    # Layer 1 head 0: content match on slow rotary pairs + "previous token was a value" bonus; copy B into V.
    a1 = model.model.layers[1].self_attn
    pairs = slow_pairs(model, max_distance)
    bonus_pair, code_pairs = pairs[0], pairs[1:]
    code_dims = [j for j in code_pairs] + [j + d // 2 for j in code_pairs]
    if len(code_dims) < K.stop - K.start:
        raise ValueError(f"only {len(code_dims)} slow rotary dims for a {K.stop - K.start}-dim key code")
    code_dims = code_dims[: K.stop - K.start]
    # RMSNorm scales a key's residual by 1/rms; undo it so q.k is MATCH * cos(code angle)
    rms_key = math.sqrt((EMB_NORM**2 + EMB_NORM**2) / cfg.hidden_size)  # key code + value copy in B
    scale = math.sqrt(d) * MATCH / (EMB_NORM / rms_key) ** 2
    for i, dim in enumerate(code_dims):
        a1.q_proj.weight[dim, K.start + i] = scale
        a1.k_proj.weight[dim, K.start + i] = 1.0
    # bonus: q constant, k = shared "is a value" coordinate of B
    a1.q_proj.bias[bonus_pair] = math.sqrt(d) * VALUE_BONUS
    a1.k_proj.weight[bonus_pair, B.start] = 1.0 / (EMB_NORM / math.sqrt(2) / rms_key)
    a1.v_proj.weight[0:d, B] = torch.eye(d)
    a1.o_proj.weight[V, 0:d] = torch.eye(d) * COPY_GAIN * rms_key
