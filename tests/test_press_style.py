"""The figures' one style table (kvstudy.plots.press_style): every registered press has a label, a colour, a marker
and an order; the colours are far enough apart to tell (CIELAB distance), variants say what they add; validating a
study reads the figure catalog without importing pandas or matplotlib."""

from __future__ import annotations

import itertools
import subprocess
import sys

from kvstudy.plots import press_style
from kvstudy.plots.press_style import split_variant, style, table
from kvstudy.plots.style import method_color, method_label, method_marker, method_order
from kvstudy.presses import PRESSES

MIN_DELTA_E = 20.0  # CIE76 distance; CAB and Decoding were 6 apart under the old hashed colours


def _lab(color: str) -> tuple[float, float, float]:
    """sRGB hex -> CIELAB (D65), the textbook formulas (no colour library is installed)."""
    rgb = [int(color.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    xyz = (
        (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047,
        0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2],
        (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883,
    )
    f = [t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116 for t in xyz]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def _distance(a: str, b: str) -> float:
    return sum((p - q) ** 2 for p, q in zip(_lab(a), _lab(b))) ** 0.5


def test_every_registered_press_has_a_row():
    rows = table()
    assert list(rows) == list(PRESSES)  # registry order, nothing more, nothing less
    assert [r.order for r in rows.values()] == list(range(len(PRESSES)))
    assert "quantized" not in rows  # no style for a press that does not exist


def test_colours_are_distinguishable():
    rows = table()
    worst = min(((_distance(a.color, b.color), n, m) for (n, a), (m, b) in
                 itertools.combinations(rows.items(), 2)))
    assert worst[0] >= MIN_DELTA_E, f"{worst[1]} and {worst[2]} are {worst[0]:.1f} apart in CIELAB"
    assert _distance(rows["cab"].color, rows["decoding"].color) >= MIN_DELTA_E
    assert rows["no_press"].color == "#000000"
    # every colour readable on white: lightness below 80
    assert all(_lab(r.color)[0] < 80 for r in rows.values()), {n: _lab(r.color)[0] for n, r in rows.items()}
    assert len({(r.color, r.marker) for r in rows.values()}) == len(rows)


def test_labels_are_unique_and_named():
    labels = [r.label for r in table().values()]
    assert len(set(labels)) == len(labels)
    assert method_label("streaming_llm") == "StreamingLLM" and method_label("no_press") == "No press"


def test_a_press_registered_without_curated_style_gets_a_spare_colour(monkeypatch):
    from kvstudy.presses import PressSpec

    monkeypatch.setitem(PRESSES, "brand_new", PressSpec("brand_new", "test", None))
    table.cache_clear()
    try:
        row = table()["brand_new"]
        others = [r.color for n, r in table().items() if n != "brand_new"]
        assert row.label == "Brand new" and row.color not in others
        assert row.color != press_style.UNKNOWN_COLOR
    finally:
        table.cache_clear()


def test_variants_say_what_they_add():
    assert split_variant("no_press+int4") == ("no_press", "int4", False)
    assert split_variant("snapkv-qa+int8") == ("snapkv", "int8", True)
    # `no_press+int4` is the int4 cache, styled as the int4 press
    assert style("no_press+int4") == table()["int4"]
    assert method_label("streaming_llm+int4") == "StreamingLLM + int4"
    assert method_color("streaming_llm+int4") == method_color("streaming_llm")
    assert method_marker("streaming_llm+int4") == method_marker("streaming_llm")
    assert method_label("snapkv-qa") == "SnapKV (query-aware)"
    assert method_order(["int4", "cab", "snapkv+int4", "snapkv", "no_press", "zzz"]) == [
        "no_press", "snapkv", "snapkv+int4", "cab", "int4", "zzz"]


def test_an_unregistered_method_is_grey_and_labelled():
    assert method_color("my_new_press") == press_style.UNKNOWN_COLOR
    assert method_label("my_new_press") == "My new press"


def test_validating_a_study_imports_no_plotting_code():
    code = ("import sys, yaml; from kvstudy.config import validate; validate(yaml.safe_load(open('config.yaml'))); "
            "bad = [m for m in ('pandas', 'matplotlib', 'seaborn', 'kvstudy.plots.score_vs_ratio', "
            "'kvstudy.plots.style') if m in sys.modules]; print(','.join(bad))")
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"validation imported {out.stdout.strip()}"
