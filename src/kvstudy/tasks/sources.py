"""Where real task data comes from: `datasets.load_dataset` with a hub id, or a local file of the same format.

A `source` is either a local path (`.txt` is one document; `.json`, `.jsonl`, `.parquet`, `.csv` go through the
`datasets` builder of that format) or a hub id (`org/name`) loaded with `name`/`split`/`revision`. Nothing here
evaluates data; `trust_remote_code` reaches `load_dataset` only when the study sets it for that dataset.
"""

from __future__ import annotations

from pathlib import Path

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def is_hub(source: str) -> bool:
    """Whether `source` names a hub dataset (read through `datasets`, maybe downloaded), not a local file: it is
    no existing path and does not look like one (a file suffix, or ./ / ~ at the start)."""
    path = Path(source).expanduser()
    looks_local = path.suffix in _BUILDERS or path.suffix == ".txt" or source.startswith((".", "/", "~"))
    return bool(source) and not path.exists() and not looks_local


def load_records(
    source: str,
    name: str = "",
    split: str = "test",
    revision: str = "",
    trust_remote_code: bool = False,
    data_files: str = "",
) -> list[dict]:
    """Rows of a dataset as dicts. Local files are read offline; hub ids need the hub (or its local cache)."""
    if not source:
        raise ValueError("task parameter 'source' is empty: give a hub id or a local file")
    path = Path(source).expanduser()
    if path.suffix == ".txt" and path.exists():
        return [{"text": path.read_text(encoding="utf-8")}]
    import datasets

    datasets.disable_progress_bars()  # one bar per split would fill every job log
    if path.exists():
        if path.suffix not in _BUILDERS:
            raise ValueError(f"source {source}: unsupported file type {path.suffix!r} (use {', '.join(_BUILDERS)}, .txt)")
        ds = datasets.load_dataset(_BUILDERS[path.suffix], data_files=str(path), split="train")
    else:
        if not is_hub(source):
            raise ValueError(f"source {source}: no such file")
        kwargs = {"trust_remote_code": True} if trust_remote_code else {}
        ds = datasets.load_dataset(
            source, name or None, split=split, revision=revision or None, data_files=data_files or None, **kwargs
        )
    return [dict(r) for r in ds]
