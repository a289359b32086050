# Press hyper-parameter search (kvstudy.tuning): the trials of the study and the input functions of the rules in
# tuning.smk. Static DAG: every trial is known from the config. Included right after common.smk, so that ANALYSIS
# carries the tuning tables before the plot and manifest rules use it.
from kvstudy import tuning

TRIALS = {tuning.dev_raw_path(j): j for j in tuning.trial_jobs(config)}
SEARCHES = {s["press"]: s for s in tuning.searches(config)}
TUNING_TABLES = (
    expand(
        "results/analysis/tuning/{name}",
        name=["trials.csv", "candidates.csv", "choices.csv", "choices.tex"],
    )
    if SEARCHES
    else []
)
ANALYSIS += TUNING_TABLES

# Like RAW_MARKER (common.smk): bad trial results are set aside and a deleted trial of a finished search is
# recomputed. One marker per (model, press, task), so only the choices that used a missing trial are made again
# (and, if they change, only their tuned test jobs rerun).
TRIAL_MARKER = "results/raw/.missing-trials/{model}/{press}/{task}"
_missing = rawguard.check_results(TRIALS, GUARD_ACTS, LOCKED) if GUARD else set()
_by_key = {}
for _path, _job in TRIALS.items():
    _by_key.setdefault((_job.model, _job.tuning_of, _job.task), [])
    if _path in _missing:
        _by_key[(_job.model, _job.tuning_of, _job.task)].append(_path)
TRIAL_MARKERS = {
    _key: MARKERS.path(TRIAL_MARKER.format(model=_key[0], press=_key[1], task=_key[2]), _paths)
    for _key, _paths in _by_key.items()
}


def trial_args(wildcards):
    """`kvstudy eval`'s arguments for one dev-split raw result (eval_cli in common.smk)."""
    path = tuning.DEV_RAW.format(**wildcards)
    if path not in TRIALS:
        raise ValueError(f"{path} is not a trial of this config (check the presses' search blocks)")
    return eval_cli([(TRIALS[path], path, None)])


# (model, searched press, task) -> its trial paths, so input functions do not scan every trial
TRIALS_BY_TASK = {}
for _path, _job in sorted(TRIALS.items()):
    TRIALS_BY_TASK.setdefault((_job.model, _job.tuning_of, _job.task), []).append(_path)


def trials_of(model, press, task=None):
    tasks = list(config["tasks"]) if task is None else [task]
    return [p for t in tasks for p in TRIALS_BY_TASK.get((model, press, t), [])]


def tune_global_input(wildcards):
    keys = [(wildcards.model, wildcards.press, t) for t in config["tasks"]]
    markers = [TRIAL_MARKERS[k] for k in keys if k in TRIAL_MARKERS]
    return trials_of(wildcards.model, wildcards.press) + markers


def tune_task_input(wildcards):
    key = (wildcards.model, wildcards.press, wildcards.task)
    return trials_of(*key) + ([TRIAL_MARKERS[key]] if key in TRIAL_MARKERS else [])


def tuned_choice(wildcards):
    """The tuning JSON a tuned test-split job reads at run time."""
    job = JOBS[grid.RAW.format(**wildcards)]
    t = job.tuning
    return tuning.choice_path(job.model, t["press"], t["mode"], job.task)


def all_choices():
    out = []
    for s in SEARCHES.values():
        for model in config["models"]:
            for mode in s["settings"]["mode"]:
                tasks = [None] if mode == "global" else list(config["tasks"])
                out += [tuning.choice_path(model, s["press"], mode, t) for t in tasks]
    return out


def tune_study(wildcards):
    """Only what the choice depends on (kvstudy.tuning.tune_study), so unrelated config edits do not redo it."""
    task = wildcards.get("task")
    return json.dumps(tuning.tune_study(config, wildcards.model, wildcards.press, task))
