"""Where real task data comes from: `datasets.load_dataset` with a hub id, or a local file of the same format.

A `source` is either a local path (`.txt` is one document; `.json` (a list of rows) and `.jsonl` (one row per
line; blank lines are skipped) are read here, `.parquet` and `.csv` go through the `datasets` builder of that
format) or a hub id (`org/name`) loaded with `name`/`split`/`revision`. Nothing here evaluates data;
`trust_remote_code` reaches `load_dataset` only when the study sets it for that dataset.

JSON files are parsed here rather than by `datasets`' json builder: its errors (StopIteration on an empty file,
DatasetGenerationError on a bad line) name neither the file nor the line, and it unifies the rows' schema, turning
a field a row lacks into null, which a task would then read as the answer "None". Every loading error is one line
naming the task and the file (`task hf_qa: source data.jsonl: line 3: not valid JSON (...)`).

A hub dataset fetched before the jobs (`kvstudy fetch`, rule fetch_hub) is read from its snapshot in the local hub
cache, as a local folder, so that a job runs offline (`datasets` would otherwise ask the hub for its files, or
find only what it prepared itself). What was read, at which commit, goes into the result (kvstudy.revisions).
"""

from __future__ import annotations

import json
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
    task: str = "",
) -> list[dict]:
    """Rows of a dataset as dicts. Local files are read offline; hub ids need the hub (or its local cache). Errors
    are ValueErrors naming `task` and the source."""
    where = f"task {task}: source {source}" if task else f"source {source}"
    if not source:
        raise ValueError(f"{where}: empty: give a hub id or a local file")
    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir() or path.suffix not in (*_BUILDERS, ".txt"):
            raise ValueError(f"{where}: unsupported file type {path.suffix or '(none)'!r} (use "
                             f"{', '.join(_BUILDERS)}, .txt)")
        rows = _local(path, where)
        from kvstudy import revisions

        revisions.local_file(path)
    elif not is_hub(source):
        raise ValueError(f"{where}: no such file")
    else:
        rows = _hub(source, name, split, revision, trust_remote_code, data_files, where)
    if not rows:
        raise ValueError(f"{where}: no rows")
    return rows


def _text(path: Path, where: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{where}: line {line}: not UTF-8 (byte 0x{data[e.start]:02x})") from None


def _local(path: Path, where: str) -> list[dict]:
    if path.suffix == ".txt":
        return [{"text": _text(path, where)}]
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(_text(path, where).splitlines(), 1):
            if line.strip():
                rows.append(_row(_json(line, f"{where}: line {n}"), f"{where}: line {n}"))
        return rows
    if path.suffix == ".json":
        text = _text(path, where)
        if not text.strip():
            return []
        data = _json(text, where)
        if not isinstance(data, list):
            raise ValueError(f"{where}: a JSON file of rows holds a list of objects, not a {type(data).__name__}")
        return [_row(r, f"{where}: row {n}") for n, r in enumerate(data, 1)]
    import datasets

    datasets.disable_progress_bars()  # one bar per split would fill every job log
    try:
        return [dict(r) for r in datasets.load_dataset(_BUILDERS[path.suffix], data_files=str(path), split="train")]
    except Exception as e:  # noqa: BLE001 -- whatever the builder raised, said with the file
        raise ValueError(f"{where}: cannot be read as {path.suffix[1:]} ({_first_line(e)})") from e


def _hub(source, name, split, revision, trust_remote_code, data_files, where: str) -> list[dict]:
    import datasets

    datasets.disable_progress_bars()
    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    snapshot = hub_dataset_snapshot(source, revision)
    try:
        if snapshot:  # fetched: the snapshot is a local folder of the same files
            ds = datasets.load_dataset(snapshot, name or None, split=split, data_files=data_files or None, **kwargs)
        else:
            ds = datasets.load_dataset(
                source, name or None, split=split, revision=revision or None, data_files=data_files or None, **kwargs
            )
    except Exception as e:  # noqa: BLE001 -- the hub's reason, said with the dataset
        raise ValueError(f"{where} (hub{', ' + name if name else ''}, split {split}): {_first_line(e)}") from e
    if snapshot:
        from kvstudy import revisions

        revisions.record("dataset", source, revisions.snapshot_commit(snapshot))
    return [dict(r) for r in ds]


def hub_dataset_snapshot(source: str, revision: str = "") -> str | None:
    """The local hub cache's complete snapshot of dataset `source` at `revision` (default main), or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(source, repo_type="dataset", revision=revision or None, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg}: line {e.lineno} column {e.colno})") from None


def _row(row, where: str) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: not a JSON object (a {type(row).__name__})")
    return row


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
