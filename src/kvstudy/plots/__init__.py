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

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

TABLES = ("results", "samples", "pareto", "significance", "tuning_candidates", "timing")


@dataclass(frozen=True)
class Figure:
    name: str
    description: str  # the figure's caption (`kvstudy figures`, the provenance page)
    needs: tuple[str, ...]  # subset of TABLES
    options: dict[str, str] = field(default_factory=dict)  # option name -> description
    # (the study's jobs from kvstudy.grid, the entry's options) -> why the study cannot draw it, or None
    check: Callable[[list, dict], "str | None"] | None = None
    uses: tuple[str, ...] = ()  # tables read where they exist (a figure falls back without them)
    module: str = ""  # the module with its `build(tables, **options)`; default kvstudy.plots.<name>

    @property
    def build(self) -> Callable[..., "object"]:
        """(tables, **options) -> matplotlib Figure (not saved), from the figure's module."""
        return importlib.import_module(self.module or f"{__name__}.{self.name}").build

    def draw(self, tables: dict, out_stem: Path, options: dict | None = None) -> list[Path]:
        """Build the figure from `tables` and write `out_stem.pdf` and `out_stem.png`; returns both paths."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ValueError(f"figure {self.name!r} has no option(s) {', '.join(unknown)} (options: {known})")
        from kvstudy.plots.style import paper_style, save

        missing = [t for t in self.needs if t not in tables or tables[t] is None]
        if missing:
            raise ValueError(f"figure {self.name!r} needs table(s) {', '.join(missing)}")
        with paper_style():
            fig = self.build(tables, **options)
        return save(fig, out_stem)


FIGURES: dict[str, Figure] = {}


def register(figure: Figure) -> Figure:
    unknown = set(figure.needs) - set(TABLES)
    if unknown:
        raise ValueError(f"figure {figure.name!r} needs unknown table(s) {sorted(unknown)}; known: {TABLES}")
    FIGURES[figure.name] = figure
    return figure


def get_figure(name: str) -> Figure:
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; registered: {', '.join(FIGURES)}")
    return FIGURES[name]


def table_path(table: str, tables_dir: Path, analysis_dir: Path) -> Path:
    if table in ("pareto", "significance"):
        return Path(analysis_dir) / f"{table}.csv"
    if table == "tuning_candidates":
        return Path(analysis_dir) / "tuning" / "candidates.csv"
    if table in TABLES:
        return Path(tables_dir) / f"{table}.csv"
    raise ValueError(f"unknown table {table!r}; known: {TABLES}")


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


from kvstudy.plots import catalog  # noqa: E402,F401  (registers every figure; it needs Figure and register above)
