"""A validated study config as a frozen value: what kvstudy.grid expands into jobs and tuning derives its
sub-studies from (`dataclasses.replace`). A bottom module: it imports nothing of kvstudy but the frozen containers
of kvstudy.job, so the grid can take a Study without an import loop.

It is built from a config that kvstudy.config.validate has checked and filled (`kvstudy.config.study` does both):
validation imports the grid (a study must keep a job, its cells must run), so it cannot live below the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from kvstudy.job import FrozenDict, freeze, thaw


@dataclass(frozen=True, kw_only=True)
class Study:
    """The sections the grid and tuning read, frozen (mappings FrozenDict, lists tuples); `rest` holds the other
    sections (timing, figures, data, resources...) as they are, so `as_config()` gives the whole config back."""

    models: FrozenDict
    tasks: FrozenDict
    presses: tuple
    lengths: tuple
    seeds: tuple
    eval: FrozenDict
    exclude: tuple = ()
    rest: FrozenDict = FrozenDict()

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, freeze(getattr(self, f.name)))

    @classmethod
    def from_config(cls, config: dict) -> Study:
        """The Study of a validated config (kvstudy.config.validate: defaults filled); a Study is returned as is."""
        if isinstance(config, Study):
            return config
        own = {f.name for f in fields(cls)} - {"rest"}
        return cls(**{k: v for k, v in config.items() if k in own},
                   rest={k: v for k, v in config.items() if k not in own})

    def as_config(self) -> dict:
        """The config dict again (plain values), e.g. to validate a derived study."""
        out = {f.name: thaw(getattr(self, f.name)) for f in fields(self) if f.name != "rest"}
        return out | thaw(self.rest)
