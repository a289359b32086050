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


# --- config and tokenizer without weights (config validation's preflight, kvstudy.preflight) ------------------

HUB_TIMEOUT = 10  # seconds the hub gets to say whether it has a model that is not in the local cache


def hub_snapshot(repo_id: str) -> str | None:
    """The local hub cache's snapshot directory of `repo_id` (its `main` revision), None when it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return str(Path(found).parent) if isinstance(found, str) else None


def locate(path: str) -> str:
    """Where a model's config and tokenizer are read from: a local directory (built-in, local, or a hub id's
    snapshot in the local hub cache), or the hub id itself once the hub has answered that it has it. Raises
    ValueError in one line, quickly: a relative path that does not exist is not taken for a hub id when its first
    folder is here, and a hub id that is not cached costs one request of at most HUB_TIMEOUT seconds (from_pretrained
    would retry for over a minute per file before failing)."""
    where = resolve(path)
    if where != path or Path(path).expanduser().exists():
        return where
    snapshot = hub_snapshot(path)
    if snapshot:
        return snapshot
    head = path.split("/")[0]
    if Path(head).is_dir():
        raise ValueError(f"{path!r} does not exist (./{head} is a local folder, so this is a local path, not a hub id)")
    import huggingface_hub
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"{path!r} is neither a local directory nor in the local hub cache ({constants.HF_HUB_CACHE}),"
                         " and the hub is offline (HF_HUB_OFFLINE)")
    try:
        huggingface_hub.model_info(path, timeout=HUB_TIMEOUT)
    except Exception as e:  # not found, gated, or no network: from_pretrained would fail the same way, slowly
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path!r} is neither a local directory nor in the local hub cache, and the hub does not "
                         f"give it: {why}") from None
    return path


def load_config_tokenizer(path: str, config_overrides: dict | None = None):
    """(config, tokenizer, where) of a model without its weights; `config_overrides` apply as in `load_model`.
    Raises ValueError in one line naming what failed."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    where = locate(path)
    try:
        config = AutoConfig.from_pretrained(where, **(config_overrides or {}))
        tokenizer = AutoTokenizer.from_pretrained(where)
    except Exception as e:  # one line, whatever transformers raised (a missing tokenizer file, an unknown model type)
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: config or tokenizer cannot be loaded: {why}") from None
    return config, tokenizer, where
