"""What an eval job measures besides quality: real KV-cache size, time, peak memory, provenance."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def tensor_bytes(obj) -> int:
    """Bytes held by a tensor, a quantized tensor subclass (quanto: packed data + scales + shifts, found through
    `__tensor_flatten__`), or a tuple/dict of them (HQQ: packed data and its meta with scale and zero)."""
    if isinstance(obj, torch.Tensor):
        flatten = getattr(type(obj), "__tensor_flatten__", None)
        if flatten is not None and type(obj) is not torch.Tensor and not isinstance(obj, torch.nn.Parameter):
            names, _ = obj.__tensor_flatten__()
            return sum(tensor_bytes(getattr(obj, n)) for n in names)
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(tensor_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(o) for o in obj.values())
    return 0


def cache_size(cache) -> tuple[float, int]:
    """(entries held per KV head averaged over layers, bytes of every tensor the cache holds), read from the cache.

    transformers' `QuantizedLayer` (5.x) holds the quantized part in `_quantized_keys/_quantized_values` and the
    full-precision residual (the most recent tokens) in `keys/values`. A sliding-window layer holds its window."""
    from kvstudy.presses.cache import held_tokens  # lazy: it imports transformers; the DAG imports this module

    tokens, nbytes = [], 0
    for layer in cache.layers:
        for name in ("keys", "values", "_quantized_keys", "_quantized_values"):
            nbytes += tensor_bytes(getattr(layer, name, None))
        tokens.append(held_tokens(layer))
    return sum(tokens) / max(len(tokens), 1), nbytes


def masked_fraction(model, cache) -> float:
    """Fraction of the cache's (layer, KV head, token) entries that per-head presses (AdaKV, DuoAttention in
    kvpress) mask out of attention (`masked_key_indices` on each attention module) while keeping them in memory."""
    from kvstudy.models.layout import attention_modules

    masked, total = 0, 0
    for i, attn in enumerate(attention_modules(model)):
        k = cache.layers[i].keys if i < len(cache.layers) else None
        if not isinstance(k, torch.Tensor) or k.dim() != 4:
            continue
        total += k.shape[0] * k.shape[1] * k.shape[2]
        idx = getattr(attn, "masked_key_indices", None)
        if idx is not None and len(idx[0]):
            b, h, s = idx
            masked += int(torch.unique((b * k.shape[1] + h) * k.shape[2] + s).numel())
    return masked / total if total else 0.0


def full_cache_tokens(model, n_tokens: int) -> float:
    """Entries per KV head, averaged over layers, the model's own uncompressed cache holds after `n_tokens`:
    `n_tokens`, less in sliding-window layers (`kvstudy.presses.cache`)."""
    from kvstudy.presses.cache import own_cache_tokens  # lazy: it imports transformers (see cache_size)

    per_layer = own_cache_tokens(model.config, n_tokens)
    return sum(per_layer) / len(per_layer)


def full_cache_bytes(model, n_tokens: int) -> int:
    """Bytes the model's own uncompressed cache takes after `n_tokens` (K and V, every layer; a sliding-window
    layer holds its window)."""
    from kvstudy.presses.cache import own_cache_tokens  # lazy: it imports transformers (see cache_size)

    c = model.config.get_text_config(decoder=True)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    n_kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    elem = next(model.parameters()).element_size()
    return 2 * n_kv * head_dim * elem * sum(own_cache_tokens(model.config, n_tokens))


class Clock:
    """Wall-clock timer that synchronises the device first, so GPU work is counted where it happens."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


class PeakMemory:
    """Peak device memory of the work after `reset()`, above what was allocated at the first reset.

    CUDA: the allocator's peak since the last reset, less the bytes allocated at the first one (made after model
    load and warm-up: the weights, and whatever the warm-up left), so what is left is the job's own activations and
    KV cache, the same baseline for every stage of a job (a group job resets per sample and per variant, while a
    shared prefill's cache is still allocated, and that cache counts): kind "cuda".
    CPU: none (`peak()` is None, kind "none"). The only per-process peak the OS keeps (ru_maxrss) is the lifetime
    peak RSS: it cannot be reset, and it counts imports (kvpress alone adds ~96 MB) and the model load, which
    made every eviction press look ~0.1 GB heavier than no compression (issue 15). torch's CPU allocator keeps no
    peak of its own. KV memory on CPU is the measured KV bytes (`cache_size`), never a process number."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.kind = "cuda" if self.cuda else "none"
        self.base: int | None = None

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            if self.base is None:
                self.base = int(torch.cuda.memory_allocated())
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int | None:
        if not self.cuda:
            return None
        torch.cuda.synchronize()
        return max(int(torch.cuda.max_memory_allocated()) - (self.base or 0), 0)


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The checkout's commit, `-dirty` appended when tracked files differ from it (results of uncommitted code)."""
    try:
        run = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,  # noqa: E731
                                           cwd=Path(__file__).parent)
        sha = run("rev-parse", "HEAD").stdout.strip()
        if not sha:
            return None
        status = run("status", "--porcelain", "--untracked-files=no")
        return sha + ("-dirty" if status.returncode != 0 or status.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def provenance(device: torch.device) -> dict:
    """Where the job ran, with what; `revisions`: the hub commits of the model and data it loaded so far in this
    process (kvstudy.revisions; called when the result is written, after loading)."""
    from kvstudy import __version__, revisions

    cuda = device.type == "cuda"
    return {
        "kvstudy_version": __version__,
        "git_commit": os.environ.get("KVSTUDY_GIT_COMMIT") or git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "kvpress": _version("kvpress"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
        "cuda": torch.version.cuda if cuda else None,
        "host": socket.gethostname(),
        "revisions": revisions.seen(),
    }
