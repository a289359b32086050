"""The figure registry's machinery: `Figure` (name, caption, tables, options, check, where its `build` lives),
`register`, `get_figure` and the tables a figure may read. Apart from `kvstudy.plots` so that the catalog, which
registers every figure, imports it without importing the package that imports the catalog."""

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
        return importlib.import_module(self.module or f"kvstudy.plots.{self.name}").build

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
