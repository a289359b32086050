"""Paper style shared by every figure: fonts, labels, saving; a method's colour, marker and label from the one
style table (`kvstudy.plots.press_style`), so a method looks the same in every figure.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
from pathlib import Path

from kvstudy.plots import press_style

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import matplotlib.figure

# matplotlib, seaborn (which imports scipy.stats) and pyplot are imported where a figure is drawn, not here:
# validating a study's `figures:` imports the figure registry, and the Snakefile does that in every snakemake
# process (matplotlib alone is 0.1 s of each).

DPI = 300

# --- rc parameters --------------------------------------------------------------------------------------------

_RC: dict = {
    # DejaVu Sans ships with matplotlib: the same glyphs on every host (no "font not found" fallbacks).
    "font.family": ["sans-serif"],
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 12,
    "figure.labelsize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "0.9",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.5,
    "lines.markersize": 6,
    "legend.frameon": False,
    "image.cmap": "viridis",
    "savefig.dpi": DPI,
    "figure.dpi": 100,
    # TrueType (Type 42) fonts in PDF/PS: editable text, accepted by publishers (no Type 3 fonts).
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}


@functools.cache
def style() -> dict:
    """rc parameters of every figure: seaborn's "ticks" axes and "paper" context, then ours."""
    import seaborn as sns

    return {**sns.axes_style("ticks"), **sns.plotting_context("paper"), **_RC}


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def paper_style():
    """Context in which figures are built and saved; leaves the global rcParams untouched."""
    import matplotlib

    with matplotlib.rc_context(style()):
        yield


def new_figure(width: float, height: float) -> matplotlib.figure.Figure:
    """A figure with constrained layout (call inside `paper_style()`)."""
    plt = pyplot()

    return plt.figure(figsize=(width, height), layout="constrained")


# --- methods: colour, marker, label (from the one style table, kvstudy.plots.press_style) -----------------------


def method_color(method: str) -> str:
    """Hex colour of a press method (or a method-level variant such as `no_press+int4`)."""
    return press_style.style(method).color


def method_marker(method: str):
    return press_style.style(method).marker


def method_label(method: str) -> str:
    """Pretty name, e.g. `streaming_llm` -> "StreamingLLM"; `no_press-qa` -> "No press (query-aware)"."""
    return press_style.style(method).label


def method_order(methods) -> list[str]:
    """Methods in registry order (a method's variants after it), then unregistered ones alphabetically."""
    return sorted(set(methods), key=lambda m: (press_style.style(m).order, str(m)))


# --- other labels ---------------------------------------------------------------------------------------------

_TASK_LABELS = {"niah": "NIAH", "kv_retrieval": "KV retrieval", "mean": "Mean over tasks"}
_METRIC_LABELS = {
    "string_match_all": "Score (string match, all)",
    "string_match_part": "Score (string match, part)",
    "exact_match": "Score (exact match)",
    "perplexity": "Perplexity",
}


def task_label(task: str) -> str:
    if task in _TASK_LABELS:
        return _TASK_LABELS[task]
    text = str(task).replace("_", " ")
    return text[:1].upper() + text[1:]


def metric_label(metric: str | None) -> str:
    if metric is None or (isinstance(metric, float) and math.isnan(metric)) or metric == "":
        return "Score"
    return _METRIC_LABELS.get(metric, f"Score ({str(metric).replace('_', ' ')})")


def length_label(length: int) -> str:
    """Context length in tokens: 1024 -> "1K", 131072 -> "128K", 1000 -> "1000"."""
    length = int(length)
    if length >= 1024 and length % 1024 == 0:
        k = length // 1024
        return f"{k // 1024}M" if k >= 1024 and k % 1024 == 0 else f"{k}K"
    return str(length)


def ratio_label(ratio: float) -> str:
    return f"{float(ratio):.2f}"


_BYTE_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024), ("B", 1))


def byte_unit(max_bytes: float) -> tuple[str, int]:
    """The largest binary unit in which `max_bytes` is at least 1: ("MiB", 1048576)."""
    for name, size in _BYTE_UNITS:
        if max_bytes >= size:
            return name, size
    return "B", 1


def seconds_unit(max_seconds: float) -> tuple[str, float]:
    """("ms", 1e-3) below ten seconds, else ("s", 1)."""
    return ("s", 1.0) if max_seconds >= 10 else ("ms", 1e-3)


_RATIO_SUFFIX = re.compile(r"-cr\d+(?:\.\d+)?")


def press_family(press: str) -> str:
    """Press variant name without its compression ratio: `snapkv-cr0.50-ws64` -> `snapkv-ws64`."""
    return _RATIO_SUFFIX.sub("", str(press))


# --- saving ---------------------------------------------------------------------------------------------------


def save(fig, out_stem: Path) -> list[Path]:
    """Write `out_stem.pdf` (vector) and `out_stem.png` (300 dpi), each atomically; close the figure.

    Returns both paths. Metadata that changes between runs (creation date) is left out of the PDF so that the same
    tables give byte-identical PDFs.
    """
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.parent / f"{out_stem.name}.pdf", out_stem.parent / f"{out_stem.name}.png"]
    try:
        with paper_style():
            for path, fmt, metadata in (
                (paths[0], "pdf", {"CreationDate": None, "Creator": None, "Producer": None}),
                (paths[1], "png", {"Software": None}),
            ):
                tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
                try:
                    fig.savefig(
                        tmp, format=fmt, dpi=DPI, bbox_inches="tight", pad_inches=0.03, metadata=metadata
                    )
                    os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
    finally:
        plt = pyplot()

        plt.close(fig)
    return paths
