"""The method-against-method comparisons a study asks for (`compare:`), as pairs of press variants at equal budget.

A `compare:` entry names two presses, each a method (`h2o`) or a variant slug (`snapkv-cr0.50-ws64`). Methods pair
their variants at the same budget (compression ratio and `cache_size`) whose shared settings agree (a window size
both have is the same); two slugs pair as named. Light (no pandas):
config validation asks it, and the significance_pairs rule passes its pairs to `kvstudy.significance_pairs`.
"""

from __future__ import annotations

from kvstudy.variants import variants


def _budget(v: dict) -> tuple:
    return (v["compression_ratio"], v["params"].get("cache_size"))


def _alike(x: dict, y: dict) -> bool:
    """Same budget and the same value of every setting both variants have (SnapKV against PyramidKV: the same
    window, kernel, pooling and question-awareness), so that the pair differs by its method alone."""
    shared = x["params"].keys() & y["params"].keys()
    return _budget(x) == _budget(y) and all(x["params"][k] == y["params"][k] for k in shared)


def variant_pairs(config: dict) -> list[tuple[str, str]]:
    """(a, b) slug pairs of every `compare:` entry, in order, each pair once; ValueError naming the entry when a name
    is not in the study or two methods share no budget."""
    vs = variants(config)
    out: list[tuple[str, str]] = []
    for i, (a, b) in enumerate(config.get("compare") or []):
        sides = []
        for name in (a, b):
            side = [v for v in vs if name in (v["press"], v["method"])]
            if not side:
                raise ValueError(f"compare[{i}]: {name!r} is neither a press method nor a variant of this study")
            sides.append(side)
        pairs = [(x["press"], y["press"]) for x in sides[0] for y in sides[1]
                 if x["press"] != y["press"] and (_alike(x, y) or (x["press"], y["press"]) == (a, b))]
        if not pairs:
            raise ValueError(f"compare[{i}]: {a} and {b} have no variants at the same budget (compression_ratio, "
                             "cache_size) and shared settings; name two variants to compare them anyway")
        out += [p for p in pairs if p not in out]
    return out
