"""Manifest of the study's figures and tables (`figures/all`): what was produced, with checksums, and which study
(its name and the sha256 of its resolved config, kvstudy.report) it was built from."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kvstudy.aggregate import write_text_atomic

HEADER = "kind\tpath\tsha256\tbytes"
KINDS = {".pdf": "figure", ".png": "figure", ".csv": "table", ".tex": "table", ".html": "provenance"}


def file_kind(path: Path) -> str:
    kind = KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise ValueError(f"manifest: {path} is neither a figure (.pdf, .png), a table (.csv, .tex) nor the "
                         "provenance page (.html)")
    return kind


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


STUDY_PREFIX = "# "  # trailing lines "# study<TAB>NAME", "# config_sha256<TAB>HASH"


def write_manifest(paths: list[Path], out: Path, root: Path, study: dict | None = None) -> Path:
    """Write `out`: a header line, then `kind<TAB>path<TAB>sha256<TAB>bytes` per file, paths relative to `root`
    (POSIX separators), sorted by path, duplicates once, then `# key<TAB>value` lines of `study` (e.g. its name and
    config hash). Atomic: a temp file next to `out`, then os.replace."""
    root = Path(root).resolve()
    out = Path(out)
    rows = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"manifest: {p} is not a file")
        try:
            rel = p.resolve().relative_to(root).as_posix()
        except ValueError:
            raise ValueError(f"manifest: {p} is not under {root}") from None
        rows[rel] = f"{file_kind(p)}\t{rel}\t{sha256(p)}\t{p.stat().st_size}"
    trailer = [f"{STUDY_PREFIX}{k}\t{v}" for k, v in (study or {}).items()]
    text = "\n".join([HEADER] + [rows[k] for k in sorted(rows)] + trailer) + "\n"
    write_text_atomic(text, out)
    return out


def read_manifest(path: Path) -> list[dict]:
    """Rows of a manifest as dicts (kind, path, sha256, bytes)."""
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0] != HEADER:
        raise ValueError(f"{path} is not a kvstudy manifest (header {HEADER!r} expected)")
    out = []
    for line in lines[1:]:
        if line.startswith(STUDY_PREFIX):
            continue
        kind, rel, digest, size = line.split("\t")
        out.append({"kind": kind, "path": rel, "sha256": digest, "bytes": int(size)})
    return out


def read_study(path: Path) -> dict[str, str]:
    """The `# key<TAB>value` lines of a manifest (study, config_sha256); empty for a manifest without them."""
    lines = Path(path).read_text().splitlines()
    pairs = (line[len(STUDY_PREFIX):].split("\t", 1) for line in lines if line.startswith(STUDY_PREFIX))
    return {kv[0]: kv[1] for kv in pairs if len(kv) == 2}
