"""One eval job as a frozen value: what kvstudy.grid.jobs (and tuning's trial and tuned jobs) hand to the engine,
the status report and the workflow. A bottom module: it imports nothing of kvstudy but the schemas (the defaults).

Its mappings and lists are frozen too (FrozenDict, tuples), so a Job can be neither changed nor half-changed by a
consumer, and it hashes. Where a job crosses a process boundary (a JSON job file, a Snakemake param) it goes as
`as_dict()`, today's dict with the same keys in the same order, and comes back by `Job.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from kvstudy import schemas


class FrozenDict(dict):
    """A dict that refuses every change and hashes: still a dict to json, `==`, `**` and `.get`."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a job's mapping is frozen: build a new job (dataclasses.replace) instead")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self):
        return hash(tuple(self.items()))

    def __reduce__(self):  # pickle (Snakemake params) rebuilds it without calling the refused update
        return FrozenDict, (dict(self),)


def freeze(value):
    """`value` with every dict a FrozenDict and every list a tuple, all the way down."""
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value):
    """The plain value back (dicts and lists), as a job read from JSON has it."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Job:
    """The fields in the order a job's dict has them. None stands for a key the dict leaves out (`chat_template`
    and `config_overrides` unless the study sets them; `tuning` on a tuned variant only; `split`, `tuning_of` and
    `attn_error` on a tuning trial only): a new optional key must not change the existing jobs' params."""

    model: str
    model_path: str
    dtype: str
    attn_implementation: str
    chat_template: str | None = None
    config_overrides: FrozenDict | None = None
    task: str
    task_kind: str
    task_params: FrozenDict
    length: int
    seed: int
    stop_words: tuple[str, ...]
    press: str
    method: str
    params: FrozenDict
    compression_ratio: float
    tuning: FrozenDict | None = None  # a tuned test-split variant: {press, mode} (+ file, chosen once applied)
    split: str | None = None  # "dev" on a tuning trial
    tuning_of: str | None = None  # a trial's searched base press
    attn_error: bool | None = None  # a trial whose objective needs the attention-output error

    def __post_init__(self):
        for f in fields(self):  # frozen whatever the caller passed
            object.__setattr__(self, f.name, freeze(getattr(self, f.name)))

    @classmethod
    def from_dict(cls, d: dict) -> Job:
        """A job from its dict (a JSON job file, a Snakemake param, a test), the schema's job defaults (dtype,
        attn_implementation, stop_words) filled where it leaves them out, and `task_kind` its task's name."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"job {d.get('press', '?')}: unknown key(s) {', '.join(unknown)}")
        filled = {**schemas.job_defaults(), "task_kind": d.get("task"), "task_params": {}, "params": {},
                  "compression_ratio": 0.0, **d}
        missing = sorted(n for n in names if n not in filled and cls.__dataclass_fields__[n].default is not None)
        if missing:
            raise ValueError(f"job {d.get('press', '?')}: missing key(s) {', '.join(missing)}")
        return cls(**filled)

    def as_dict(self) -> dict:
        """The job's dict, exactly as kvstudy.grid made it before jobs were typed: same keys, same order, plain
        values (raw results' `job` block, result paths and Snakemake params depend on it byte for byte)."""
        return {f.name: thaw(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}


def as_jobs(jobs) -> list[Job]:
    """Jobs as Jobs: a dict (a hand-written job, a test's) converted once at the entry of a function that runs them."""
    return [j if isinstance(j, Job) else Job.from_dict(j) for j in jobs]
