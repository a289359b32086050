"""What a job read from the hub or from fetched data, at which commit: the raw result's `provenance.revisions`.

Model and dataset loaders record here what they resolved (`record`); `kvstudy.measure.provenance` copies it into
the result, so no job code passes it along. Keys are `model:<repo id>`, `dataset:<repo id>` and `data:<name>` (a
`data:` entry of the study, fetched by `kvstudy fetch`); values are a hub commit hash (40 hex digits) or, for a
download that is no hub repository, `sha256:<hex>` of the archive. A token never appears here.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = ".kvstudy-source.json"  # written by kvstudy.fetch into each fetched data folder
_SEEN: dict[str, str] = {}


def record(kind: str, name: str, commit: str | None) -> None:
    if commit:
        _SEEN[f"{kind}:{name}"] = commit


def seen() -> dict[str, str]:
    return dict(sorted(_SEEN.items()))


def snapshot_commit(path: str | Path) -> str | None:
    """The commit of a hub cache snapshot folder (`.../snapshots/<commit>`), None for any other folder."""
    p = Path(path)
    return p.name if p.parent.name == "snapshots" and len(p.name) == 40 else None


def local_file(path: str | Path) -> None:
    """Record the fetched data entry a local data file belongs to (the nearest MARKER above it), if any."""
    here = Path(path).resolve().parent
    for folder in (here, *here.parents):
        marker = folder / MARKER
        if marker.is_file():
            try:
                info = json.loads(marker.read_text())
                record("data", info["name"], info["commit"])
            except (ValueError, KeyError, OSError):
                pass
            return
