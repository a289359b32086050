"""Press registry: method name -> how to build it, its parameters and defaults.

Adding a method is one module that calls `register(...)`. kvpress-backed presses are declared in
`kvpress_backed.py`; presses kvpress lacks get a file of their own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class PressSpec:
    name: str
    description: str
    factory: Callable[..., Any] | None  # kwargs -> press object (context manager over a model); None = no press
    defaults: dict[str, Any] = field(default_factory=dict)  # every accepted parameter with its default
    has_ratio: bool = True  # takes `compression_ratio`
    attn_implementation: str | None = None  # attention the model must be loaded with, if the press needs one

    def build(self, params: dict[str, Any]):
        unknown = set(params) - set(self.defaults) - ({"compression_ratio"} if self.has_ratio else set())
        if unknown:
            raise ValueError(f"press {self.name!r} has no parameter {sorted(unknown)[0]!r}")
        if self.factory is None:
            return None
        return self.factory(**{**self.defaults, **params})


PRESSES: dict[str, PressSpec] = {}


def register(spec: PressSpec) -> PressSpec:
    PRESSES[spec.name] = spec
    return spec


def get_press(name: str) -> PressSpec:
    if name not in PRESSES:
        raise KeyError(f"unknown press {name!r}; registered: {', '.join(PRESSES)}")
    return PRESSES[name]


register(PressSpec("no_press", "full KV cache (the baseline)", None, has_ratio=False))
importlib.import_module("kvstudy.presses.kvpress_backed")
