"""Grouped against one-variant eval on a random-weight model of Llama-3.1-8B's architecture: time per stage, memory.

    python bench/gpu_engine.py --device cuda [--lengths 16384 32768] [--samples 2] [--new-tokens 32] [--out FILE]
    python bench/gpu_engine.py --small          # CPU, a 2-layer model of the same family (the tests run this)
    python bench/gpu_engine.py --project studies/helmet_reasoning.yaml [--stage-times FILE]

The model is built from Llama-3.1-8B's config (written out below: 32 layers, 32 query / 8 KV heads, head_dim 128,
vocab 128256, llama3 RoPE scaling), random weights in bfloat16 (float32 with --small), saved once to a temporary
directory so that loading it is a real checkpoint load; nothing is downloaded. Contexts are random token ids.

For each length, the same press variants run two ways over the same samples (kvstudy.engine):
- one-variant: each variant loads the model and prefills every sample itself, under its press (what a job of
  `eval.group: variant` does);
- grouped: one load, one uncompressed prefill per sample shared by every variant, each variant's cache derived from
  it, then each variant's question and answer (what a group job does).
Stages are timed with the device synchronised (load, prefill, compression, question to first token, decoding; the
load is measured once and counted once per job), peak device memory is read per variant (one-variant) and over the
group, and the generated tokens of both ways are compared. Prints a markdown table per length and writes every
number to --out as JSON. Decoding ignores stop tokens: every variant decodes --new-tokens tokens.

`--project STUDY` prints what the study costs grouped (its eval.group, and cell) and one variant per job: model loads,
prefilled tokens and decoded tokens (an upper bound: every answer at its task's max_new_tokens), counted from the
study's own grid and prefill classes; with stage times (this run's, or --stage-times, a JSON this script wrote) also
the GPU hours, as loads x load + prefilled tokens x prefill per token + decoded tokens x decode per token, with the
no_press stage times of one measured length (the longest at most 16k tokens; studies/helmet_reasoning.yaml runs at
16k only) (docs/engine.md, "GPU cost of a study").
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

LLAMA_31_8B = dict(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192},
    bos_token_id=128000, eos_token_id=[128001, 128008, 128009], tie_word_embeddings=False, hidden_act="silu",
)
SMALL = dict(LLAMA_31_8B, vocab_size=1024, hidden_size=256, intermediate_size=896, num_hidden_layers=2,
             num_attention_heads=8, num_key_value_heads=2, head_dim=32, bos_token_id=0, eos_token_id=1)


def variants(window: int) -> list[tuple[str, str, dict, float | None]]:
    """(slug, method, params, ratio): prefill-invariant presses of studies/helmet_reasoning.yaml's kind."""
    return [
        ("no_press", "no_press", {}, None),
        ("knorm-cr0.88", "knorm", {}, 0.875),
        ("streaming_llm-cr0.88", "streaming_llm", {}, 0.875),
        ("snapkv-cr0.75", "snapkv", {"window_size": window}, 0.75),
        ("snapkv-cr0.88", "snapkv", {"window_size": window}, 0.875),
        ("snapkv-cr0.94", "snapkv", {"window_size": window}, 0.9375),
        ("pyramidkv-cr0.88", "pyramidkv", {"window_size": window}, 0.875),
        ("expected_attention-cr0.88", "expected_attention", {}, 0.875),
    ]


def build(config: dict, dtype, where: Path) -> Path:
    """Save a random-weight model of `config` in `where` (a checkpoint to load, as a job loads one)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**config), dtype=dtype)
    model.save_pretrained(where)
    del model
    return where


def load(where: Path, dtype, device: str, clock) -> tuple[object, float]:
    from transformers import AutoModelForCausalLM

    t0 = clock.now()
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, attn_implementation="sdpa").to(device).eval()
    return model, clock.now() - t0


class Peak:
    """Peak device memory: the CUDA allocator's, or the process's RSS on a CPU (never reset there)."""

    def __init__(self, device: torch.device):
        from kvstudy.measure import PeakMemory

        self.mem = PeakMemory(device)

    def __enter__(self):
        self.mem.reset()
        return self

    def __exit__(self, *exc):
        self.bytes = self.mem.peak()


def one_variant(model, runs, samples, new_tokens: int, clock, device) -> dict:
    """Each variant prefills every sample itself under its press: {slug: stage seconds, tokens, peak}."""
    from kvstudy.engine.prefill import OwnPrefill

    out = {}
    for slug, run in runs.items():
        row = {"prefill": 0.0, "first_token": 0.0, "decode": 0.0, "decoded": 0, "tokens": []}
        with Peak(device) as peak:
            for ctx, q in samples:
                cache, times = OwnPrefill(model, ctx, clock).cache_for(run)
                row["prefill"] += times["prefill_seconds"]
                _answer(row, model, run, cache, ctx, q, new_tokens, clock)
                del cache
        out[slug] = row | {"peak_bytes": peak.bytes}
    return out


def _answer(row: dict, model, run, cache, ctx, q, new_tokens: int, clock) -> None:
    """Question and answer of one variant on its ready cache, its stage times and tokens added to `row`."""
    from kvstudy.engine.generate import answer
    from kvstudy.engine.stops import Stops

    t_ready = clock.now()
    tokens, t_first, t_end = answer(model, run, cache, len(ctx), q, new_tokens, Stops(), clock)
    row["first_token"] += t_first - t_ready
    row["decode"] += t_end - t_first
    row["decoded"] += len(tokens) - 1
    row["tokens"].append(tokens)


def grouped(model, runs, samples, new_tokens: int, clock, device) -> dict:
    """One prefill per sample shared by every variant: {"prefill": s, "peak_bytes": B, "variants": {...}}."""
    from kvstudy.engine.prefill import SharedPrefill, union

    reads = union([r.prefill_reads() for r in runs.values()])
    rows = {slug: {"compress": 0.0, "first_token": 0.0, "decode": 0.0, "decoded": 0, "tokens": []} for slug in runs}
    prefill = 0.0
    with Peak(device) as peak:
        for ctx, q in samples:
            shared = SharedPrefill(model, ctx, reads, clock, len(runs))
            prefill += shared.seconds
            for slug, run in runs.items():
                cache, times = shared.cache_for(run)
                rows[slug]["compress"] += times["compress_seconds"]
                _answer(rows[slug], model, run, cache, ctx, q, new_tokens, clock)
                del cache
            del shared
    return {"prefill": prefill, "peak_bytes": peak.bytes, "variants": rows}


def _gb(nbytes: int | None) -> str:
    """Peak memory above the weights in GB; CUDA only (kvstudy.measure.PeakMemory measures none on CPU)."""
    return "n/a" if nbytes is None else f"{nbytes / 1024**3:.1f}"


def table(length: int, load_s: float, alone: dict, group: dict) -> str:
    lines = [f"\n{length} tokens (load {load_s:.1f} s per job)\n",
             "| variant | one-variant: prefill s | first token s | decode tok/s | peak GB | grouped: compress s | "
             "first token s | decode tok/s | same tokens |", "|---|---|---|---|---|---|---|---|---|"]
    for slug, a in alone.items():
        g = group["variants"][slug]
        lines.append(f"| {slug} | {a['prefill']:.2f} | {a['first_token']:.3f} | {a['decoded'] / a['decode']:.1f} | "
                     f"{_gb(a['peak_bytes'])} | {g['compress']:.3f} | {g['first_token']:.3f} | "
                     f"{g['decoded'] / g['decode']:.1f} | {'yes' if a['tokens'] == g['tokens'] else 'NO'} |")
    n = len(alone)
    alone_total = n * load_s + sum(a["prefill"] + a["first_token"] + a["decode"] for a in alone.values())
    group_total = load_s + group["prefill"] + sum(g["compress"] + g["first_token"] + g["decode"]
                                                  for g in group["variants"].values())
    lines += [f"\ngrouped: one shared prefill per sample, {group['prefill']:.2f} s in all; peak "
              f"{_gb(group['peak_bytes'])} GB. Total with loads: one-variant {alone_total:.1f} s ({n} loads), "
              f"grouped {group_total:.1f} s (1 load): {alone_total / group_total:.2f}x."]
    return "\n".join(lines)


def counts(study: Path) -> dict[str, dict[str, float]]:
    """{mode: {loads, prefill_tokens, decode_tokens, jobs}} of a study's eval jobs, grouped as each mode groups."""
    import yaml

    from kvstudy.config import validate
    from kvstudy.grid import eval_groups, jobs
    from kvstudy.presses.variant import build_run
    from kvstudy.tasks import TASKS, get_task

    config = validate(yaml.safe_load(study.read_text()))
    js = jobs(config)
    runs = {j["press"]: build_run(j["method"], j["params"], j["compression_ratio"]) for j in js}
    samples = {t: p.get("n_samples", 100) for t, p in config["tasks"].items()}
    budget = {t: p.get("max_new_tokens", getattr(get_task(p.get("kind", t), {k: v for k, v in p.items()
                                                                                if k != "kind"}), "max_new_tokens", 0))
              for t, p in config["tasks"].items() if TASKS.get(p.get("kind", t))}
    out = {}
    for mode in ("variant", "entry", "cell"):
        groups = eval_groups({**config, "eval": {**config["eval"], "group": mode}}, js)
        cells: dict[tuple, list] = {}
        for j in js:
            cells.setdefault((j["model"], j["task"], j["length"], j["seed"]), []).append(j)
        loads = prefill = decode = 0.0
        for (model, task, length, seed), members in cells.items():
            units = [[j] for j in members] if groups is None else [
                [j for j in members if j["press"] in g.presses] for g in groups if g.cell in (None, (model, task,
                                                                                                  length, seed))]
            units = [u for u in units if u]
            for unit in units:
                classes = {runs[j["press"]].prefill_class(j["attn_implementation"]) if runs[j["press"]].shares_prefill
                           else j["press"] for j in unit}
                loads += 1
                prefill += len(classes) * samples[task] * length
                decode += len(unit) * samples[task] * budget.get(task, 0)
        out[mode] = {"jobs": int(loads), "loads": loads, "prefill_tokens": prefill, "decode_tokens": decode}
    return out


def projection(study: Path, report: dict | None) -> str:
    c = counts(study)
    lines = [f"\n{study}: eval jobs and tokens by eval.group (decoded tokens: an upper bound, every answer at its "
             "task's max_new_tokens)\n", "| eval.group | jobs (model loads) | prefilled tokens | decoded tokens |"
             + (" GPU hours: loads | prefill | decode | total |" if report else ""),
             "|---|---|---|---|" + ("---|---|---|---|" if report else "")]
    for mode, k in c.items():
        row = f"| {mode} | {k['loads']:,.0f} | {k['prefill_tokens'] / 1e9:.2f} G | {k['decode_tokens'] / 1e9:.2f} G |"
        if report:
            t = stage_times(report)
            parts = [k["loads"] * t["load"], k["prefill_tokens"] * t["prefill_per_token"],
                     k["decode_tokens"] * t["decode_per_token"]]
            row += "".join(f" {x / 3600:,.0f} |" for x in parts) + f" {sum(parts) / 3600:,.0f} |"
        lines.append(row)
    if report:
        lines.append(f"\nstage times from {report['device']} ({report['model']}), {stage_times(report)}")
    return "\n".join(lines)


def stage_times(report: dict) -> dict[str, float]:
    """Load seconds, prefill seconds per token and decode seconds per token (no_press, the longest length measured
    that is at most 16k tokens, else the shortest)."""
    lengths = sorted(int(k) for k in report["lengths"])
    length = max([n for n in lengths if n <= 16384] or lengths[:1])
    base = report["lengths"][str(length) if str(length) in report["lengths"] else length]["one_variant"]["no_press"]
    return {"load": report["load_seconds"], "prefill_per_token": base["prefill"] / (report["samples"] * length),
            "decode_per_token": base["decode"] / base["decoded"], "at_length": length}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="a 2-layer model of the same family, float32 (CPU tests)")
    ap.add_argument("--lengths", type=int, nargs="+")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--window", type=int, help="SnapKV/PyramidKV window (default 256; 16 with --small)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--project", type=Path, help="a study: its cost grouped and one variant per job")
    ap.add_argument("--stage-times", type=Path, help="with --project and no run: stage times from this JSON")
    a = ap.parse_args()
    if a.project and (a.stage_times or not a.lengths and not a.small and a.device == "cpu"):
        print(projection(a.project, json.loads(a.stage_times.read_text()) if a.stage_times else None))
        return
    from kvstudy.measure import Clock
    from kvstudy.presses.variant import build_run

    device = torch.device(a.device)
    config, dtype = (SMALL, torch.float32) if a.small else (LLAMA_31_8B, torch.bfloat16)
    lengths = a.lengths or ([256, 512] if a.small else [16384, 32768])
    clock = Clock(device)
    torch.manual_seed(0)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
              or platform.machine(), "model": "Llama-3.1-8B architecture, random weights" + (" (small)" * a.small),
              "samples": a.samples, "new_tokens": a.new_tokens, "lengths": {}}
    with tempfile.TemporaryDirectory() as d:
        model, load_s = load(build(config, dtype, Path(d)), dtype, a.device, clock)
    report["load_seconds"] = load_s
    with torch.no_grad():  # one-time costs (kernel selection, allocator) before anything is timed, as a job does
        model(input_ids=torch.randint(10, config["vocab_size"], (1, 64), device=device))
    runs = {slug: build_run(m, p, r) for slug, m, p, r in variants(a.window or (16 if a.small else 256))}
    for length in lengths:
        samples = [(torch.randint(10, config["vocab_size"], (length,)).tolist(),
                    torch.randint(10, config["vocab_size"], (8,)).tolist()) for _ in range(a.samples)]
        alone = one_variant(model, runs, samples, a.new_tokens, clock, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        group = grouped(model, runs, samples, a.new_tokens, clock, device)
        report["lengths"][length] = {"one_variant": alone, "grouped": group}
        print(table(length, load_s, alone, group), flush=True)
    if a.out:
        for entry in report["lengths"].values():  # token ids are for the comparison only
            for rows in (entry["one_variant"], entry["grouped"]["variants"]):
                for row in rows.values():
                    row["tokens"] = len(row.pop("tokens"))
        a.out.write_text(json.dumps(report, indent=1))
    if a.project:
        print(projection(a.project, json.loads(json.dumps(report))))


if __name__ == "__main__":
    main()
