"""Load a model and its tokenizer from a hub id, a local path, or `builtin:NAME` (shipped in this package).

A hub id may carry a revision, `org/name@REVISION` (a branch, tag or commit; what a study's `models.X.revision`
becomes in its jobs' `model_path`, kvstudy.grid). A hub model found in the local hub cache at that revision is
loaded from its snapshot folder, so an eval job after `kvstudy fetch` needs no hub (HF_HUB_OFFLINE=1); the commit
it loaded goes into the result's provenance (kvstudy.revisions)."""

from __future__ import annotations

import re
from pathlib import Path

BUILTIN_DIR = Path(__file__).parent / "builtin"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def builtin_models() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "config.json").exists()) if BUILTIN_DIR.exists() else []


def split_revision(path: str) -> tuple[str, str | None]:
    """(`org/name`, REVISION) of `org/name@REVISION`; (path, None) for anything else."""
    repo, at, revision = path.rpartition("@")
    if at and revision and HUB_ID.match(repo) and not Path(path).expanduser().exists():
        return repo, revision
    return path, None


def model_ref(model: dict) -> str:
    """A study's model entry as one path: `path`, or `path@revision` where the study pins `revision`."""
    return f"{model['path']}@{model['revision']}" if model.get("revision") else model["path"]


def resolve(path: str) -> str:
    """The directory or hub id `from_pretrained` gets (without its revision); raises ValueError naming what is
    wrong."""
    path, _ = split_revision(path)
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

    from kvstudy.presses.flex_attention import prepare

    prepare(attn_implementation)  # before loading: transformers checks the function is callable as it loads
    where, revision = hub_location(path)
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, attn_implementation=attn_implementation,
                                                 revision=revision, **(config_overrides or {}))
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
    record_commit(path)
    return model, tokenizer


def hub_location(path: str) -> tuple[str, str | None]:
    """(where, revision) for `from_pretrained`: a hub model cached at its revision is its snapshot folder (no hub
    needed, revision None); an uncached one is the hub id and its revision; anything else `resolve(path)`."""
    where = resolve(path)
    repo, revision = split_revision(path)
    if where != repo or Path(repo).expanduser().exists():
        return where, None
    snapshot = hub_snapshot(repo, revision)
    return (snapshot, None) if snapshot else (repo, revision)


def record_commit(path: str) -> None:
    """Record the commit of a hub model as now cached (after loading) for the result's provenance."""
    from kvstudy import revisions

    repo, revision = split_revision(path)
    if resolve(path) == repo and not Path(repo).expanduser().exists():
        snapshot = hub_snapshot(repo, revision)
        revisions.record("model", repo, revisions.snapshot_commit(snapshot) if snapshot else None)


# --- config and tokenizer without weights (config validation's preflight, kvstudy.preflight) ------------------

HUB_TIMEOUT = 10  # seconds the hub gets to say whether it has a model that is not in the local cache


def hub_snapshot(repo_id: str, revision: str | None = None) -> str | None:
    """The local hub cache's snapshot directory of `repo_id` at `revision` (default `main`), None when it is not
    cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return str(Path(found).parent) if isinstance(found, str) else None


def locate(path: str) -> str:
    """Where a model's config and tokenizer are read from: a local directory (built-in, local, or a hub id's
    snapshot in the local hub cache), or the hub id itself once the hub has answered that it has it. Raises
    ValueError in one line, quickly: a relative path that does not exist is not taken for a hub id when its first
    folder is here, and a hub id that is not cached costs one request of at most HUB_TIMEOUT seconds (from_pretrained
    would retry for over a minute per file before failing)."""
    where = resolve(path)
    path, revision = split_revision(path)
    if where != path or Path(path).expanduser().exists():
        return where
    snapshot = hub_snapshot(path, revision)
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
        huggingface_hub.model_info(path, timeout=HUB_TIMEOUT, **({"revision": revision} if revision else {}))
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
    revision = split_revision(path)[1] if where == split_revision(path)[0] else None  # asked of the hub
    try:
        config = AutoConfig.from_pretrained(where, revision=revision, **(config_overrides or {}))
        tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
    except Exception as e:  # one line, whatever transformers raised (a missing tokenizer file, an unknown model type)
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: config or tokenizer cannot be loaded: {why}") from None
    return config, tokenizer, where
