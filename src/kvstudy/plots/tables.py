"""The tables the figures read, with the types of docs/data-contracts.md applied in one place.

Names and ids stay text ("0", "001", a model called "7"); flags (`higher_is_better`, `front_*`, `significant`,
`oom`, `chosen_*`) become booleans, with `higher_is_better` true where absent (the contract's default); numbers
become numbers (NaN where empty). A figure then compares `df["higher_is_better"]` directly instead of parsing
"False" / "0" again.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TEXT = ("model", "model_path", "task", "press", "method", "status", "metric", "phase", "params", "sample_id",
        "search", "objective_name", "better", "latency_source", "prediction", "references", "error", "family")
FLAGS = ("higher_is_better", "front_memory", "front_latency", "front_all", "front_peak_memory", "significant", "oom",
         "chosen_global", "chosen_task")
DEFAULT_TRUE = ("higher_is_better",)  # absent means true (data contract)
NUMBERS = ("length", "compression_ratio", "seed", "score", "kv_bytes", "kv_bytes_held", "kv_bytes_reference",
           "kv_bytes_full", "effective_ratio", "depth", "latency_seconds", "latency_low", "latency_high",
           "objective", "p_holm", "p_value", "diff", "ttft_seconds", "decode_tokens_per_second",
           "peak_memory_bytes", "kv_fraction_kept")
_TRUE = {"true", "1", "1.0", "yes"}


def as_bool(series: pd.Series, default: bool = False) -> pd.Series:
    """True/False, "True"/"false", 1/0 -> bool; empty (NaN) -> `default`; anything else -> False."""
    if series.dtype == bool:
        return series
    text = series.astype(str).str.strip().str.lower()
    return text.isin(_TRUE) | (series.isna() & default)


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a contract table with its columns' types: text, flags, numbers (other columns as they are)."""
    df = df.copy()
    for col in df.columns.intersection(TEXT):
        df[col] = df[col].where(df[col].isna(), df[col].astype(str))
    for col in df.columns.intersection(FLAGS):
        df[col] = as_bool(df[col], default=col in DEFAULT_TRUE)
    for col in df.columns.intersection(NUMBERS):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def load_table(path: Path) -> pd.DataFrame:
    """A table of docs/data-contracts.md with its types (`typed`); an empty file is an empty frame."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {path} does not exist")
    try:
        return typed(pd.read_csv(path, dtype={c: str for c in TEXT}, keep_default_na=True))
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def lower_is_better(df: pd.DataFrame) -> pd.Series:
    """Rows whose score is better when lower (perplexity): `higher_is_better` false, read through `typed`."""
    if "higher_is_better" not in df.columns:
        return pd.Series(False, index=df.index)
    return ~as_bool(df["higher_is_better"], default=True)
