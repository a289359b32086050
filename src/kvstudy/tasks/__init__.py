"""Task registry: name -> Task class. Adding a task is one module with one `@register` class."""

from __future__ import annotations

from kvstudy.tasks.base import Sample, Task

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, params: dict | None = None) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {', '.join(sorted(TASKS))}")
    return TASKS[name](**(params or {}))


from kvstudy.tasks import (  # noqa: E402,F401  (registration)
    common_words,
    countdown,
    freq_words,
    helmet_cite,
    helmet_icl,
    helmet_rag,
    helmet_rerank,
    hf_qa,
    json_kv,
    kv_retrieval,
    longproc,
    narrativeqa,
    niah,
    path_traversal,
    perplexity,
    ruler_niah,
    variable_tracking,
)

__all__ = ["TASKS", "Sample", "Task", "get_task", "register"]
