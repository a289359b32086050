"""Small random-weight models of the architectures kvpress lists as tested, and GPT-NeoX, built from configs.

Each is saved as a local model directory (config, safetensors weights, a byte-level BPE tokenizer with digits and a
chat template: `tests/bpe.py`) that `kvstudy.models.load_model` and a study's `models.NAME.path` accept:

    path = make_model("qwen3", tmp_path / "qwen3")

Shapes follow what makes each architecture different, not its size: Qwen3 has 8 query / 2 KV heads and QK norm;
Mistral 4 / 1 heads and `sliding_window` (256 unless given); Phi3 a fused qkv projection; Gemma3 mixes
sliding-window and global layers; GPT-NeoX (Pythia's architecture, not among kvpress's tested ones) a fused
per-head query/key/value projection, RoPE over a quarter of each head and another module layout
(`kvstudy.models.layout`). Weights are random (seeded), so answers are noise; what the tests check is that
every press runs and changes the cache as it claims.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

ARCHS = ("llama", "mistral", "phi3", "qwen2", "qwen3", "gemma3", "gpt_neox")
VOCAB = 600  # tests/bpe.py trains a 600-entry vocabulary


@functools.lru_cache(maxsize=None)
def _tokenizer():
    try:  # under pytest tests/ is on sys.path; from a script run at the repository root it is a package
        from bpe import train_bpe
    except ImportError:
        from tests.bpe import train_bpe

    return train_bpe(chat=True)


def config_for(arch: str, sliding_window: int | None = 256, layers: int = 2):
    """A transformers config of `arch` with small shapes (sliding_window: Mistral's and Gemma3's local window)."""
    import transformers as tf

    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                  max_position_embeddings=8192, bos_token_id=0, eos_token_id=1, pad_token_id=1,
                  tie_word_embeddings=True)
    if arch == "llama":
        return tf.LlamaConfig(num_attention_heads=4, num_key_value_heads=2, **common)
    if arch == "mistral":
        return tf.MistralConfig(num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                sliding_window=sliding_window, **common)
    if arch == "phi3":
        return tf.Phi3Config(num_attention_heads=4, num_key_value_heads=2, **common)
    if arch == "qwen2":
        return tf.Qwen2Config(num_attention_heads=4, num_key_value_heads=2, **common)
    if arch == "qwen3":
        return tf.Qwen3Config(num_attention_heads=8, num_key_value_heads=2, head_dim=16, **common)
    if arch == "gemma3":
        n = max(layers, 3)
        types = ["sliding_attention" if (i + 1) % 3 else "full_attention" for i in range(n)]
        return tf.Gemma3TextConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                   sliding_window=sliding_window or 256, layer_types=types,
                                   **{**common, "num_hidden_layers": n})
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(num_attention_heads=4, rotary_pct=0.25, **common)
    raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(ARCHS)})")


def make_model(arch: str, dest: Path, seed: int = 0, **kwargs) -> str:
    """Save a random-weight `arch` model and the BPE tokenizer in `dest`; returns the path for a study config."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    dest = Path(dest)
    if (dest / "config.json").exists():
        return str(dest)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_for(arch, **kwargs), dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model.save_pretrained(dest)
    _tokenizer().save_pretrained(dest)
    return str(dest)
