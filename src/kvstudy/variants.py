"""Press entries of a study -> press variants and their names (slugs). A bottom module: it imports nothing of
kvstudy, so the grid (kvstudy.grid), the tuning package and the status report all build on it without a loop.

A searched entry (`search:`, kvstudy.tuning) stands for its tuned test-split variants `{base}-tuned-{mode}`; its
candidates are named by the same `slug` (kvstudy.tuning.study).
"""

from __future__ import annotations

import itertools
import re

TUNING_MODES = ("global", "task")  # a search's `mode` (docs/tuning.md): per (model, press) or per task too


def _abbr(name: str) -> str:
    return "".join(part[0] for part in name.split("_") if part)


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    return re.sub(r"[^A-Za-z0-9.]+", "", str(v))


def slug(method: str, ratio: float | None, params: dict) -> str:
    """Readable, filesystem-safe, deterministic name of a press variant, e.g. `snapkv-cr0.50-ws64`.

    The variant options say themselves at the end: `-qa` when the press sees the question (`query_aware: true`;
    `-qp` for `query_aware: prompt`), `+int4` for a quantized cache (`quantization: int4`), e.g. `snapkv-cr0.50-qa+int4`."""
    options = {"query_aware", "quantization"}
    parts = [method] + ([f"cr{ratio:.2f}"] if ratio is not None else [])
    parts += [f"{_abbr(k)}{_fmt(params[k])}" for k in sorted(params) if k not in options]
    if params.get("query_aware"):
        parts.append("qp" if params["query_aware"] == "prompt" else "qa")
    out = "-".join(parts)
    if params.get("quantization"):
        out += f"+{params['quantization']}"
    return out


def base_slug(method: str, fixed: dict) -> str:
    """The name of a searched entry's fixed combination (compression_ratio included): its tuned variants and its
    tuning choices are named after it."""
    fixed = dict(fixed)
    ratio = fixed.pop("compression_ratio", None)
    return slug(method, ratio, fixed)


def search_modes(search: dict) -> list[str]:
    """A search block's `mode` as a list, without repeats (default: both modes)."""
    mode = search.get("mode", list(TUNING_MODES))
    return [mode] if isinstance(mode, str) else list(dict.fromkeys(mode))


def fixed_names(entry: dict) -> set[str]:
    return {k for k in entry if k not in ("method", "search")}


def fixed_combos(entry: dict) -> list[dict]:
    """The fixed (not searched) parameter combinations of an entry, compression_ratio included."""
    keys = sorted(fixed_names(entry))
    grids = [entry[k] if isinstance(entry[k], list) else [entry[k]] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*grids)]


def tuned_variants(method: str, fixed: dict, search: dict) -> list[dict]:
    """The test-split variants of one searched entry's fixed combination: `{base}-tuned-{mode}` per mode. Their
    `params` are the fixed ones; the chosen ones are read at run time from the tuning JSON
    (kvstudy.tuning.study.apply_choice)."""
    base = base_slug(method, fixed)
    ratio = fixed.get("compression_ratio")
    params = {k: v for k, v in fixed.items() if k != "compression_ratio"}
    return [
        {"press": f"{base}-tuned-{mode}", "method": method, "params": params,
         "compression_ratio": float(ratio) if ratio is not None else 0.0,
         "tuning": {"press": base, "mode": mode}}
        for mode in search_modes(search)
    ]


def variants(config: dict) -> list[dict]:
    """One dict per press variant: list-valued parameters expand into their cartesian product."""
    out = []
    for entry in config["presses"]:
        method = entry["method"]
        if "search" in entry:  # searched press: its tuned test-split variants (params chosen on the dev split)
            out += [v for fixed in fixed_combos(entry) for v in tuned_variants(method, fixed, entry["search"])]
            continue
        keys = [k for k in entry if k != "method"]
        grids = [v if isinstance(v, list) else [v] for v in (entry[k] for k in keys)]
        for combo in itertools.product(*grids):
            params = dict(zip(keys, combo))
            if _window_over_cache(params):  # left out, and said so at validation (`dropped`)
                continue
            ratio = params.pop("compression_ratio", None)
            out.append(
                {
                    "press": slug(method, ratio, params),
                    "method": method,
                    "params": params,
                    "compression_ratio": float(ratio) if ratio is not None else 0.0,
                }
            )
    return out


def _window_over_cache(params: dict) -> bool:
    """A SnapKV/PyramidKV window larger than its absolute cache: the window alone overflows the budget."""
    size, window = params.get("cache_size"), params.get("window_size")
    return isinstance(size, int) and isinstance(window, int) and window > size


def dropped(config: dict) -> list[str]:
    """One line per press entry whose grid leaves out combinations (window_size larger than cache_size)."""
    out = []
    for i, entry in enumerate(config["presses"]):
        if "search" in entry or "cache_size" not in entry:
            continue
        keys = [k for k in entry if k != "method"]
        grids = [v if isinstance(v, list) else [v] for v in (entry[k] for k in keys)]
        gone = [dict(zip(keys, c)) for c in itertools.product(*grids) if _window_over_cache(dict(zip(keys, c)))]
        if gone:
            pairs = sorted({(p["window_size"], p["cache_size"]) for p in gone})
            out.append(f"presses[{i}] ({entry['method']}): {len(gone)} variant(s) left out, window_size larger than "
                       f"cache_size: {', '.join(f'window {w} > cache {c}' for w, c in pairs)}")
    return out
