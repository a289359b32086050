"""The whole DAG on the tiny test config (.test/config.yaml): tables, analysis, figures, report, reruns."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import json

import pandas as pd
import pytest

from conftest import ROOT, copy_workflow, dry_run_jobs
from kvstudy.plots import FIGURES
from kvstudy.plots.style import paper_style
from kvstudy.schemas import DIR as SCHEMAS

pytestmark = pytest.mark.e2e
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def eval_jobs(out: str) -> dict[str, int]:
    """Eval jobs per rule in a run's job stats: one rule per press entry of .test/config.yaml (eval.group entry)."""
    return {rule: int(n) for rule, n in re.findall(r"^(eval\w*)\s+(\d+)$", out, re.M)}


def job_blocks(out: str) -> list[str]:
    """A dry run's job descriptions, one string each: they start with a time stamp line, with or without a blank line
    between them (that depends on Snakemake's output settings)."""
    return [b for b in re.split(r"\n\s*\n|\n(?=\[\w{3} \w{3} [ \d]\d [\d:]{8} \d{4}\]\n)", out) if b.strip()]


def snakemake(workdir: Path, *args, check=True):
    p = subprocess.run(
        [*SNAKEMAKE, *args, "--cores", "2", "--configfile", ".test/config.yaml"],
        cwd=workdir, capture_output=True, text=True, timeout=900,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A copy of the workflow, run once to figures/all."""
    wd = copy_workflow(tmp_path_factory.mktemp("study"))
    snakemake(wd, "figures/all")
    return wd


def test_tables_hold_the_grid(run):
    res = pd.read_csv(run / "results/tables/results.csv")
    assert len(res) == 2 * 2 * 4  # tasks x lengths x press variants
    assert set(res.press) == {"no_press", "streaming_llm-cr0.90", "snapkv-cr0.50", "snapkv-cr0.90"}
    assert (res.status == "ok").all()
    base = res[res.press == "no_press"]
    assert (base.score == 1.0).all(), base[["task", "length", "score"]]
    assert (base.kv_fraction_kept == 1.0).all()
    snap = res[res.press == "snapkv-cr0.90"]
    assert (snap.kv_tokens_kept == (snap.length * 0.1).astype(int)).all()
    assert (snap.kv_bytes < base.kv_bytes.min()).all()
    # StreamingLLM at 0.9 keeps the first 4 and the last ~10% of tokens: needles in between are lost
    stream = res[(res.press == "streaming_llm-cr0.90") & (res.task == "niah")]
    assert (stream.score < 0.6).all(), stream.score

    samples = pd.read_csv(run / "results/tables/samples.csv")
    assert len(samples) == len(res) * 10
    assert samples.depth.between(0, 1).all()

    perf = pd.read_csv(run / "results/tables/performance.csv")
    assert list(perf.columns) == [
        "model", "technique", "cache_size", "task", "context_length", "performance", "memory_gb",
        "throughput_tokens_per_sec", "kv_memory_gb", "prefill_tokens_per_sec", "throughput_low", "throughput_high",
        "efficiency_source",
    ]
    row = perf[(perf.technique == "no_press") & (perf.task == "niah") & (perf.context_length == 512)]
    assert row.performance.item() == 100.0 and row.cache_size.item() == 512


def test_timing_protocol_feeds_throughput_and_latency(run):
    """.test/config.yaml times every variant (3 runs, 16 decode tokens): one timing job per length, and the
    throughput table, summary and latency front read its medians and intervals."""
    import jsonschema

    schema = json.loads((SCHEMAS / "timing.schema.json").read_text())
    for length in (256, 512):
        raw = json.loads((run / f"results/timing/tiny/{length}.json").read_text())
        jsonschema.validate(raw, schema)
        assert raw["protocol"]["repeats"] == 3 and raw["protocol"]["decode_tokens"] == 16
    timing = pd.read_csv(run / "results/tables/timing.csv")
    assert len(timing) == 4 * 2 and (timing.status == "ok").all()
    assert (timing.ttft_seconds_low <= timing.ttft_seconds).all() and (timing.ttft_seconds <= timing.ttft_seconds_high).all()
    thr = pd.read_csv(run / "results/tables/throughput.csv")
    assert (thr.efficiency_source == "timing").all() and (thr.prefill_tokens_per_sec > 0).all()
    merged = thr.merge(timing, left_on=["technique", "context_length"], right_on=["press", "length"])
    assert (merged.throughput_tokens_per_sec == merged.decode_tokens_per_second).all()
    mem = pd.read_csv(run / "results/tables/memory_usage.csv")
    for _, g in mem.groupby(["task", "context_length"]):
        assert list(g.kv_memory_gb) == sorted(g.kv_memory_gb)
        base = g[g.technique == "no_press"].kv_memory_gb.item()
        assert (g.kv_memory_gb <= base).all()  # no eviction press holds more than no compression
    pareto = pd.read_csv(run / "results/analysis/pareto.csv")
    assert (pareto.latency_source == "timing").all() and (pareto.latency_low <= pareto.latency_high).all()
    summary = pd.read_csv(run / "results/tables/summary_throughput.csv")
    assert (summary["source@256"] == "timing").all() and "prefill_tps@512" in summary.columns


def test_analysis_compares_every_variant_with_no_press(run):
    sig = pd.read_csv(run / "results/analysis/significance.csv")
    assert (sig.task == "mean").sum() == 3 * 2  # the mean over tasks: variants x lengths
    sig = sig[sig.task != "mean"]
    assert len(sig) == 3 * 2 * 2  # variants x tasks x lengths
    assert (sig.n_units == sig.n).all() and set(sig.test) == {"mcnemar_exact"}  # independent samples
    assert (sig.p_holm >= sig.p_value).all()
    worst = sig[(sig.press == "streaming_llm-cr0.90") & (sig.task == "niah")]
    assert (worst["diff"] < 0).all()

    pareto = pd.read_csv(run / "results/analysis/pareto.csv")
    for _, g in pareto[pareto.task != "mean"].groupby(["task", "length"]):
        front = g[g.front_memory]
        assert front.score.max() == g.score.max()  # the best score is always on the score-memory front
        # no_press is on it exactly when no smaller cache scores as well
        base = g[g.press == "no_press"].iloc[0]
        matched = (g.press != "no_press") & (g.score >= base.score) & (g.kv_bytes < base.kv_bytes)
        assert bool(base.front_memory) == (not matched.any())


def test_figures_and_manifest(run):
    manifest = (run / "figures/all").read_text()
    for fig in ("score_vs_ratio", "pareto_memory", "pareto_latency", "niah_heatmap", "delta_heatmap",
                "context_scaling"):
        for ext in ("pdf", "png"):
            assert (run / f"figures/{fig}.{ext}").stat().st_size > 1000
            assert f"figures/{fig}.{ext}" in manifest
    for table in ("results/tables/performance.csv", "results/tables/summary_score.tex",
                  "results/tables/summary_memory.csv", "results/analysis/significance_seeds.csv",
                  "results/provenance.html"):
        assert table in manifest
    tex = (run / "results/tables/summary_score.tex").read_text()
    assert "\\toprule" in tex and "no\\_press" in tex


def test_deleted_result_is_recomputed_and_nothing_else(run):
    """A deleted raw result reruns its group job (Snakemake reruns a job with a missing output and removes its other
    outputs first): snapkv-cr0.50 and snapkv-cr0.90 of that cell, from one model load and one prefill per sample,
    with the same results as before."""
    victim = run / "results/raw/tiny/niah/256/snapkv-cr0.50/seed0.json"
    sibling = run / "results/raw/tiny/niah/256/snapkv-cr0.90/seed0.json"
    before = json.loads(sibling.read_text())
    victim.unlink()
    dry = snakemake(run, "-n", "figures/all")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout + dry.stderr, re.M))
    assert eval_jobs(dry.stdout + dry.stderr) == {"eval_snapkv": 1} and counts["aggregate"] == "1", counts
    out = snakemake(run, "figures/all")
    assert victim.exists()
    assert (out.stdout + out.stderr).count("rule eval_") == 1  # "localrule eval_snapkv:" once
    after = json.loads(sibling.read_text())
    assert after["provenance"]["started"] >= before["provenance"]["started"]
    assert [s["prediction"] for s in after["samples"]] == [s["prediction"] for s in before["samples"]]
    again = snakemake(run, "figures/all")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_group_job_shares_its_prefills(run):
    """The snapkv group's two variants of a cell came from one prefill per sample; no_press ran alone."""
    cell = run / "results/raw/tiny/kv_retrieval/512"
    for press, shared in (("snapkv-cr0.50", 2), ("snapkv-cr0.90", 2), ("no_press", 1)):
        raw = json.loads((cell / press / "seed0.json").read_text())
        assert raw["efficiency"]["prefill_shared_by"] == shared and raw["efficiency"]["group_variants"] == shared
        assert (raw["efficiency"]["compress_seconds"] is None) == (shared == 1)
    log = (run / "logs/eval/tiny/kv_retrieval/512/snapkv-cr0.90/seed0.log").read_text()
    assert log.startswith("snapkv-cr0.90 kv_retrieval 512: ok")


def test_report_builds(run):
    snakemake(run, "--report", "report.html")
    html = (run / "report.html").read_text(errors="ignore")
    assert "score_vs_ratio" in html
    for words in ("Provenance", "summary_score.tex", "delta_heatmap", "Study <strong>e2e</strong>",
                  "16 eval jobs in results.csv (1 model(s), 2 task(s), 4 press variant(s)): 16 ok"):
        assert words in html, words


def test_report_without_the_study_config_stops_with_one_line(run):
    """figures/all was built from .test/config.yaml (study e2e): a report made with the default study's config would
    embed these figures under captions of the default study, so it stops, writing nothing."""
    marker = {m.name: m.stat().st_mtime_ns for m in (run / "results/raw").glob(".missing*")}  # kvstudy.rawguard
    p = subprocess.run([*SNAKEMAKE, "--report", "wrong.html"], cwd=run, capture_output=True, text=True)
    assert p.returncode != 0 and not (run / "wrong.html").exists()
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("report: figures/all was built from study 'e2e'"), lines
    assert "not from this config (study 'default'" in lines[0]
    assert {m.name: m.stat().st_mtime_ns for m in (run / "results/raw").glob(".missing*")} == marker  # untouched
    again = snakemake(run, "-n", "figures/all")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_stops_before_any_job(run, tmp_path):
    bad = run / ".test" / "bad.yaml"
    bad.write_text((run / ".test/config.yaml").read_text().replace("method: snapkv", "method: snapkvv"))
    p = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", "--configfile", str(bad), "-n"], cwd=run, capture_output=True, text=True
    )
    assert p.returncode != 0
    assert "config error: presses[2].method: unknown press 'snapkvv'" in p.stderr + p.stdout


def test_lint_is_clean(run):
    p = subprocess.run([*SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_added_press_runs_only_the_new_jobs(run):
    cfg = (run / ".test/config.yaml").read_text()
    (run / ".test/more.yaml").write_text(cfg.replace("  - method: no_press\n", "  - method: no_press\n  - {method: knorm, compression_ratio: 0.5}\n"))
    p = subprocess.run([*SNAKEMAKE, "-n", "figures/all", "--cores", "1", "--configfile", ".test/more.yaml"],
                       cwd=run, capture_output=True, text=True)
    counts = eval_jobs(p.stdout + p.stderr)
    assert counts == {"eval_knorm": 4}, counts  # knorm-cr0.50 x 2 tasks x 2 lengths, nothing else


def test_a_changed_task_reruns_only_its_jobs(run):
    """Each eval job's params are its job (kvstudy.grid): Snakemake's params trigger reruns exactly the results
    whose job the config changed, here the 8 of niah; kv_retrieval's stay."""
    cfg = (run / ".test/config.yaml").read_text()
    assert "    n_samples: 10\n    n_depths: 5\n" in cfg
    (run / ".test/niah12.yaml").write_text(cfg.replace("    n_samples: 10\n    n_depths: 5\n",
                                                       "    n_samples: 12\n    n_depths: 5\n"))
    p = subprocess.run([*SNAKEMAKE, "-n", "figures/all", "--cores", "1", "--configfile", ".test/niah12.yaml"],
                       cwd=run, capture_output=True, text=True)
    counts = eval_jobs(p.stdout + p.stderr)
    # 3 press entries (a group job each) x 2 lengths of niah: its 8 results
    assert counts == {"eval_no_press": 2, "eval_streaming_llm": 2, "eval_snapkv": 2}, counts
    outputs = [o for j in dry_run_jobs(p.stdout) if j["rule"].startswith("eval_") for o in j["output"].split(", ")]
    assert len(outputs) == 8 and all(o.startswith("results/raw/tiny/niah/") for o in outputs), outputs
    assert p.stdout.count("reason: Params have changed since last execution") == 6


def test_group_sizes_are_the_studys_choice(run):
    """eval.group: one job per variant, or one per cell; the same 16 results either way."""
    cfg = (run / ".test/config.yaml").read_text()
    for group, want in (("variant", {"eval": 16}), ("cell", {"eval_cell": 4})):
        (run / f".test/{group}.yaml").write_text(cfg + f"eval: {{group: {group}}}\n")
        p = subprocess.run([*SNAKEMAKE, "-n", "--forceall", "figures/all", "--cores", "1", "--configfile",
                            f".test/{group}.yaml"], cwd=run, capture_output=True, text=True)
        assert eval_jobs(p.stdout + p.stderr) == want, p.stdout[-2000:] + p.stderr[-2000:]


def test_a_failing_job_is_drawn_as_failed_and_retried_on_demand(run):
    """A job that raises is a failed result: the study still reaches figures/all, the failure is named in the run's
    output, left out of every number and drawn as failed; `kvstudy status --retry-failed` runs exactly it again."""
    from kvstudy.plots import make_figure

    shutil.rmtree(run / "results/raw/tiny/niah/512")
    env = {**os.environ, "KVSTUDY_INJECT_FAIL": "snapkv-cr0.90"}
    p = subprocess.run([*SNAKEMAKE, "figures/all", "--cores", "2", "--configfile", ".test/config.yaml"],
                       cwd=run, capture_output=True, text=True, env=env)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    victim = "results/raw/tiny/niah/512/snapkv-cr0.90/seed0.json"
    assert (f"aggregate: warning: failed job {victim}: RuntimeError: failure injected by KVSTUDY_INJECT_FAIL"
            in out)
    raw = json.loads((run / victim).read_text())
    assert raw["status"] == "failed" and raw["quality"]["score"] is None and raw["samples"] == []
    log = (run / "logs/eval/tiny/niah/512/snapkv-cr0.90/seed0.log").read_text()
    assert "Traceback" in log and "injected" in log
    res = pd.read_csv(run / "results/tables/results.csv")
    row = res[(res.task == "niah") & (res.length == 512) & (res.press == "snapkv-cr0.90")].iloc[0]
    assert row.status == "failed" and row.error.startswith("RuntimeError: failure injected") and pd.isna(row.score)
    assert (res.status == "ok").sum() == len(res) - 1  # its group's other variant (snapkv-cr0.50) is ok
    sig = pd.read_csv(run / "results/analysis/significance.csv")
    assert len(sig[sig.task != "mean"]) == 3 * 2 * 2 - 1  # the failed cell has no test (nor its mean)
    assert len(sig[sig.task == "mean"]) == 3 * 2 - 1
    assert "failed" in (run / "results/tables/summary_score.tex").read_text()
    assert (run / "figures/all").stat().st_mtime > (run / victim).stat().st_mtime
    with paper_style():
        fig = FIGURES["score_vs_ratio"].build({"results": pd.read_csv(run / "results/tables/results.csv")})
    gids = [ln.get_gid() for ax in fig.axes if ax.get_title().startswith("NIAH · 512") for ln in ax.get_lines()]
    assert "failed:snapkv" in gids
    make_figure("delta_heatmap", run / "results/tables", run / "results/analysis", run / "failed_delta")

    status = subprocess.run([sys.executable, "-m", "kvstudy.cli", "status", ".test/config.yaml", "--retry-failed"],
                            cwd=run, capture_output=True, text=True)
    assert f"removed failed result {victim}" in status.stdout, status.stdout + status.stderr
    assert not (run / victim).exists() and "failed=0 (F)" in status.stdout
    again = snakemake(run, "figures/all")  # without the fault: exactly its group job runs again
    assert (again.stdout + again.stderr).count("rule eval_") == 1
    assert json.loads((run / victim).read_text())["status"] == "ok"


def test_killed_eval_leaves_nothing_downstream_accepts(run, tmp_path):
    import json as _json

    from kvstudy.grid import raw_path
    from kvstudy.job import Job

    out = run / "results/raw/tiny/kv_retrieval/512/snapkv-cr0.50/seed0.json"
    out.unlink()
    job = {"model": "tiny", "model_path": "builtin:tiny-retrieval", "dtype": "float32", "task": "kv_retrieval",
           "task_kind": "kv_retrieval", "task_params": {"n_samples": 2000, "n_pairs": 16}, "length": 512, "seed": 0,
           "press": "snapkv-cr0.50", "method": "snapkv", "params": {}, "compression_ratio": 0.5}
    assert run / raw_path(Job.from_dict(job)) == out  # the job as `kvstudy eval --job` reads it
    p = subprocess.Popen([sys.executable, "-m", "kvstudy.cli", "eval", "--job", _json.dumps(job), "--out", str(out)])
    import time

    time.sleep(12)  # mid-run (2000 samples take minutes)
    p.kill()
    p.wait()
    assert not out.exists()
    assert not list(out.parent.glob("*.json"))
    snakemake(run, "figures/all")
    assert _json.loads(out.read_text())["status"] == "ok"


def _eval_resources(run, config):
    p = subprocess.run([*SNAKEMAKE, "-n", "--forceall", "figures/all", "--profile", "profiles/local",
                        "--configfile", config], cwd=run, capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    blocks = job_blocks(out)
    evals = [b for b in blocks if re.search(r"rule eval_\w+:", b)]
    assert len(evals) == 12  # 3 press entries x 2 tasks x 2 lengths
    return evals, [b for b in blocks if "rule aggregate:" in b]


def test_local_profile_shares_no_gpu_and_runs_cpu_jobs_on_every_core(run):
    """eval.device auto on this CPU-only machine: eval jobs request no GPU, so `cores: all` runs as many at a time
    as there are cores; eval.device cuda: each requests one of the profile's GPUs, so they never share one."""
    from kvstudy.resources import has_gpu

    evals, _ = _eval_resources(run, ".test/config.yaml")
    assert all("gpu=" not in b for b in evals) == (not has_gpu())
    cfg = (run / ".test/config.yaml").read_text()
    (run / ".test/cuda.yaml").write_text(cfg + "eval: {device: cuda}\n")
    evals, aggregate = _eval_resources(run, ".test/cuda.yaml")
    assert all("gpu=1" in b for b in evals)  # one GPU each: eval jobs never share a GPU
    assert not any("gpu=1" in b for b in aggregate)


def test_status_sees_a_running_job_and_an_interrupted_one(run):
    """Snakemake 9's own incomplete markers and locks, as kvstudy status reads them: a job it runs is "running";
    after the run is interrupted (Ctrl-C) it is "interrupted"."""
    import signal
    import time

    cfg = (run / ".test/config.yaml").read_text()
    slow = "  slow:\n    kind: kv_retrieval\n    n_samples: 2000\n    n_pairs: 16\n"  # 8 new jobs of minutes each
    (run / ".test/slow.yaml").write_text(cfg.replace("lengths:", slow + "lengths:"))
    proc = subprocess.Popen([*SNAKEMAKE, "figures/all", "--cores", "1", "--configfile", ".test/slow.yaml"], cwd=run,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen = ""
        for _ in range(600):  # the preflight and DAG take ~10 s here (minutes on a loaded machine); the job then runs
            time.sleep(1)
            seen = subprocess.run([sys.executable, "-m", "kvstudy.cli", "status", ".test/slow.yaml"], cwd=run,
                                  capture_output=True, text=True).stdout
            if re.search(r"running=[12] \(R\)", seen):
                break
        assert re.search(r"running=[12] \(R\)", seen), seen
        running = int(re.search(r"running=(\d+)", seen).group(1))  # a group job runs 1 or 2 variants
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=600)  # snakemake stops its running job and writes its markers (slow on a loaded machine)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = subprocess.run([sys.executable, "-m", "kvstudy.cli", "status", ".test/slow.yaml"], cwd=run,
                           capture_output=True, text=True).stdout
    assert "running=0 (R)" in after and f"interrupted={running} (I)" in after, after
    assert f"missing={8 - running} (-)" in after, after


def test_group_jobs_take_evals_resources_and_runtime_times_their_variants(run):
    """What a profile or the command line sets for `eval` (profiles/slurm: --set-resources eval:...) reaches every
    group rule; the runtime grows with the group's variants (they decode one after another)."""
    p = subprocess.run([*SNAKEMAKE, "-n", "--forceall", "figures/all", "--cores", "1", "--configfile",
                        ".test/config.yaml", "--set-resources", "eval:runtime=7*attempt", "eval:mem_mb=1234",
                        "eval:gpu=1"], cwd=run, capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    blocks = {m.group(1): b for b in job_blocks(out) if (m := re.search(r"rule (eval_\w+):", b))}
    resources = {rule: dict(re.findall(r"(\w+)=([\w.]+)", re.search(r"resources: (.*)", b).group(1)))
                 for rule, b in blocks.items()}
    assert resources["eval_snapkv"]["runtime"] == "14" and resources["eval_no_press"]["runtime"] == "7"
    assert all(r["mem_mb"] == "1234" and r["gpu"] == "1" for r in resources.values())


@pytest.mark.parametrize("group", ["entry", "variant"])
def test_a_tasks_own_resources_replace_evals_for_its_jobs(run, group):
    """`resources.tasks.<task>` replaces eval's resources (the study's and --set-resources eval:...) for that task's
    group jobs, their runtime times their variants as eval's; the other task's jobs keep eval's, and a key only one
    task sets is left unset for the other's. The per-variant rule eval takes them as a function of the task
    wildcard, and there what --set-resources gives the rule itself wins (Snakemake's rule)."""
    cfg = (run / ".test/config.yaml").read_text()
    (run / ".test/task_res.yaml").write_text(
        cfg + f"eval: {{group: {group}}}\n"
        + "resources: {eval: {mem_mb: 1000}, tasks: {niah: {mem_mb: 5000, runtime: 30, qos: long}}}\n")
    p = subprocess.run([*SNAKEMAKE, "-n", "--forceall", "figures/all", "--cores", "1", "--configfile",
                        ".test/task_res.yaml", "--set-resources", "eval:runtime=7"], cwd=run, capture_output=True,
                       text=True)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    seen = {}
    for b in job_blocks(out):
        if (rule := re.search(r"rule (eval\w*):", b)) and (task := re.search(r"task=(\w+)", b)):
            res = dict(re.findall(r"(\w+)=([\w.]+)", re.search(r"resources: (.*)", b).group(1)))
            n = len(re.search(r"output: (.*)", b).group(1).split(", "))
            seen.setdefault(task.group(1), []).append((res, n))
    assert set(seen) == {"niah", "kv_retrieval"}
    for res, n in seen["niah"]:
        runtime = str(30 * n) if group == "entry" else "7"
        assert (res["mem_mb"], res["runtime"], res["qos"]) == ("5000", runtime, "long")
    for res, n in seen["kv_retrieval"]:
        assert (res["mem_mb"], "qos" in res) == ("1000", False)
    if group == "entry":  # --set-resources eval: reaches group rules through group_resources
        assert {res["runtime"] for res, n in seen["kv_retrieval"]} == {str(7 * n) for _, n in seen["kv_retrieval"]}


def test_compare_tests_method_against_method_from_the_same_samples(run):
    """`compare:` adds results/analysis/significance_pairs.csv to figures/all; it reruns no eval job (the pairs are
    tested on samples.csv), and its numbers are those of kvstudy.significance_pairs on that table."""
    from kvstudy.significance import read_samples
    from kvstudy.significance_pairs import pairwise

    cfg = (run / ".test/config.yaml").read_text()
    (run / ".test/compare.yaml").write_text(cfg + "compare: [[snapkv, streaming_llm]]\n")
    p = subprocess.run([*SNAKEMAKE, "figures/all", "--cores", "2", "--configfile", ".test/compare.yaml"], cwd=run,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "rule eval" not in p.stdout + p.stderr
    out = pd.read_csv(run / "results/analysis/significance_pairs.csv")
    assert set(zip(out.press, out.baseline)) == {("snapkv-cr0.90", "streaming_llm-cr0.90")}
    assert len(out) == 4  # 2 tasks x 2 lengths
    want = pairwise(read_samples(run / "results/tables/samples.csv"), [("snapkv-cr0.90", "streaming_llm-cr0.90")])
    assert out.p_holm.tolist() == pytest.approx(want.p_holm.tolist())
