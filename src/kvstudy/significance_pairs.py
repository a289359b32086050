"""Method against method (`compare:`, kvstudy.pairs): for each pair (a, b) of press variants, the paired tests of
kvstudy.significance with b in the baseline's place, on the samples both ran in each (model, task, length, seed).
The unit of a test is the same as against no_press (a sample, or a cluster of samples that share a document); Holm
runs within each model x task over every pair's comparisons, so asking for more pairs makes each test stricter."""

from __future__ import annotations

import pandas as pd

from kvstudy.significance import SIGNIFICANCE_COLUMNS, _holm_by_family, significance


def pairwise(samples: pd.DataFrame, pairs: list[tuple[str, str]], alpha: float = 0.05) -> pd.DataFrame:
    """One row per pair x (model, task, length, seed) where both variants have samples: `press` is a, `baseline` b,
    `diff` = a's score - b's; `p_holm` corrected over all pairs of the family."""
    tables = [significance(samples[samples["press"].isin([a, b])], baseline=b, alpha=alpha) for a, b in pairs]
    tables = [t for t in tables if len(t)]
    if not tables:
        return pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)
    return _holm_by_family(pd.concat(tables, ignore_index=True), alpha)[SIGNIFICANCE_COLUMNS]


def main(argv: list[str] | None = None) -> None:
    """`python -m kvstudy.significance_pairs --samples samples.csv --pairs '[["a", "b"], ...]' --out pairs.csv`"""
    import argparse
    import json
    from pathlib import Path

    from kvstudy.atomic import write_csv_atomic
    from kvstudy.significance import read_samples

    p = argparse.ArgumentParser(prog="python -m kvstudy.significance_pairs", description=main.__doc__)
    p.add_argument("--samples", required=True)
    p.add_argument("--pairs", required=True, help="JSON list of [variant, baseline variant] slug pairs")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    pairs = [tuple(x) for x in json.loads(a.pairs)]
    write_csv_atomic(pairwise(read_samples(Path(a.samples)), pairs), Path(a.out))


if __name__ == "__main__":
    main()
