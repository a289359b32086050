"""Which press variants can run on which models: asked by config validation before any job starts.

`unsupported(...)` returns a one-line reason when a press variant cannot run (or would not change the cache it
claims to compress) on a model of the given config, for a task of the given kind; None when it runs. Only the
model's config is needed, never its weights.

The one refusal today follows from kvstudy's rule for presses (`kvstudy.presses.cache`, README "Presses"):
presses, masks and quantization act on full-attention layers only and leave sliding-window layers to the model's
own window. On a model whose every layer attends within a window (Mistral or Phi3 with `sliding_window` set, Qwen2
with `use_sliding_window` and no full layer) every compression method would change nothing, so it is refused
rather than reported as a saving of zero. Every other press x architecture x task kind of kvpress's tested
architectures and GPT-NeoX runs (tests/test_architectures.py; NeoX through `kvstudy.presses.adapter`); parameter
combinations that cannot run on any model are refused by the press's own `check_values` (e.g. decoding-time
SnapKV with too few buffered queries).
"""

from __future__ import annotations


def unsupported(method: str, params: dict, model_config, task_kind: str = "generate") -> str | None:
    """Why press `method` with `params` (variant options included) cannot run on a model with `model_config`
    (a transformers PretrainedConfig) for a task of kind `task_kind` ("generate" or "perplexity"); None if it can."""
    from kvstudy.presses.cache import layer_kinds, sliding_window

    compresses = method != "no_press" or params.get("quantization") is not None
    if compresses and "full" not in layer_kinds(model_config):
        w = sliding_window(model_config)
        return (f"every layer attends within a sliding window of {w} tokens, whose cache already keeps at most "
                f"{w - 1} tokens per layer; kvstudy compresses full-attention layers only, so {method!r} would "
                f"change nothing (for contexts that fit the window, run the model with config_overrides: "
                f"{{sliding_window: null}})")
    return None
