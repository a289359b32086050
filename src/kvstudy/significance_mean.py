"""The test behind summary_score's mean over tasks: one stratified sign-flip test over all paired samples.

summary_score's `mean` is the mean over the higher-is-better tasks of each task's mean score. Its difference to the
baseline is a weighted sum of every paired difference, where a sample of task t weighs scale_t / (T * n_t) (T tasks,
n_t paired samples of t in this comparison; scale_t = 1 for scores in [0, 1], which summary_score shows x 100, and
1/100 for others, shown as they are). The test flips the signs of the units of every task independently (a unit is a
cluster of `kvstudy.significance`, a sample where it stands alone; tasks are strata: a unit never leaves its task,
and keeps its task's weight) and compares the weighted sum with its sign-flip distribution (`kvstudy.sign_flip`):
exact for <= 16 units, else 10,000 random patterns. The CI is a stratified cluster bootstrap: units resampled within
each task, each task's mean re-formed, then weighted as above.

Lower-is-better tasks (perplexity) are not in summary_score's mean and not in this test: a mean of accuracies and
perplexities has no unit. The rows go to significance.csv with task "mean" (as pareto.csv's mean over tasks),
family "<model>/mean", Holm within the family (all lengths, seeds and variants of the model, as the per-task rows
are corrected within model x task). A comparison gets a row only where it has paired samples in every
higher-is-better task of samples.csv, and there are two or more (summary_score shows a mean only then).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kvstudy.sign_flip import N_PERM, percentile_cis, rank_biserial, resampled_means, sign_flip
from kvstudy.significance import SIGNIFICANCE_COLUMNS, _holm_by_family, _pairs, _with_direction

MEAN_TASK = "mean"
_CMP = ["model", "length", "seed", "press"]


def mean_significance(samples: pd.DataFrame, baseline: str = "no_press", alpha: float = 0.05, n_boot: int = 2000,
                      seed: int = 0, n_perm: int = N_PERM) -> pd.DataFrame:
    """One row per variant x (model, length, seed) testing the mean over the higher-is-better tasks."""
    samples = _with_direction(samples)
    good = samples[samples["higher_is_better"].astype(bool)]
    tasks = sorted(good["task"].astype(str).unique())
    pairs = _pairs(good, baseline) if len(tasks) > 1 else good.iloc[:0]
    if pairs.empty:
        return pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)
    pairs = pairs.assign(task=pairs["task"].astype(str), d=pairs["score"] - pairs["score_baseline"])
    complete = pairs.groupby(_CMP)["task"].transform("nunique") == len(tasks)
    pairs = pairs[complete]
    if pairs.empty:
        return pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)
    scale = {t: 1.0 if good.loc[good["task"] == t, "score"].between(0, 1).all() else 0.01 for t in tasks}
    units = (pairs.groupby([*_CMP, "task", "cluster"], sort=True)
             .agg(sum=("d", "sum"), size=("d", "size"), v=("score", "sum"), b=("score_baseline", "sum"))
             .reset_index())
    per_task = units.groupby([*_CMP, "task"], sort=True)[["size", "v", "b"]].sum().reset_index()
    per_task["w"] = per_task["task"].map(scale) / len(tasks)
    units = units.merge(per_task[[*_CMP, "task", "size", "w"]].rename(columns={"size": "n_t"}), on=[*_CMP, "task"])
    units["weight"] = units["w"] / units["n_t"]
    out = _rows(pairs, per_task, units, baseline)
    _tests(out, units, tasks, scale, alpha, n_boot, seed, n_perm)
    return _holm_by_family(out, alpha)[SIGNIFICANCE_COLUMNS]


def _rows(pairs: pd.DataFrame, per_task: pd.DataFrame, units: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The comparisons with their identity, sizes and the scores of the mean (weighted task means)."""
    per_task = per_task.assign(score=per_task["w"] * per_task["v"] / per_task["size"],
                               baseline_score=per_task["w"] * per_task["b"] / per_task["size"])
    out = per_task.groupby(_CMP, sort=True).agg(n=("size", "sum"), score=("score", "sum"),
                                                baseline_score=("baseline_score", "sum")).reset_index()
    first = pairs.groupby(_CMP, sort=True).agg(method=("method", "first"),
                                               compression_ratio=("compression_ratio", "first")).reset_index()
    out = out.merge(first, on=_CMP).merge(units.groupby(_CMP).size().rename("n_units").reset_index(), on=_CMP)
    return out.assign(task=MEAN_TASK, baseline=baseline, family=out["model"].astype(str) + "/" + MEAN_TASK,
                      diff=out["score"] - out["baseline_score"], higher_is_better=True, tested_on="score",
                      test="stratified_sign_flip")


def _tests(out: pd.DataFrame, units: pd.DataFrame, tasks: list[str], scale: dict, alpha: float, n_boot: int,
           seed: int, n_perm: int) -> None:
    """Sign-flip p, z and effect size of the weighted unit differences, and the stratified bootstrap CI, for the
    comparisons of `out` (ordered as `units` groups them). Comparisons with the same units per task share their
    sign patterns and resamples."""
    # units are sorted by comparison, task, cluster (groupby order), as `out` is by comparison
    shape = units.groupby([*_CMP, "task"], sort=True).size().unstack("task").reindex(columns=tasks)
    shape = pd.Series(list(map(tuple, shape.to_numpy(int))))
    contrib = (units["weight"] * units["sum"]).to_numpy()
    sums, sizes = units["sum"].to_numpy(), units["size"].to_numpy(float)
    starts = np.r_[0, np.cumsum(out["n_units"].to_numpy())][:-1]
    stat, p, effect, ci = np.empty(len(out)), np.empty(len(out)), np.empty(len(out)), np.empty((len(out), 2))
    for counts in shape.unique():
        rows = np.flatnonzero((shape == counts).to_numpy())
        take = starts[rows][:, None] + np.arange(sum(counts))[None, :]
        stat[rows], p[rows] = sign_flip(contrib[take], n_perm, seed)
        effect[rows] = rank_biserial(contrib[take])
        boot, lo = 0.0, 0
        for j, (task, k) in enumerate(zip(tasks, counts)):  # each task's units resampled within the task
            block = take[:, lo : lo + k]
            boot = boot + scale[task] / len(tasks) * resampled_means(sums[block], sizes[block], n_boot, [seed, j])
            lo += k
        ci[rows] = percentile_cis(boot, 1 - alpha)
    out["statistic"], out["p_value"], out["effect_size"] = stat, p, effect
    out["ci_low"], out["ci_high"] = ci[:, 0], ci[:, 1]
    out["tested_diff"] = np.bincount(np.repeat(np.arange(len(out)), out["n_units"]), weights=contrib,
                                     minlength=len(out))
