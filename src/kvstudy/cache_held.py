"""The KV cache a press variant really held, the one figures, summaries and the Pareto table place it at.

A prefill press compresses the context once: it holds `kv_bytes` (the cache after prefill), its ratio is the
nominal `compression_ratio`, and it is compared with `no_press`'s cache after prefill. A decoding press (press
registry `phase == "decoding"`, e.g. `decoding`, `decoding_budget`) keeps the full cache at prefill and evicts
while generating: it holds `kv_bytes_final` (the cache at the end), compared with `no_press`'s final cache of the
same cell (same model, task, length and seed: the same tokens seen), and its ratio is the fraction it really
evicted, 1 - kv_tokens_final / no_press's kv_tokens_final, not the nominal ratio it was asked for.

Columns added to results.csv (docs/data-contracts.md): `phase`, `kv_tokens_held`, `kv_bytes_held`,
`kv_bytes_reference` (no_press's bytes in the same phase: what a saving is measured against) and
`effective_ratio`. Where a cell has no ok `no_press` job of that seed, the mean of its other seeds is the
reference; with none at all a decoding variant has no reference and no effective ratio (a warning says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BASELINE = "no_press"
HELD_COLUMNS = ["phase", "kv_tokens_held", "kv_bytes_held", "kv_bytes_reference", "effective_ratio"]
_CELL = ["model", "task", "length"]


def phase_of(method: str) -> str:
    """"decoding" for presses that evict while generating, else "prefill" (unknown methods included)."""
    from kvstudy.presses import PRESSES

    spec = PRESSES.get(str(method))
    return spec.phase if spec is not None else "prefill"


def _reference(results: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per row: no_press's `columns` of the same cell and seed, else the mean over the cell's seeds."""
    ok = results["status"].astype(str).eq("ok")
    base = results[ok & results["press"].astype(str).eq(BASELINE)]
    values = base[columns].apply(pd.to_numeric, errors="coerce")
    same_seed = values.groupby([base[k] for k in [*_CELL, "seed"]]).mean()
    any_seed = values.groupby([base[k] for k in _CELL]).mean()
    by_seed = results[[*_CELL, "seed"]].join(same_seed, on=[*_CELL, "seed"])[columns]
    by_cell = results[_CELL].join(any_seed, on=_CELL)[columns]
    return by_seed.fillna(by_cell)


def add_held(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """results.csv rows plus HELD_COLUMNS; also the warnings for decoding variants without a reference."""
    out = results.copy()
    num = lambda c: pd.to_numeric(out[c], errors="coerce")  # noqa: E731
    phases = {m: phase_of(m) for m in out["method"].dropna().unique()}
    out["phase"] = out["method"].map(phases).fillna("prefill")
    decoding = out["phase"].eq("decoding").to_numpy()
    ref = _reference(out, ["kv_bytes", "kv_bytes_final", "kv_tokens_final"])
    out["kv_tokens_held"] = np.where(decoding, num("kv_tokens_final"), num("kv_tokens_kept"))
    out["kv_bytes_held"] = np.where(decoding, num("kv_bytes_final"), num("kv_bytes"))
    out["kv_bytes_reference"] = np.where(decoding, ref["kv_bytes_final"], ref["kv_bytes"])
    measured = 1.0 - num("kv_tokens_final") / ref["kv_tokens_final"]
    out["effective_ratio"] = np.where(decoding, measured, num("compression_ratio"))
    ok = out["status"].astype(str).eq("ok")
    lost = out[ok & out["phase"].eq("decoding") & out["effective_ratio"].isna()]
    warnings = [f"aggregate: warning: {r.model}/{r.task}/{r.length}/{r.press}/seed{r.seed}: decoding press "
                f"without an ok no_press job in its cell to compare its final cache with: no effective ratio, "
                f"no saving" for r in lost.itertuples()]
    return out, warnings
