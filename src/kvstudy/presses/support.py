"""Which press variants can run on which models: asked by config validation before any job starts.

`unsupported(...)` returns a one-line reason when a press variant cannot run (or would not change the cache it
claims to compress) on a model of the given config, for a task of the given kind; None when it runs. Only the
model's config is needed, never its weights.
"""

from __future__ import annotations


def unsupported(method: str, params: dict, model_config, task_kind: str = "generate") -> str | None:
    """Why press `method` with `params` (variant options included) cannot run on a model with `model_config`
    (a transformers PretrainedConfig) for a task of kind `task_kind` ("generate" or "perplexity"); None if it can."""
    return None
