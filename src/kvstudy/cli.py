"""`kvstudy` command line: every Snakemake rule is one call of one subcommand."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_eval(a) -> None:
    """Run a group of jobs (one or more press variants of one cell: `--job J --out PATH [--log PATH]`, repeated) with
    one model load (kvstudy.engine) and write each one's raw result. A job that raises writes a `status: "failed"`
    result instead (its traceback in its log, kvstudy.failed); the others keep theirs, and the command exits 0, so
    Snakemake keeps them and the rest of the study builds."""
    import traceback

    from kvstudy.evaluate import run_group
    from kvstudy.failed import failed_result
    from kvstudy.measure import now_iso

    logs = a.log or []
    if len(a.out) != len(a.job) or len(logs) not in (0, len(a.job)):
        sys.exit("kvstudy eval: give one --out (and one --log, or none) per --job")
    from kvstudy.job import Job

    jobs, started = [Job.from_dict(json.loads(j)) for j in a.job], now_iso()  # JSON job files come back as Jobs
    results: list = [None] * len(jobs)
    traces: list = [None] * len(jobs)
    for i, job in enumerate(jobs):
        if job.tuning:  # a tuned variant: parameters chosen on the dev split, read now (kvstudy.tuning)
            from kvstudy.tuning import apply_choice

            try:
                jobs[i] = apply_choice(job)
            except Exception as e:  # noqa: BLE001 -- this job's failure
                results[i], traces[i] = failed_result(job, e, a.device, started), traceback.format_exc()
    todo = [i for i in range(len(jobs)) if results[i] is None]
    failures: dict[int, str] = {}  # index in todo -> traceback of a variant that raised
    try:
        done = run_group([jobs[i] for i in todo], a.threads, a.device, failures) if todo else []
    except Exception as e:  # noqa: BLE001 -- an error before any variant ran (model, samples): every job failed
        trace = traceback.format_exc()
        done = [failed_result(jobs[i], e, a.device, started) for i in todo]
        for i in todo:
            traces[i] = trace
    for k, (i, result) in enumerate(zip(todo, done)):
        traces[i] = traces[i] or failures.get(k)
        d = jobs[i].as_dict()
        result["job"].update({k: d[k] for k in ("split", "tuning") if k in d})  # trial / tuned variant
        results[i] = result
    for i, (job, result) in enumerate(zip(jobs, results)):
        _report(job, result, traces[i], a.out[i], logs[i] if logs else None)


def _report(job, result: dict, trace: str | None, out: str, log: str | None) -> None:
    """Write the raw result; say what became of the job on the console and in its own log."""
    from kvstudy.atomic import write_atomic

    write_atomic(result, Path(out))
    q = result["quality"]
    lines = [f"{job.press} {job.task} {job.length}: {result['status']} score={q['score']} n={q['n']}"]
    if result["status"] == "failed":
        lines = [trace or "", f"kvstudy eval: job failed, recorded as status failed in {out}: {result['error']}",
                 *lines]
    text = "\n".join(line for line in lines if line)
    print(text, file=sys.stderr if result["status"] == "failed" else sys.stdout)
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(text + "\n")


def cmd_timing(a) -> None:
    """Run one timing job (kvstudy.timing) and write its result atomically."""
    from kvstudy.atomic import write_atomic
    from kvstudy.timing_cold import run_job  # the warm protocol, after the cold runs where the job asks for them

    result = run_job(json.loads(a.job), threads=a.threads, device=a.device)
    write_atomic(result, Path(a.out))
    for v in result["variants"]:
        s = v["summary"].get("ttft_seconds") or {}
        print(f"{v['press']} {result['job']['length']}: {v['status']} ttft_median={s.get('median')}")


def cmd_aggregate(a) -> None:
    from kvstudy.aggregate import InvalidResults, aggregate

    paths = [Path(p) for p in a.raw]
    expected = None
    if a.study:  # the study's own grid: exactly its raw results, each checked against its job (kvstudy.rawcheck)
        from kvstudy import timing
        from kvstudy.grid import jobs, raw_path

        study = json.loads(a.study)
        expected = {raw_path(j): j for j in jobs(study)}
        paths += [Path(p) for p in expected]
        timing_paths = [Path(timing.path(j)) for j in timing.jobs(study)]
    try:
        aggregate(paths, Path(a.out_dir), expected, timing_paths if a.study else [])
    except InvalidResults as e:  # one line per bad file; no table written
        sys.exit("\n".join(e.lines))


def cmd_fetch(a) -> None:
    """Fetch one model, dataset or data entry (rule fetch_*); a failure is one line naming it."""
    from kvstudy.fetch import FetchError, run

    try:
        stamp = run(json.loads(a.spec), Path(a.out))
    except FetchError as e:
        sys.exit(str(e))
    what = stamp.get("repo") or stamp.get("hub") or stamp.get("url")
    print(f"fetched {stamp['kind']} {what}: {stamp['commit']}")


def cmd_release(a) -> None:
    from kvstudy.release import build

    out = build(json.loads(a.config), Path(a.out), Path(a.root))
    print(f"release: {out} and {out}.tar.gz")


def cmd_rebuild(a) -> None:
    """Recompute the analysis and draw the figures of a release bundle from the bundle alone."""
    from kvstudy.release import check, rebuild

    figures = rebuild(Path(a.bundle), Path(a.out))
    print(f"rebuilt {len(figures)} figure files under {a.out}")
    if a.check:
        problems = check(Path(a.bundle), Path(a.out))
        if problems:
            sys.exit("rebuild differs from the bundle: " + "; ".join(problems))
        print("analysis and figures identical to the bundle's")


def cmd_pareto(a) -> None:
    from kvstudy.pareto import write_pareto

    write_pareto(Path(a.results), Path(a.out), Path(a.timing) if a.timing else None)


def cmd_significance(a) -> None:
    from kvstudy.significance_write import write_significance

    write_significance(Path(a.samples), Path(a.out), baseline=a.baseline,
                       seeds_csv=Path(a.out_seeds) if a.out_seeds else None)


def cmd_summary(a) -> None:
    from kvstudy.summary import write_summary

    write_summary(Path(a.results), Path(a.significance) if a.significance else None, Path(a.out_dir),
                  Path(a.timing) if a.timing else None)


def cmd_provenance(a) -> None:
    from kvstudy.provenance import write_provenance

    config = json.loads(a.config)
    raw = []
    if a.study_grid:  # the raw results of the config's grid (as `aggregate --study`)
        from kvstudy.grid import jobs, raw_path

        raw = [Path(raw_path(j)) for j in jobs(config)]
    write_provenance(config, Path(a.out), Path(a.root), Path(a.results) if a.results else None, raw,
                     Path(a.benchmarks) if a.benchmarks else None)


def cmd_figures(a) -> None:
    from kvstudy.plots import FIGURES

    for fig in FIGURES.values():
        opts = "; ".join(f"{k}: {v}" for k, v in fig.options.items()) or "-"
        print(f"{fig.name:18s} {fig.description}\n{'':18s} tables: {', '.join(fig.needs)}; options: {opts}")


def cmd_plot(a) -> None:
    from kvstudy.plots import make_figure

    make_figure(a.figure, Path(a.tables), Path(a.analysis), Path(a.out_stem),
                json.loads(a.options) if a.options else None)


def cmd_manifest(a) -> None:
    from kvstudy.plots.manifest import write_manifest

    study = {"study": a.study, "config_sha256": a.config_sha256} if a.config_sha256 else None
    write_manifest([Path(p) for p in a.files], Path(a.out), Path(a.root), study)


def cmd_tune(a) -> None:
    from kvstudy.atomic import write_atomic
    from kvstudy.tuning import tune

    choice = tune(json.loads(a.study), a.model, a.press, a.task)
    write_atomic(choice, Path(a.out))
    c = choice["chosen"]
    print(f"{a.model}/{a.press}/{a.task or 'all tasks'}: {c['press']} ({choice['objective']}={c['objective']})")


def cmd_tuning_summary(a) -> None:
    from kvstudy.tuning import write_summary

    for p in write_summary(json.loads(a.study), Path(a.root), Path(a.results), Path(a.out_dir)):
        print(p)


def cmd_presses(a) -> None:
    from kvstudy.presses import PRESSES, VARIANT_OPTIONS

    for spec in PRESSES.values():
        ratio = "required, or cache_size=tokens" if spec.sizes else "required"
        params = ([("compression_ratio", ratio)] if spec.has_ratio else []) + list(spec.defaults.items())
        shown = ", ".join(f"{k}={v}" for k, v in params) or "-"
        extra = f" [attention: {spec.attn_implementation}]" if spec.attn_implementation else ""
        extra += " [evicts while decoding]" if spec.phase == "decoding" else ""
        extra += " [masks keys, frees no memory]" if spec.masking else ""
        print(f"{spec.name:20s} {spec.description}{extra}\n{'':20s} params: {shown}")
    options = ", ".join(f"{k}={v}" for k, v in VARIANT_OPTIONS.items())
    print(f"\nevery press also takes: {options} (query_aware: false, true or prompt; quantization: int8, int4, "
          "int2; slugs end -qa / -qp / +int4)")


def cmd_tasks(a) -> None:
    from kvstudy.tasks import TASKS

    for name, cls in TASKS.items():
        params = cls.params()
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        metric = cls.metric + (" (param scorer)" if "scorer" in params else " (per subtask)" if "subtask" in params
                               else "")
        order = "" if cls.higher_is_better else ", lower is better"
        print(f"{name:14s} [{cls.kind}] metric={metric}{order}  {cls.description}\n{'':14s} params: {shown}")


def cmd_validate(a) -> None:
    from kvstudy import preflight
    from kvstudy.config import ConfigError, load
    from kvstudy.grid import jobs
    from kvstudy.tuning import trial_jobs

    try:
        config = load(a.config, preflight=False)
        report = preflight.check(config)
    except ConfigError as e:  # every problem the preflight found, one line each
        sys.exit("\n".join(e.lines))
    trials = len(trial_jobs(config))
    n, n_all = len(jobs(config)), len(jobs(config, exclude=False))
    left_out = f" ({n_all - n} left out by exclude)" if n_all > n else ""
    print(f"{a.config}: ok, {n} eval jobs{left_out}" + (f" + {trials} tuning trials" if trials else ""))
    print(preflight.summary(report))


def cmd_status(a) -> None:
    from kvstudy.config import load
    from kvstudy.status import grid_status, render, render_problems, render_trial_status, retry_failed

    config = load(a.config)
    if a.retry_failed:  # the study's failed records and its failed tuning trials; logs stay
        from kvstudy.grid import jobs, raw_path
        from kvstudy.tuning import dev_raw_path, trial_jobs

        paths = [raw_path(j) for j in jobs(config)] + [dev_raw_path(j) for j in trial_jobs(config)]
        try:
            removed = retry_failed(paths, Path(a.root))
        except RuntimeError as e:
            sys.exit(str(e))
        for path in removed:
            print(f"removed failed result {path}")
        print(f"{len(removed)} failed result(s) removed; the next snakemake run computes them again\n")
    problems: dict[str, str] = {}
    print(render(config, grid_status(config, Path(a.root), problems)))
    if problems:
        print("\n" + render_problems(problems))
    if any("search" in p for p in config["presses"]):  # hyper-parameter searches: where their trials stand
        print(render_trial_status(config, Path(a.root)))


def cmd_train_tiny(a) -> None:
    import torch

    from kvstudy.models.train_tiny import train

    torch.set_num_threads(a.threads)
    print(json.dumps(train(Path(a.out), seed=a.seed, steps=a.steps, max_length=a.max_length)))


def _arg(*flags: str, **options) -> tuple[tuple[str, ...], dict]:
    """One argument of a sub-command: argparse's add_argument flags and keywords."""
    return flags, options


# name -> (help, function, arguments): argparse's table, as data
COMMANDS = {
    "eval": ("run eval jobs (press variants of one cell, one model load); write their results", cmd_eval, [
        _arg("--job", required=True, action="append", help="a job as JSON (from kvstudy.grid); repeatable"),
        _arg("--out", required=True, action="append", help="its raw result (one per --job)"),
        _arg("--log", action="append", help="its own log (one per --job, or none)"),
        _arg("--threads", type=int, default=1),
        _arg("--device", default="auto"),
    ]),
    "timing": ("run one timing job (kvstudy.timing) and write its result", cmd_timing, [
        _arg("--job", required=True, help="the timing job as JSON (from kvstudy.timing.jobs)"),
        _arg("--out", required=True),
        _arg("--threads", type=int, default=1),
        _arg("--device", default="auto"),
    ]),
    "aggregate": ("raw results -> results/tables/*.csv", cmd_aggregate, [
        _arg("raw", nargs="*", help="raw result files"),
        _arg("--study", help="resolved config as JSON: aggregate every raw result of its grid"),
        _arg("--out-dir", required=True),
    ]),
    "fetch": ("fetch one hub model, hub dataset or data entry and write its stamp", cmd_fetch, [
        _arg("--spec", required=True, help="what to fetch, as JSON (kvstudy.fetch.plan)"),
        _arg("--out", required=True, help="the stamp: resources/fetched/{kind}/{item}.json"),
    ]),
    "release": ("bundle the study's results, tables, figures, provenance and metadata", cmd_release, [
        _arg("--config", required=True, help="the resolved config as JSON"),
        _arg("--out", required=True, help="the bundle folder (release/{study}); a .tar.gz beside it"),
        _arg("--root", default=".", help="the directory snakemake ran the study in"),
    ]),
    "rebuild": ("recompute the analysis and figures of a release bundle from it alone", cmd_rebuild, [
        _arg("bundle"),
        _arg("--out", required=True),
        _arg("--check", action="store_true", help="compare with the bundle's analysis and figure pixels"),
    ]),
    "pareto": ("results.csv -> pareto.csv", cmd_pareto, [
        _arg("--results", required=True),
        _arg("--timing", help="timing.csv: latency from the timing protocol where it has the variant"),
        _arg("--out", required=True),
    ]),
    "significance": ("samples.csv -> significance.csv (paired tests vs the baseline)", cmd_significance, [
        _arg("--samples", required=True),
        _arg("--out", required=True),
        _arg("--baseline", default="no_press"),
        _arg("--out-seeds", help="also write the across-seed Welch t-test table here"),
    ]),
    "summary": ("results.csv (+ significance.csv) -> summary_*.csv and booktabs .tex", cmd_summary, [
        _arg("--results", required=True),
        _arg("--significance"),
        _arg("--timing", help="timing.csv: throughput and latency from the timing protocol"),
        _arg("--out-dir", required=True),
    ]),
    "provenance": ("write the report's provenance page (HTML)", cmd_provenance, [
        _arg("--config", required=True, help="the resolved config as JSON"),
        _arg("--results", help="results.csv"),
        _arg("--study-grid", action="store_true", help="read the provenance of the grid's raw results"),
        _arg("--benchmarks", help="Snakemake benchmark directory"),
        _arg("--root", default="."),
        _arg("--out", required=True),
    ]),
    "figures": ("list registered figures with their tables and options", cmd_figures, []),
    "plot": ("draw one figure as PDF + PNG", cmd_plot, [
        _arg("figure"),
        _arg("--tables", required=True),
        _arg("--analysis", required=True),
        _arg("--out-stem", required=True),
        _arg("--options", help="figure options as JSON (from the study's figures: entry)"),
    ]),
    "manifest": ("write figures/all: every figure and table with its checksum", cmd_manifest, [
        _arg("files", nargs="+"),
        _arg("--out", required=True),
        _arg("--root", default="."),
        _arg("--study", default="", help="the study's name, recorded in the manifest"),
        _arg("--config-sha256", help="sha256 of the resolved config (kvstudy.report.config_digest)"),
    ]),
    "tune": ("choose a searched press's parameters from its dev-split trials", cmd_tune, [
        _arg("--study", required=True, help="resolved config as JSON"),
        _arg("--model", required=True),
        _arg("--press", required=True, help="the searched press (its slug without the searched parameters)"),
        _arg("--task", help="per-task choice; without it the global choice over all tasks"),
        _arg("--out", required=True),
    ]),
    "tuning-summary": ("trials, candidates and choices tables of every search", cmd_tuning_summary, [
        _arg("--study", required=True, help="resolved config as JSON"),
        _arg("--results", required=True, help="results.csv (test-split scores of the tuned variants)"),
        _arg("--out-dir", required=True),
        _arg("--root", default="."),
    ]),
    "presses": ("list registered presses with their parameters", cmd_presses, []),
    "tasks": ("list registered tasks with their metric and parameters", cmd_tasks, []),
    "validate": ("check a study config and count its jobs", cmd_validate, [_arg("config")]),
    "status": ("done / oom / failed / running / interrupted / missing for every eval job", cmd_status, [
        _arg("config"),
        _arg("--root", default=".", help="the directory snakemake runs in"),
        _arg("--retry-failed", action="store_true",
             help="remove the failed results (logs stay) so that the next snakemake run computes them again"),
    ]),
    "train-tiny": ("train the built-in tiny retrieval model (deterministic from --seed)", cmd_train_tiny, [
        _arg("--out", default=str(Path(__file__).parent / "models" / "builtin" / "tiny-retrieval")),
        _arg("--seed", type=int, default=1),
        _arg("--steps", type=int, default=400),  # train()'s defaults: they made the shipped weights
        _arg("--max-length", type=int, default=512),
        _arg("--threads", type=int, default=1),
    ]),
}

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kvstudy", description=__doc__, fromfile_prefix_chars="@")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (help_text, fn, arguments) in COMMANDS.items():
        s = sub.add_parser(name, help=help_text)
        for flags, options in arguments:
            s.add_argument(*flags, **options)
        s.set_defaults(fn=fn)
    return p


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    try:
        a.fn(a)
    except Exception as e:  # config errors are one line; everything else keeps its traceback
        from kvstudy.config import ConfigError

        if isinstance(e, ConfigError):
            sys.exit(str(e))
        raise


if __name__ == "__main__":
    main()
