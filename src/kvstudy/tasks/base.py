"""What every task produces: samples at an exact context length, and how they are scored."""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from kvstudy.metrics import EXECUTES_CODE, METRICS
from kvstudy.tasks.thinking import THINK_END

DEV_SEED_OFFSET = 1_000_000  # test seeds are < this (config schema), dev seeds are >= it: the splits never share one


class TaskParamError(ValueError):
    """A bad value of one task parameter; config validation names it (`config error: tasks.NAME.KEY: ...`)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def stop_words(task, default: list[str]) -> list[str]:
    """The stop words generation uses for a task (class or instance): its own where it sets them (() = end of
    sequence only: helmet_cite, LongProc, path_traversal, countdown, whose answers run over sentences and lines;
    newline only: HELMET's ICL, RAG, recall and rerank), else `default`, the study's `eval.stop_words`."""
    own = getattr(task, "stop_words", None)
    return list(default) if own is None else list(own)


def configured_stop_words(cls, params: dict, default: list[str]) -> list[str]:
    """The stop words of a task entry of a study: its `stop_words` parameter, else its class's, else `default`."""
    own = params.get("stop_words", getattr(cls, "stop_words", None))
    return list(default) if own is None else list(own)


def configured_chat_template(cls, params: dict, model_setting: str = "auto") -> str:
    """Whether a (model, task) pair's prompts use the chat template: `none` when the model or the task says so (the
    task's `chat_template` parameter, else its class's default: HELMET's ICL, RAG, recall and rerank run without)."""
    own = params.get("chat_template", getattr(cls, "chat_template", "auto"))
    return "none" if "none" in (own, model_setting) else "auto"


_TYPES = {  # annotation -> (check, what the value must be)
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
}


def _check_type(key: str, annotation, value) -> None:
    check = _TYPES.get(annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""))
    if check and not check[0](value):
        raise TaskParamError(key, f"{value!r} is not {check[1]}")


def check_template(key: str, template: str, allowed: set[str]) -> None:
    """A `str.format` template of a task parameter uses only the placeholders `allowed` (`{key}`), no attribute,
    index, conversion or format spec: anything else fails at sample time or reads more than the value."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise TaskParamError(key, f"{template!r} is not a valid template ({e})") from None
    for _, name, spec, conversion in parsed:
        if name is not None and (name not in allowed or spec or conversion):
            shown = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            raise TaskParamError(key, f"{template!r}: placeholder {shown} is not one of "
                                 f"{', '.join('{' + a + '}' for a in sorted(allowed))}")


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

    # parameters with a fixed set of values, checked when the task is made (config validation names the key)
    param_choices: ClassVar[dict[str, tuple]] = {}
    # [low, high] of every numeric parameter, inherited and extended by subclasses (`ranges()`); checked, with each
    # parameter's type (its annotation: int, float, bool, str), when the task is made, so config validation refuses
    # a bad value before any job instead of a job failing (or silently doing something else) at sample time
    param_ranges: ClassVar[dict[str, tuple]] = {"n_samples": (1, 100_000), "max_new_tokens": (1, 131_072),
                                                "thinking_max_new_tokens": (0, 131_072)}
    depths: ClassVar[bool] = False  # samples carry a needle depth (the niah_heatmap figure draws them)

    n_samples: int = 40
    max_new_tokens: int = 4
    # Prompting (README "Prompting"), each overridable per study (tasks.NAME.<key>); the defaults are HELMET's.
    # `chat_template: none` builds the prompt as plain text; a job's value is `none` when the task or the model
    # (models.NAME.chat_template) says so (kvstudy.grid writes it into the job, kvstudy.evaluate applies it)
    chat_template: str = "auto"
    stop_words: tuple | None = None  # None: the study's eval.stop_words; (): end of sequence only
    # a reasoning model's thoughts are not scored: only what follows the last end marker (kvstudy.tasks.thinking)
    strip_thinking: bool = True
    thinking_end: tuple = THINK_END
    thinking_max_new_tokens: int = 0  # output budget of a model that thinks on this task; 0: max_new_tokens
    # extra metrics (kvstudy.metrics names) scored on each sample's answer beside `metric`, the one `score` means:
    # each sample keeps its value under the metric's name, quality.sub_scores their means (results.csv columns)
    metrics: tuple = ()

    def __post_init__(self):
        for f in fields(self):
            _check_type(f.name, f.type, getattr(self, f.name))
        if self.chat_template not in ("auto", "none"):
            raise TaskParamError("chat_template", f"{self.chat_template!r} is not one of auto, none")
        for key, nullable in (("stop_words", True), ("thinking_end", False), ("metrics", False)):
            value = getattr(self, key)
            if value is None and nullable:
                continue
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
                    isinstance(w, str) and w for w in value):
                raise TaskParamError(key, f"{value!r} is not a list of non-empty strings")
            setattr(self, key, tuple(value))
        self._check_metrics()
        for key, (low, high) in self.ranges().items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise TaskParamError(key, f"{value!r} is outside [{low}, {high}]")
        for key, allowed in self.param_choices.items():
            value = getattr(self, key)
            if value not in allowed:
                raise TaskParamError(key, f"{value!r} is not one of {', '.join(map(str, allowed))}")

    def _check_metrics(self) -> None:
        """Extra metrics are registered ones that run no code, named once, on a task that has predictions."""
        if self.metrics and self.kind == "perplexity":
            raise TaskParamError("metrics", "a perplexity task has no prediction to score with other metrics")
        for name in self.metrics:
            if name not in METRICS or name in EXECUTES_CODE:
                raise TaskParamError("metrics", f"{name!r} is not a registered metric that runs no code "
                                     f"({', '.join(m for m in METRICS if m not in EXECUTES_CODE)})")
        if len(set(self.metrics)) < len(self.metrics):
            raise TaskParamError("metrics", f"{list(self.metrics)!r} names a metric twice")

    @classmethod
    def disjoint_dev(cls, params: dict) -> bool:
        """Whether tuning's dev seeds read samples no test seed reads, for a task entry with `params`: a task that
        generates its samples from the seed does; one reading dataset rows (a `source`) only with a split of its own
        (ruler_qa's halves, `dev_split` of the tasks on dataset rows)."""
        return "source" not in {f.name for f in fields(cls)}

    @classmethod
    def ranges(cls) -> dict[str, tuple]:
        """[low, high] of every numeric parameter, the subclasses' own over their bases'."""
        out: dict[str, tuple] = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("param_ranges", {}))
        return out

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        raise NotImplementedError

    def resolved(self, tokenizer) -> dict[str, Any]:
        """Every parameter as the samples are built for `tokenizer`, 'auto' resolved (`vocab: auto` -> english or
        lexicon): what the task is on that model. Each raw result records it (`job.task_resolved`); config
        validation refuses a task entry that resolves differently on two models of a study."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}  # as JSON holds it
        if out.get("vocab") == "auto":
            from kvstudy.tasks.vocab import resolve_vocab

            out["vocab"] = resolve_vocab(tokenizer, "auto").name
        return out

    @classmethod
    def params(cls) -> dict[str, Any]:
        return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in fields(cls)}
