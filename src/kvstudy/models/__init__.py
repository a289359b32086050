"""Load a model and its tokenizer from a hub id, a local path, or `builtin:NAME` (shipped in this package)."""

from __future__ import annotations

import re
from pathlib import Path

BUILTIN_DIR = Path(__file__).parent / "builtin"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def builtin_models() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "config.json").exists()) if BUILTIN_DIR.exists() else []


def resolve(path: str) -> str:
    """The directory or hub id `from_pretrained` gets; raises ValueError naming what is wrong."""
    if path.startswith("builtin:"):
        name = path.split(":", 1)[1]
        if name not in builtin_models():
            raise ValueError(f"no built-in model {name!r} (shipped: {', '.join(builtin_models()) or 'none'})")
        return str(BUILTIN_DIR / name)
    p = Path(path).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ValueError(f"{path} has no config.json")
        return str(p)
    if path.startswith((".", "/", "~")) or not HUB_ID.match(path):
        raise ValueError(f"model path {path!r} does not exist and is not a hub id (org/name)")
    return path


def load_model(path: str, dtype: str = "auto", attn_implementation: str = "sdpa", device: str = "cpu",
               config_overrides: dict | None = None):
    """Model (eval mode, on `device`) and tokenizer. `config_overrides` replace entries of the model's config
    (e.g. `rope_scaling` to run a model with YaRN), as `from_pretrained` keyword arguments."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-weight progress bars would fill every job log

    where = resolve(path)
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, attn_implementation=attn_implementation,
                                                 **(config_overrides or {}))
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(where)
    return model, tokenizer
