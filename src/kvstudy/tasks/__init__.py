"""The tasks: name -> Task class (kvstudy.tasks.registry). Adding a task is one module with one `@register` class."""

from __future__ import annotations

from kvstudy.tasks.base import Sample, Task  # noqa: F401  (re-exported)
from kvstudy.tasks.registry import TASKS, get_task, register  # noqa: F401  (re-exported)

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
    ruler_qa,
    variable_tracking,
)

__all__ = ["TASKS", "Sample", "Task", "get_task", "register"]
