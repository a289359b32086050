"""A passed preflight, remembered: `kvstudy validate` and every `snakemake` call validate the study again, and the
preflight (tokenizers, samples) costs seconds where the rest costs milliseconds.

The key hashes what the preflight read: the config's grid (models, tasks, lengths, seeds, presses, exclude), the
kvstudy sources, the transformers / tokenizers / datasets versions, and the size and modification time of every
file of each model's directory (a hub id: its snapshot in the local hub cache) and of every local file a task or
press names. A change of any of them runs the preflight again; a model not found locally has no key (it is
always checked). Only passes are written, as `.snakemake/kvstudy/preflight/<key>.json` under the working
directory (where snakemake keeps its own state); a directory that cannot be written is no error.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path

CACHE_DIR = Path(".snakemake") / "kvstudy" / "preflight"
GRID_KEYS = ("models", "tasks", "lengths", "seeds", "presses", "exclude")


@lru_cache(maxsize=1)
def _sources_digest() -> str:
    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    for dist in ("transformers", "tokenizers", "datasets"):
        try:
            h.update(f"{dist}=={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            pass
    return h.hexdigest()


def _stat(path: Path) -> str:
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _model_dir(path: str) -> Path | None:
    from kvstudy.models import hub_snapshot, resolve, split_revision

    try:
        where = Path(resolve(path)).expanduser()
    except ValueError:
        return None
    if where.is_dir():
        return where
    snapshot = hub_snapshot(*split_revision(path))
    return Path(snapshot) if snapshot else None


def _local_files(value) -> list[Path]:
    """Existing local paths among the strings of a config subtree (task sources, demo files, patterns)."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _local_files(v)]
    if isinstance(value, list):
        return [p for v in value for p in _local_files(v)]
    if isinstance(value, str) and ("/" in value or "." in value):
        p = Path(value).expanduser()
        return [p] if p.exists() else []
    return []


def key(config: dict) -> str | None:
    """The cache key of a resolved config's preflight; None when a model is not found locally."""
    grid = {k: config.get(k) for k in GRID_KEYS}
    parts = [json.dumps(grid, sort_keys=True, default=str), _sources_digest()]
    for name, m in sorted(config["models"].items()):
        where = _model_dir(f"{m['path']}@{m['revision']}" if m.get("revision") else m["path"])
        if where is None:
            return None
        parts += [_stat(p) for p in sorted(where.iterdir()) if p.is_file()]
    for p in sorted(set(_local_files([config["tasks"], config["presses"]]))):
        parts.append(_stat(p))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read(key: str | None) -> dict | None:
    if key is None:
        return None
    try:
        return json.loads((CACHE_DIR / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def write(key: str | None, report: dict) -> None:
    if key is None:
        return
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = CACHE_DIR / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(report))
        os.replace(tmp, CACHE_DIR / f"{key}.json")
    except OSError:
        pass
