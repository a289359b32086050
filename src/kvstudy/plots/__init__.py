"""Figure registry: figure name -> the tables it needs and how to draw it.

Adding a figure is an entry in `kvstudy.plots.catalog` (its name, caption, tables, options and check) and a module
`kvstudy.plots.<name>` with its `build`, imported only when the figure is drawn: reading the catalog (config
validation) imports neither matplotlib nor pandas. Each figure reads some of the tables of
`docs/data-contracts.md`, loaded with their contract's types (`kvstudy.plots.tables.load_table`):

- "results": `results/tables/results.csv` (one row per eval job),
- "samples": `results/tables/samples.csv` (one row per sample),
- "pareto":  `results/analysis/pareto.csv` (one row per press variant and (model, task, length)),
- "significance": `results/analysis/significance.csv` (one row per paired test against the baseline),
- "tuning_candidates": `results/analysis/tuning/candidates.csv` (one row per search candidate and task),
- "timing": `results/tables/timing.csv` (the timing protocol's medians and intervals; header only when off),

and writes `out_stem.pdf` and `out_stem.png`. A figure with nothing to show raises `ValueError` (never an empty
plot).

A figure may take options (`options`: name -> description): a study's `figures:` entry can then be a mapping
`{figure: NAME, name: OUTPUT_NAME, OPTION: value, ...}` (see `kvstudy.plots.specs`); `build(tables, **options)`.
A figure that needs something of the study (a press with a ratio, a task with needle depths) says so in `check`,
asked when the config is validated, so a study whose figure cannot be drawn stops before its jobs run.
"""

from __future__ import annotations

from pathlib import Path

from kvstudy.plots.registry import FIGURES, TABLES, Figure, get_figure, register, table_path  # noqa: F401  (the API)


def make_figure(name: str, tables_dir: Path, analysis_dir: Path, out_stem: Path, options: dict | None = None
                ) -> list[Path]:
    """Load the CSVs figure `name` needs (results.csv, samples.csv from `tables_dir`; pareto.csv from
    `analysis_dir`) and write `out_stem.pdf` and `out_stem.png`. Returns the two paths."""
    from kvstudy.plots.tables import load_table  # pandas: only where a figure is drawn

    figure = get_figure(name)
    tables = {t: load_table(table_path(t, tables_dir, analysis_dir)) for t in figure.needs}
    for t in figure.uses:
        path = table_path(t, tables_dir, analysis_dir)
        tables[t] = load_table(path) if path.exists() else None
    return figure.draw(tables, out_stem, options)


from kvstudy.plots import catalog  # noqa: E402,F401  (registers every figure)
