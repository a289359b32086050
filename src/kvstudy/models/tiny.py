"""The built-in tiny retrieval model: a word-level tokenizer and a 2-layer Llama, built from the task lexicon.

Layer 0 head 0 is a frozen previous-token head (q/k biases under RoPE, from `shared/notes/tiny-model.md`);
`circuit.py` writes the rest of the retrieval circuit before `train-tiny` trains it.
"""

from __future__ import annotations

import math

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from kvstudy.tasks.haystack import LEXICON

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PUNCT = ["?", "."]
ROPE_THETA = 1e9  # slow rotary pairs carry the retrieval head's content match (see circuit.py)
PREV_HEAD = 0  # query head of layer 0 frozen as a previous-token head (with its KV head)
N_PREV_FREQS = 6
PREV_SCALE = 16.0


def build_tokenizer() -> PreTrainedTokenizerFast:
    words = SPECIALS + PUNCT + list(LEXICON.keys) + list(LEXICON.values) + list(LEXICON.filler)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=1 << 20,
    )


def build_model(vocab_size: int, seed: int, n_layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=True,
        tie_word_embeddings=True,
        max_position_embeddings=1 << 16,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config)
    init_previous_token_head(model)
    return model


def _prev_head_slices(model):
    cfg = model.config
    d = cfg.hidden_size // cfg.num_attention_heads
    kv = PREV_HEAD // (cfg.num_attention_heads // cfg.num_key_value_heads)
    return slice(PREV_HEAD * d, (PREV_HEAD + 1) * d), slice(kv * d, (kv + 1) * d), d


@torch.no_grad()
def init_previous_token_head(model) -> None:
    """Set q/k of layer 0's head so its score is ∝ Σ_i cos((Δpos − 1)·θ_i) over the fastest RoPE frequencies.

    With a constant key k_c = 1 and query q_c = s·e^{−iθ}, RoPE turns q·k into s·cos((Δ−1)θ), maximal at Δ = 1.
    HF Llama pairs dims (j, j + d/2) as one complex number with frequency θ_j = base^(−2j/d).
    """
    attn = model.model.layers[0].self_attn
    qs, ks, d = _prev_head_slices(model)
    theta = ROPE_THETA ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    q = torch.zeros(d)
    k = torch.zeros(d)
    j = torch.arange(N_PREV_FREQS)
    s = PREV_SCALE * math.sqrt(d)  # logit = PREV_SCALE × Σ cos: a gap of ~9 to the neighbours
    q[j] = s * torch.cos(theta[j])
    q[j + d // 2] = -s * torch.sin(theta[j])
    k[j] = 1.0
    attn.q_proj.weight[qs] = 0
    attn.q_proj.bias[qs] = q
    attn.k_proj.weight[ks] = 0
    attn.k_proj.bias[ks] = k


def freeze_previous_token_head(model) -> None:
    """Zero the gradients of the frozen q/k rows (the rest of each projection keeps training)."""
    attn = model.model.layers[0].self_attn
    qs, ks, _ = _prev_head_slices(model)

    def mask(sl):
        def hook(grad):
            grad = grad.clone()
            grad[sl] = 0
            return grad

        return hook

    for p, sl in ((attn.q_proj.weight, qs), (attn.q_proj.bias, qs), (attn.k_proj.weight, ks), (attn.k_proj.bias, ks)):
        p.register_hook(mask(sl))
