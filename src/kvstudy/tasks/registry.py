"""The task registry: name -> Task class. A bottom module of the package: the task modules register themselves
here, and `kvstudy.tasks` imports them all (so the registry is full once `kvstudy.tasks` is imported)."""

from __future__ import annotations

from kvstudy.tasks.base import Task

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, params: dict | None = None) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {', '.join(sorted(TASKS))}")
    return TASKS[name](**(params or {}))
