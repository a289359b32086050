"""The project's one atomic writer: a file is written next to its target, flushed to disk, then `os.replace`d
onto it, so a reader (or a killed job) never sees a half-written result, table or report. A bottom module: it
imports nothing of kvstudy.

The file gets the mode `open()` would give it under the process's umask (mkstemp makes 0600 files: the group could
not read the tables).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def file_mode() -> int:
    """The mode open() gives a new file under this process's umask (0o644 under 022, 0o664 under 002)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(text: str, path: Path) -> None:
    """`text` written to `path` atomically (parents made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(obj: dict, out: Path) -> None:
    """A JSON document (a raw result, a tuning choice) written atomically: a killed job never leaves a partial one."""
    write_text_atomic(json.dumps(obj, indent=1), out)


def write_csv_atomic(df, path: Path) -> None:
    """A pandas DataFrame as CSV (no index), written atomically."""
    write_text_atomic(df.to_csv(index=False), path)
