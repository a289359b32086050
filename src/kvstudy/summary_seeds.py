"""The spread across seeds (`summary_seeds`): per (model, task, length, press variant) the mean, standard deviation,
minimum and maximum over seeds of the score, of decode tokens/s and of each sub-score column results.csv has (a
task's extra metrics, judged sub-scores: kvstudy.metric_columns; empty for tasks without it), and how many seeds
ran ok. The LaTeX table shows the score's.

A seed's value is its job's row of results.csv (the score: the task's metric over that job's samples; decode
tokens/s: that job's mean). The standard deviation is the sample one (ddof 1) over seeds, empty with a single seed.
It describes how much a study's conclusion moves with the seed (which samples were drawn, a random press's
draw); it is not a test: the significance tables test on paired samples (docs/statistics.md).
"""

from __future__ import annotations

import pandas as pd

from kvstudy.metric_columns import in_table

MEASURES = {"score": "score", "decode_tps": "decode_tokens_per_second"}
STATS = ("mean", "std", "min", "max")
KEYS = ["model", "task", "length", "press"]


def seeds_table(results: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """One row per (model, task, length, press): `n_seeds` ok, `<measure>_<stat>` for each measure and stat, and
    `status` (`ok`, or `oom` / `failed` where no seed ran ok). Press variants in `order` within a block."""
    ok = results[results["status"].astype(str) == "ok"].copy()
    measures = MEASURES | {c: c for c in in_table(results.columns)}  # and each extra metric / sub-score
    for col in measures.values():
        ok[col] = pd.to_numeric(ok[col], errors="coerce")
    spread = ok.groupby(KEYS)[list(measures.values())].agg(list(STATS))
    name = {col: n for n, col in measures.items()}
    spread.columns = [f"{name[col]}_{stat}" for col, stat in spread.columns]
    counts = ok.groupby(KEYS)["seed"].nunique().rename("n_seeds")
    cells = results[KEYS + ["method", "compression_ratio"]].drop_duplicates(KEYS)
    status = results.assign(_s=results["status"].astype(str)).groupby(KEYS)["_s"].agg(_cell_status)
    out = cells.join(counts, on=KEYS).join(spread, on=KEYS).join(status.rename("status"), on=KEYS)
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    rank = {p: i for i, p in enumerate(order)}
    out = out.assign(_r=out["press"].map(rank)).sort_values(["model", "task", "length", "_r"], kind="mergesort")
    return out.drop(columns="_r").reset_index(drop=True)


def _cell_status(statuses: pd.Series) -> str:
    s = set(statuses)
    return "ok" if "ok" in s else "failed" if "failed" in s else "oom"


def seeds_latex(table: pd.DataFrame, order: list[str], cell, to_latex) -> str:
    """Mean ± std [min, max] of the score per task (columns) and press (rows, in `order`), one block per (model,
    length); `cell` and `to_latex` are kvstudy.summary's cell formatter and booktabs writer."""
    rows = {}
    for _, r in table.sort_values(["model", "length"], kind="mergesort").iterrows():
        text = cell(r["score_mean"], "" if r["status"] == "ok" else r["status"], 3)
        if r["status"] == "ok" and r["n_seeds"] > 1:
            text += f" $\\pm$ {r['score_std']:.3f} [{r['score_min']:.3f}, {r['score_max']:.3f}]"
        rows.setdefault((r["model"], int(r["length"]), r["press"]), {})[r["task"]] = text
    rank = {p: i for i, p in enumerate(order)}
    rows = dict(sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], rank.get(kv[0][2], len(rank)))))
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("--")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["Model", "Length", "Press"])
    seeds = sorted(set(table["n_seeds"][table["status"] == "ok"])) or [0]
    return to_latex(frame, "Score across seeds per press variant and task: mean $\\pm$ standard deviation "
                    f"[minimum, maximum] over {'/'.join(map(str, seeds))} seeds (one seed: the mean alone); a "
                    "description of the spread, not a test; OOM: out of memory; failed: the job raised.",
                    "tab:seeds")
