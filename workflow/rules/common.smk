# Validate the config (one line naming the bad key, before any job) and expand the grid with kvstudy.grid.
import json
import os
import shlex
import sys

from kvstudy import attn_equivalence, fetch, grid, pairs, rawguard, timing
from kvstudy.config import ConfigError, validate
from kvstudy.plots import specs as figure_specs
from kvstudy.report import check_report_config, config_digest, present_summary, report_mode
from kvstudy.resources import eval_gpus
from kvstudy.study import Study

# figures/all records the study and its config's hash; a report is made only from the config that built it, checked
# before anything is written (kvstudy.report); making a report writes no file here (no RAW_MARKER either) and runs no
# job, so it needs no preflight
REPORT_MODE = report_mode()
try:
    config.update(validate(config))
    CONFIG_SHA256 = config_digest(config)
    if REPORT_MODE and (_problem := check_report_config(config, "figures/all")):
        sys.exit(_problem)
    if workflow.is_main_process and not REPORT_MODE:  # not again in each SLURM job's own snakemake process
        from kvstudy import preflight  # tokenizers and samples of every cell; cached once passed

        print(preflight.summary(preflight.check(config)), file=sys.stderr)
except ConfigError as e:
    sys.exit("\n".join(e.lines))


envvars:
    "PATH",


# Models and data are fetched by the rules of fetch.smk before any eval job, which then runs offline: eval jobs
# (started by this process, or by SLURM from its environment) get HF_HUB_OFFLINE=1, fetch jobs the value the user
# gave (remembered in KVSTUDY_HUB_OFFLINE_GIVEN, so a job's own snakemake process reads the user's value too).
FETCH = fetch.plan(config)
HUB_OFFLINE_GIVEN = fetch.jobs_offline(set_it=not REPORT_MODE)


# Rules call `kvstudy` from the environment that runs snakemake, so no activated venv is needed.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
# The validated study as one frozen value (kvstudy.study), which the grid expands
STUDY = Study.from_config(config)
JOBS = {grid.raw_path(j): j for j in grid.jobs(STUDY)}
RAW = sorted(JOBS)
# The eval rules: one job per group of variants of a cell (eval.group; None: one job per variant)
EVAL_GROUPS = grid.eval_groups(STUDY, list(JOBS.values()))
# Every eval rule is in the Snakemake job group "eval", so `--group-components eval=N` (profiles/slurm) puts N eval
# jobs in one cluster submission. It is the rules' own `group:`, not `--groups eval=...`: Snakemake applies --groups by
# rule name when it builds the DAG, after the Snakefile is read, and the engine's rules are named per press entry
# (eval_<method>). Local runs ignore job groups.
EVAL_JOB_GROUP = "eval"
# the timing protocol's jobs (kvstudy.timing): one per (model, timing length); none when `timing.enabled` is false
TIMING_JOBS = {timing.path(j): j for j in timing.jobs(config)}
TIMING = sorted(TIMING_JOBS)

# Raw results before the DAG is built (kvstudy.rawguard): those aggregate would read anew are checked and bad ones
# set aside (named, one line each) so that they rerun; temp files of killed writes are removed; `aggregate` reads
# the marker RAW_MARKER, a new version of which is in the DAG whenever results are missing, so a deleted result is
# recomputed while a dry run writes nothing. Only a snakemake that will run jobs moves or removes files, and never
# a result another snakemake has locked. One stat per job (milliseconds for 10,000); only new results are read.
GUARD = workflow.is_main_process and not REPORT_MODE  # not in each SLURM job's snakemake, not for a report
GUARD_ACTS = GUARD and rawguard.runs_jobs()
LOCKED = rawguard.locked_paths() if GUARD_ACTS else set()
# with another snakemake running (its locks), its temp files and markers are its own business
MARKERS = rawguard.Markers(prune=GUARD_ACTS and not LOCKED)
if GUARD_ACTS and not LOCKED:
    rawguard.clean_temp()
RAW_MARKER = MARKERS.path("results/raw/.missing", rawguard.check_results(JOBS, GUARD_ACTS, LOCKED) if GUARD else [])
# Eval resources: the study's `resources.eval`, plus the user's SLURM account and partition from the environment
# (KVSTUDY_SLURM_ACCOUNT / KVSTUDY_SLURM_PARTITION), so nobody edits the repo's profile for them, and `gpu: 1`
# where the job will run on a GPU (eval.device cuda, or auto on a machine with one: kvstudy.resources), so that
# profiles/local never shares a GPU while CPU-only jobs run as many at a time as there are cores.
EVAL_RESOURCES = dict(config["resources"].get("eval", {}))
if eval_gpus(config["eval"]["device"]):
    EVAL_RESOURCES.setdefault("gpu", 1)
for key, var in (("slurm_account", "KVSTUDY_SLURM_ACCOUNT"), ("slurm_partition", "KVSTUDY_SLURM_PARTITION")):
    if os.environ.get(var):
        EVAL_RESOURCES.setdefault(key, os.environ[var])
# A task's own eval resources (`resources.tasks.<task>`), each replacing eval's for that task's jobs (task_resources)
TASK_RESOURCES = config["resources"].get("tasks", {})
# Figures of this study: output name -> {"figure": registered kind, "options": {...}} (kvstudy.plots.specs).
FIGURE_SPECS = {f["name"]: f for f in figure_specs.resolve(config)}
FIGURES = list(FIGURE_SPECS)
GRID_SUMMARY = figure_specs.grid_summary(config)
if REPORT_MODE:  # the captions count the jobs present in results.csv, not the jobs the config asks for
    GRID_SUMMARY = present_summary("results/tables/results.csv")
REPORT_LABELS = {
    "models": ", ".join(config["models"]),
    "tasks": ", ".join(config["tasks"]),
    "presses": ", ".join(dict.fromkeys(p["method"] for p in config["presses"])),
}
SUMMARY = expand(
    "results/tables/{name}.{ext}",
    name=["summary_score", "summary_memory", "summary_throughput", "summary_seeds"],
    ext=["csv", "tex"],
)
PROVENANCE = "results/provenance.html"
TABLES = expand(
    "results/tables/{name}.csv",
    name=["results", "samples", "performance", "memory_usage", "throughput", "timing"],
)
# method-against-method pairs of the study's `compare:` (kvstudy.pairs), tested by rule significance_pairs
COMPARE_PAIRS = pairs.variant_pairs(config)
# models run under two or more attention implementations (kvstudy.attn_equivalence), checked against eager
ATTN_GROUPS = attn_equivalence.groups(config)
ANALYSIS = [
    "results/analysis/pareto.csv",
    "results/analysis/significance.csv",
    "results/analysis/significance_seeds.csv",
    *(["results/analysis/significance_pairs.csv"] if COMPARE_PAIRS else []),
    *(["results/analysis/attention_equivalence.csv"] if ATTN_GROUPS else []),
]


wildcard_constraints:
    model=r"[^/]+",
    task=r"[^/]+",
    press=r"[^/]+",
    length=r"\d+",
    seed=r"\d+",


def eval_cli(jobs_outs):
    """`kvstudy eval`'s arguments for (job, raw result, own log or None) triples: each job as JSON, its raw result
    and log, then the device. One string, not a shell field each: Snakemake formats every field of a shell command
    for each job, three times in a dry run (about 0.3 s of a 10,000-job DAG build for the three fields this saves)."""
    args = [
        f"--job {shlex.quote(json.dumps(job.as_dict(), sort_keys=True))} --out {shlex.quote(out)}"
        + (f" --log {shlex.quote(log)}" if log else "")
        for job, out, log in jobs_outs
    ]
    return " ".join(args) + f" --device {shlex.quote(config['eval']['device'])}"


def grid_job(path):
    if path not in JOBS:
        raise ValueError(f"{path} is not a job of this config (check models/tasks/lengths/presses/seeds)")
    return JOBS[path]


def eval_args(wildcards):
    """`kvstudy eval`'s arguments for one raw result (eval_cli); a path outside the grid is an error. As a params
    value the job also makes Snakemake rerun a result whose job changed in the config (its params trigger)."""
    path = grid.RAW.format(**wildcards)
    return eval_cli([(grid_job(path), path, None)])


def group_args(group):
    """The params function of the eval rule of `group` (a kvstudy.grid.EvalGroup); `kvstudy eval`'s arguments for
    its variants in the job's cell, each with its own log. The params are every job of the group, so a group whose
    jobs changed in the config reruns, and no other."""

    def args(wildcards):
        cell = {k: wildcards[k] for k in grid.CELL_KEYS} if group.cell is None else {}
        outs = [p.format(**cell) for p in group.paths(grid.RAW)]
        logs = [p.format(**cell) for p in group.paths(grid.LOG)]
        return eval_cli([(grid_job(o), o, log) for o, log in zip(outs, logs)])

    return args


def variant_resources():
    """Rule eval's resources (one variant per job; tuning's trials and tuned variants take them): EVAL_RESOURCES,
    then the task's own. Snakemake applies what a profile or --set-resources gives the rule itself after these."""
    return {**EVAL_RESOURCES, **task_resources(EVAL_RESOURCES)}


def group_resources(group):
    """A group job's resources: those of an eval job (EVAL_RESOURCES, then what the profile or the command line set
    for eval itself with `--set-resources eval:...`), then the task's own (`resources.tasks`, TASK_RESOURCES); its
    runtime times the group's variants: one model load and a shared prefill, but each variant decodes in turn."""
    res = dict(EVAL_RESOURCES)
    res.update(workflow.resource_settings.overwrite_resources.get("eval", {}))
    scaled = {k: _scaled(v, len(group.presses) if k == "runtime" else 1) for k, v in res.items()}
    task = dict(zip(grid.CELL_KEYS, group.cell))["task"] if group.cell else None
    return {**scaled, **task_resources(scaled, len(group.presses), task)}


def task_resources(base, factor=1, task=None):
    """Each resource some task sets (`resources.tasks.<task>`), where a rule's jobs run several tasks: a function
    of the job's task wildcard giving that task's value (runtime times `factor`), or `base`'s for a task that sets
    none; fixed values for a group of one cell (`task`)."""
    keys = dict.fromkeys(k for r in TASK_RESOURCES.values() for k in r)
    if task is not None:
        return {k: _scaled(v, factor if k == "runtime" else 1) for k, v in TASK_RESOURCES.get(task, {}).items()}
    return {k: _per_task(k, base.get(k), factor if k == "runtime" else 1) for k in keys}


def _per_task(key, default, factor):
    def value(wildcards, input, attempt, threads, rulename, async_run):  # what Snakemake gives a resource function
        if key in TASK_RESOURCES.get(wildcards.task, {}):
            return _scaled(TASK_RESOURCES[wildcards.task][key], factor)
        if callable(default):
            return default(wildcards, input, attempt, threads, rulename, async_run)
        return default  # None: the key is left unset for this task's jobs

    return value


def _scaled(value, factor):
    """`value` (a number or string, or a resource the profile set, which may depend on the attempt) as a rule's
    resource, times `factor`."""
    from snakemake.resources import Resource

    if not isinstance(value, Resource):
        return value * factor if factor != 1 else value
    if not value.is_evaluable():
        return value.value * factor if factor != 1 else value.value

    def scaled(wildcards, input, attempt, threads, rulename, async_run):  # what Snakemake gives eval's resource
        out = value.evaluate(
            wildcards, input=input, attempt=attempt, threads=threads, rulename=rulename, async_run=async_run
        ).value
        return out * factor if factor != 1 else out

    return scaled


def timing_args(wildcards):
    """`kvstudy timing`'s arguments for one timing result: the job as JSON, its path and the device."""
    out = timing.PATH.format(**wildcards)
    if out not in TIMING_JOBS:
        raise ValueError(f"{out} is not a timing job of this config (check timing: and lengths:)")
    return (
        f"--job {shlex.quote(json.dumps(TIMING_JOBS[out], sort_keys=True))} --out {shlex.quote(out)} "
        f"--device {shlex.quote(config['eval']['device'])}"
    )


def timing_threads(wildcards):
    """Every core where snakemake runs jobs itself, so that nothing runs beside a timed run (the timed run itself
    uses `eval.threads`); the eval threads on a cluster, where the job has its node's share to itself."""
    return workflow.cores if workflow.local_exec and workflow.cores else config["eval"]["threads"]


def fetched_inputs(wildcards):
    """The fetch stamps (fetch.smk) of what an eval job reads: its hub model, hub datasets, judge, data entries."""
    return FETCH.needs.get((wildcards.model, wildcards.task), [])


def group_fetched(group):
    """A group rule's fetch stamps: per job from its wildcards, or those of the one cell it is written for."""
    if group.cell is None:
        return fetched_inputs
    cell = dict(zip(grid.CELL_KEYS, group.cell))
    return FETCH.needs.get((cell["model"], cell["task"]), [])


def fetched_model(wildcards):
    """The fetch stamp of a timing job's hub model (it reads no task data)."""
    return FETCH.models.get(wildcards.model, [])


def equivalence_fetched(wildcards):
    """The fetch stamps of the models the attention-equivalence job loads."""
    return sorted({p for g in ATTN_GROUPS for name in g["models"] for p in FETCH.models.get(name, [])})


def fetch_spec(wildcards, output):
    """What one fetch job fetches, as JSON for `kvstudy fetch --spec`."""
    return json.dumps(FETCH.items[output[0]], sort_keys=True)


def figure_kind(wildcards):
    return FIGURE_SPECS[wildcards.figure]["figure"]


def figure_options(wildcards):
    """The figure's options as JSON for `kvstudy plot --options`."""
    return json.dumps(FIGURE_SPECS[wildcards.figure]["options"], sort_keys=True)


def config_json(wildcards):
    """The whole resolved config, for the provenance page."""
    return json.dumps(config, sort_keys=True, default=str)


def study_json(wildcards):
    """The resolved config, so `kvstudy aggregate` reads exactly this study's raw results."""
    return json.dumps(
        {k: config[k] for k in ("models", "tasks", "lengths", "presses", "seeds", "eval", "exclude", "timing")}
    )
