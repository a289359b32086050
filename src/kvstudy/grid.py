"""Config -> eval jobs (press variants: kvstudy.variants) -> eval groups. Plain Python, shared by the Snakefile and
the tests.

No file is read here: the DAG of a 10,000-job study must build in seconds.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections import Counter
from dataclasses import dataclass

from kvstudy.job import Job, thaw
from kvstudy.study import Study
from kvstudy.tasks import TASKS
from kvstudy.tasks.base import configured_chat_template, configured_stop_words
from kvstudy.variants import slug, variants  # noqa: F401  (slug: re-exported, the name callers know)

RAW = "results/raw/{model}/{task}/{length}/{press}/seed{seed}.json"
LOG = "logs/eval/{model}/{task}/{length}/{press}/seed{seed}.log"


def nominal_ratio(params: dict, length: int) -> float | None:
    """A `cache_size` variant's nominal compression ratio at the study's `length` (1 - cache_size / length, at
    least 0); what each sample kept is its `kv_tokens` (a shorter input keeps more of itself)."""
    size = params.get("cache_size")
    return None if size is None else round(max(0.0, 1.0 - size / length), 6)


# the job fields an `exclude:` entry can name (`press`: a shell glob over variant slugs; `method`: the press method)
EXCLUDE_KEYS = ("model", "task", "length", "seed", "method", "press")


def _as_list(value) -> list | tuple:
    return value if isinstance(value, (list, tuple)) else [value]  # a Study's lists are tuples


def matches(entry: dict, job: Job | dict) -> bool:
    """Whether one `exclude:` entry leaves `job` out: every key it names matches (a value, or one of a list). A
    press variant's dict (kvstudy.variants) is matched too: config checks an entry's press keys on the variants."""
    for key, want in entry.items():
        have = job[key] if isinstance(job, dict) else getattr(job, key)
        if key == "press":
            if not any(fnmatch.fnmatchcase(have, str(g)) for g in _as_list(want)):
                return False
        elif key in ("length", "seed"):
            if int(have) not in {int(w) for w in _as_list(want)}:
                return False
        elif str(have) not in {str(w) for w in _as_list(want)}:
            return False
    return True


def excluded(job: Job, entries: list[dict]) -> bool:
    return any(matches(e, job) for e in entries)


def jobs(config: Study | dict, exclude: bool = True) -> list[Job]:
    """Every eval job of the study: model x task x length x press variant x seed, less the combinations the
    study's `exclude:` entries leave out (all of them with `exclude=False`). `config` is a Study, or a validated
    config (kvstudy.config.validate: its defaults filled, none restated here) made one here."""
    study = Study.from_config(config)
    # what each task's jobs really use, so the raw result says so and a change of either reruns them
    stops = {task: configured_stop_words(TASKS.get(t.get("kind", task)), t, study.eval["stop_words"])
             for task, t in study.tasks.items()}
    vs = variants({"presses": thaw(study.presses)})  # kvstudy.variants expands plain lists
    entries = study.exclude if exclude else ()
    out = []
    for (model, m), (task, t), length, v, seed in itertools.product(
        study.models.items(), study.tasks.items(), study.lengths, vs, study.seeds
    ):
        job = dict(
            model=model,
            # org/name@REVISION where the study pins a revision (kvstudy.models), so a new pin reruns the model's jobs
            model_path=f"{m['path']}@{m['revision']}" if m.get("revision") else m["path"],
            dtype=m["dtype"],
            attn_implementation=m["attn_implementation"],
            # only when set (by the model, or `none` by the task): a new default key would change every job's params
            **_chat_template(m, TASKS.get(t.get("kind", task)), t),
            config_overrides=m.get("config_overrides"),
            task=task,
            task_kind=t.get("kind", task),
            task_params={k: x for k, x in t.items() if k != "kind"},
            length=int(length),
            seed=int(seed),
            stop_words=stops[task],
            **v,
        )
        if "cache_size" in v["params"]:
            job["compression_ratio"] = nominal_ratio(v["params"], int(length))
        job = Job(**job)
        if not (entries and excluded(job, entries)):
            out.append(job)
    return out


def _chat_template(model: dict, cls, task: dict) -> dict:
    """The job's `chat_template`: `none` where the model or the task says so, the model's setting where it has one."""
    value = configured_chat_template(cls, task, model.get("chat_template", "auto"))
    return {"chat_template": value} if "chat_template" in model or value == "none" else {}


def raw_path(job: Job) -> str:
    return RAW.format(**vars(job))


# --- eval groups: which variants one eval job runs (kvstudy.engine; workflow/rules/eval.smk) -------------------------

GROUP_MODES = ("variant", "entry", "cell")
GROUP_LOG = "logs/eval/{model}/{task}/{length}/group-{group}/seed{seed}.log"
GROUP_BENCHMARK = "benchmarks/eval/{model}/{task}/{length}/group-{group}/seed{seed}.tsv"
CELL_KEYS = ("model", "task", "length", "seed")


@dataclass(frozen=True)
class EvalGroup:
    """One Snakemake eval rule: the variants (slugs, in output order) each of its jobs runs in one process, for
    every cell (model, task, length and seed as wildcards), or for one `cell` only (literal paths: Snakemake
    prefers a rule without wildcards, so it takes the cells whose variants `exclude:` thinned)."""

    name: str
    presses: tuple[str, ...]
    cell: tuple | None = None

    def paths(self, pattern: str) -> list[str]:
        """`pattern` (RAW, LOG) for each variant, the cell's wildcards kept or filled in."""
        cell = dict(zip(CELL_KEYS, self.cell)) if self.cell else {k: "{" + k + "}" for k in CELL_KEYS}
        return [pattern.format(**cell, press=p) for p in self.presses]

    def own(self, pattern: str) -> str:
        """`pattern` (GROUP_LOG, GROUP_BENCHMARK) of the group job itself."""
        cell = dict(zip(CELL_KEYS, self.cell)) if self.cell else {k: "{" + k + "}" for k in CELL_KEYS}
        return pattern.format(**cell, group=self.name)


def _units(presses: list[dict], mode: str) -> list[tuple[str, list[str]]]:
    """(rule name, variant slugs) of each unit a group job runs a cell of: a press entry (`eval_{method}`, then
    `eval_{method}_2`... for a method's later entries, so an entry added elsewhere renames no rule), or every entry
    (`eval_cell`). Searched entries are left out: their tuned variants read a choice at run time and run one per job
    (tuning.smk)."""
    named, seen = [], {}
    for entry in presses:
        if "search" in entry:
            continue
        method = re.sub(r"[^A-Za-z0-9_]", "_", entry["method"])
        seen[method] = seen.get(method, 0) + 1
        name = f"eval_{method}" + (f"_{seen[method]}" if seen[method] > 1 else "")
        named.append((name, [v["press"] for v in variants({"presses": [entry]})]))
    if mode == "cell":
        return [("eval_cell", [p for _, slugs in named for p in slugs])] if named else []
    return named


def eval_groups(config: Study | dict, study_jobs: list[Job] | None = None) -> list[EvalGroup] | None:
    """The eval rules of the study's `eval.group` (default `entry`): None for `variant` (one rule, one job per
    variant). A unit's variants form one rule for every cell that runs all of those it runs in most cells; a cell
    where `exclude:` leaves out others gets a rule of its own."""
    study = Study.from_config(config)
    mode = study.eval["group"]
    if mode == "variant":
        return None
    present: dict[tuple, set[str]] = {}
    for job in jobs(study) if study_jobs is None else study_jobs:
        present.setdefault(tuple(getattr(job, k) for k in CELL_KEYS), set()).add(job.press)
    groups = []
    for name, slugs in _units(thaw(study.presses), mode):
        subsets = {cell: tuple(s for s in slugs if s in have) for cell, have in present.items()}
        counts = Counter(s for s in subsets.values() if s)
        if not counts:
            continue
        common = counts.most_common(1)[0][0]
        groups.append(EvalGroup(name, common))
        odd = sorted(cell for cell, s in subsets.items() if s and s != common)
        groups += [EvalGroup(f"{name}_c{k}", subsets[cell], cell) for k, cell in enumerate(odd)]
    return groups
