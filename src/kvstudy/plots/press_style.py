"""The one style table of the figures: label, colour, marker and order of every press, derived from the press
registry (`kvstudy.presses.PRESSES`), and of its variants (a quantized cache `+int4`, a query-aware `-qa`).

Every registered press gets a row, in registry order (so `no_press` first): its label, colour and marker from the
curated entries below, chosen by hand to be told apart (the tests check a minimum CIELAB distance between every two
colours); a press registered later without an entry takes the next unused colour and marker of the pools, never
a colour derived from a hash (two hashed colours can land on the same olive). A variant keeps its press's colour
and marker (the figures draw a method's other variants hollow) and says what it adds in its label:
`streaming_llm-cr0.50+int4` is "StreamingLLM + int4", never plain "StreamingLLM".

Only the registry is imported here (no matplotlib, no pandas): config validation may read the table.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# curated: colourblind-safe hues first (seaborn "colorblind"), then Paul Tol's and ColorBrewer's darker ones;
# no_press is the black reference, random the grey floor every method should beat
_CURATED: dict[str, tuple] = {  # press -> (label, colour, marker: a matplotlib marker; (n, 1, 0) is an n-point star)
    "no_press": ("No press", "#000000", "o"),
    "knorm": ("Knorm", "#0173b2", "s"),
    "streaming_llm": ("StreamingLLM", "#de8f05", "^"),
    "snapkv": ("SnapKV", "#029e73", "D"),
    "tova": ("TOVA", "#d55e00", "v"),
    "expected_attention": ("Expected attention", "#cc78bc", "P"),
    "keydiff": ("KeyDiff", "#56b4e9", "p"),
    "random": ("Random", "#7f7f7f", "X"),
    "pyramidkv": ("PyramidKV", "#ca9161", "<"),
    "observed_attention": ("Observed attention", "#332288", ">"),
    "adakv": ("AdaKV", "#843c39", "h"),
    "duo_attention": ("DuoAttention", "#637939", "*"),
    "decoding": ("Decoding", "#66a61e", "d"),
    "decoding_budget": ("Decoding (budget)", "#a6761d", "8"),
    "cab": ("CAB", "#e7298a", "H"),
    "h2o": ("H2O", "#e31a1c", (5, 1, 0)),
    "cab_accumulated": ("CAB (accumulated)", "#6b6ecf", (3, 1, 0)),
    "int8": ("Int8 (quantized)", "#17becf", (4, 1, 0)),
    "int4": ("Int4 (quantized)", "#882255", (6, 1, 0)),
}
# for presses registered without a curated entry
_SPARE_COLORS = ("#1f78b4", "#b15928", "#6a3d9a", "#e31a1c", "#33a02c", "#ff7f00", "#00429d", "#8c564b")
_SPARE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*", "d", "H", "8")
UNKNOWN_COLOR = "#b0b0b0"  # a method no registered press has (a table from an older registry): light grey

_QUANT = re.compile(r"\+(int\d+)$")


@dataclass(frozen=True)
class PressStyle:
    label: str
    color: str
    marker: object  # a matplotlib marker
    order: int
    has_ratio: bool = True  # takes a compression ratio (labels then show it)
    quantization: str | None = None  # the KV quantization the method or variant stands for


def _derived_label(name: str) -> str:
    text = str(name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


@functools.cache
def table() -> dict[str, PressStyle]:
    """Press name -> its style, for every registered press, in registry order."""
    from kvstudy.presses import PRESSES

    out: dict[str, PressStyle] = {}
    taken = {c for _, c, _ in _CURATED.values()}
    spare = iter(c for c in _SPARE_COLORS if c not in taken)
    for order, name in enumerate(PRESSES):
        if name in _CURATED:
            label, color, marker = _CURATED[name]
        else:
            label, color, marker = _derived_label(name), next(spare, UNKNOWN_COLOR), _SPARE_MARKERS[order % 15]
        out[name] = PressStyle(label, color, marker, order, PRESSES[name].has_ratio, PRESSES[name].quantization)
    return out


def split_variant(method: str) -> tuple[str, str | None, bool]:
    """`method` as the figures see it (a press name, or `no_press+int4`, `no_press-qa`) -> (press, quantization,
    query_aware)."""
    method = str(method)
    m = _QUANT.search(method)
    quant = m.group(1) if m else None
    base = method[: m.start()] if m else method
    qa = base.endswith("-qa")
    return (base[:-3] if qa else base), quant, qa


def style(method: str) -> PressStyle:
    """The style of a method or method-level variant: `no_press+int4` is the int4 press (the same cache)."""
    rows = table()
    base, quant, qa = split_variant(method)
    if base == "no_press" and quant in rows and not qa:
        return rows[quant]
    if base in rows:
        row = rows[base]
        return PressStyle(variant_label(row.label, quant, qa), row.color, row.marker, row.order, row.has_ratio,
                          quant or row.quantization)
    return PressStyle(variant_label(_derived_label(base), quant, qa), UNKNOWN_COLOR, "o", len(rows))


def variant_label(label: str, quantization: str | None, query_aware: bool) -> str:
    """"StreamingLLM" + int4 -> "StreamingLLM + int4"; query-aware -> "SnapKV (query-aware)"."""
    return label + (" (query-aware)" if query_aware else "") + (f" + {quantization}" if quantization else "")


def is_quantized(method: str, name: str) -> bool:
    """Whether a variant (its method, and its slug or family) keeps a quantized cache: a quantizing method (int4)
    or a `+int4` variant of another press."""
    return bool(style(method).quantization or family_suffix(name)[0])


def family_suffix(family: str) -> tuple[str | None, bool]:
    """(quantization, query_aware) of a press family or variant slug (`knorm-ws64-qa+int4`)."""
    m = _QUANT.search(str(family))
    base = str(family)[: m.start()] if m else str(family)
    return (m.group(1) if m else None), base.endswith("-qa")
