"""What every task produces: samples at an exact context length, and how they are scored."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


class TaskParamError(ValueError):
    """A bad value of one task parameter; config validation names it (`config error: tasks.NAME.KEY: ...`)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def stop_words(task, default: list[str]) -> list[str]:
    """The stop words generation uses for a task (class or instance): its own where it sets them (() = end of
    sequence only: helmet_cite, LongProc, path_traversal, countdown, whose answers run over sentences and lines),
    else `default`, the study's `eval.stop_words`."""
    own = getattr(task, "stop_words", None)
    return list(default) if own is None else list(own)


@dataclass
class Sample:
    id: str
    context_ids: list[int]  # compressed by the press at prefill
    question_ids: list[int]  # fed after compression: presses do not see the question
    references: list[str]
    depth: float | None = None  # needle depth (fraction of the context) where the task has one
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Task:
    """Base class: subclasses are dataclasses whose fields are the task's config parameters."""

    name: ClassVar[str]
    metric: ClassVar[str]
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "generate"  # "generate": greedy answer scored by `metric`; "perplexity": own loop
    higher_is_better: ClassVar[bool] = True
    # set per job from the model's config (`models.NAME.chat_template: auto | none`), not a task parameter
    chat_template: ClassVar[str] = "auto"

    # parameters with a fixed set of values, checked when the task is made (config validation names the key)
    param_choices: ClassVar[dict[str, tuple]] = {}
    depths: ClassVar[bool] = False  # samples carry a needle depth (the niah_heatmap figure draws them)

    n_samples: int = 40
    max_new_tokens: int = 4

    def __post_init__(self):
        for key, allowed in self.param_choices.items():
            value = getattr(self, key)
            if value not in allowed:
                raise TaskParamError(key, f"{value!r} is not one of {', '.join(map(str, allowed))}")

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        raise NotImplementedError

    def resolved(self, tokenizer) -> dict[str, Any]:
        """Every parameter as the samples are built for `tokenizer`, 'auto' resolved (`vocab: auto` -> english or
        lexicon): what the task is on that model. Each raw result records it (`job.task_resolved`); config
        validation refuses a task entry that resolves differently on two models of a study."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out.get("vocab") == "auto":
            from kvstudy.tasks.vocab import resolve_vocab

            out["vocab"] = resolve_vocab(tokenizer, "auto").name
        return out

    @classmethod
    def params(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls)}
