"""The eval engine (kvstudy.engine): a group of press variants from one model load and one prefill per sample and
prefill class gives, for every registered press, bit for bit what each variant gives in a job of its own.

The caches are compared tensor by tensor (quantized data and scales included) and so are the keys a masking press
masks; the jobs by their predictions, scores and KV bytes. On the shipped tiny model and random-weight Qwen3 (8
query / 2 KV heads), Gemma3 (sliding-window and global layers) and GPT-NeoX (another module layout, fused qkv,
partial RoPE), CPU, float32.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch

from conftest import ROOT, TINY
from kvstudy.engine.group import prefix_ids
from kvstudy.engine.prefill import OwnPrefill, SharedPrefill, attention_modules, union
from kvstudy.engine.stops import Stops
from kvstudy.evaluate import run_group, run_job
from kvstudy.measure import Clock
from kvstudy.presses import PRESSES
from kvstudy.presses.variant import build_run
from kvstudy.tasks import get_task
from variants import R, variants_for

VARIANTS = variants_for("engine")  # every registered press (and both variant options): tests/variants.py


def test_every_registered_press_is_covered():
    assert {v["method"] for v in VARIANTS} == set(PRESSES)


def split(variant: dict, ratio: float | None = None) -> tuple[str, dict, float | None]:
    params = {k: v for k, v in variant.items() if k not in ("method", "compression_ratio")}
    r = variant.get("compression_ratio") if ratio is None else ratio
    return variant["method"], params, r


# --- caches: derived from a shared prefill == prefilled under the press, tensor for tensor --------------------------


@pytest.fixture(scope="module")
def arch_paths(tmp_path_factory):
    """The random-weight models, made once for every test here."""
    from archs import make_model

    root = tmp_path_factory.mktemp("engine-archs")
    return {arch: make_model(arch, root / arch, sliding_window=48, layers=6 if arch == "gemma3" else 2)
            for arch in ("qwen3", "gemma3", "gpt_neox")}


@pytest.fixture(scope="module")
def arch_models(arch_paths):
    from kvstudy.models import load_model

    return {"tiny": load_model(TINY, "float32", "sdpa", "cpu")} | {
        arch: load_model(path, "float32", "sdpa", "cpu") for arch, path in arch_paths.items()}


def leaves(obj) -> list[torch.Tensor]:
    """Every tensor a cache layer holds: quantized tensors through their inner tensors (data, scales, shifts)."""
    if isinstance(obj, torch.Tensor):
        if type(obj) is not torch.Tensor and hasattr(obj, "__tensor_flatten__"):
            return [t for name in obj.__tensor_flatten__()[0] for t in leaves(getattr(obj, name))]
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in leaves(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in leaves(o)]
    return []


def cache_state(cache, model) -> list:
    state = [(type(layer).__name__, [t for n in ("keys", "values", "_quantized_keys", "_quantized_values")
                                     for t in leaves(getattr(layer, n, None))]) for layer in cache.layers]
    masks = [getattr(m, "masked_key_indices", None) for m in attention_modules(model)]
    return state + [leaves(m) for m in masks]


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@functools.cache  # one sample per model, the same for every variant: tasks make samples deterministically
def sample_for(arch, tok):
    if arch == "tiny":
        return get_task("niah", {"n_samples": 1}).samples(tok, 384, 0)[0]
    return get_task("vt", {"n_samples": 1, "max_new_tokens": 8, "num_hops": 2}).samples(tok, 160, 0)[0]


@pytest.mark.parametrize("arch", ["tiny", "qwen3", "gemma3", "gpt_neox"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_a_cache_derived_from_a_shared_prefill_is_its_own_prefills_bit_for_bit(arch_models, arch, variant):
    """The variant's cache (keys, values, quantized data and scales, masked keys) and its answer, from a prefill
    shared with another ratio of the same press, equal those of a prefill of its own under the press."""
    from kvstudy.evaluate import run_sample

    model, tok = arch_models[arch]
    method, params, ratio = split(variant)
    run = build_run(method, params, ratio)
    other = build_run(method, params, 0.75 if ratio else None)  # the union of reads is this press's own
    attention = run.attention or "sdpa"
    model.set_attn_implementation(attention)
    try:
        s, clock = sample_for(arch, tok), Clock(torch.device("cpu"))
        ids = prefix_ids(s, run.query_aware)
        own = cache_state(OwnPrefill(model, ids, clock).cache_for(run)[0], model)
        shared = SharedPrefill(model, ids, union([run.prefill_reads(), other.prefill_reads()]), clock, 2)
        derived = cache_state(shared.cache_for(run)[0], model)
        assert same(own, derived)
        alone = run_sample(model, tok, run, s, 8, Stops(), clock)
        grouped = run_sample(model, tok, run, s, 8, Stops(), clock, shared)
        assert grouped["prediction"] == alone["prediction"]
        for key in ("kv_tokens", "kv_bytes", "kv_tokens_attended", "kv_tokens_final", "kv_bytes_final"):
            assert grouped[key] == alone[key], key
        assert grouped["prefill_shared_by"] == 2 and grouped["compress_seconds"] > 0
        assert alone["prefill_shared_by"] == 1 and alone["compress_seconds"] is None
    finally:
        model.set_attn_implementation("sdpa")


def test_a_shared_prefill_is_left_as_it_was(arch_models):
    """Deriving caches (and decoding after them, which grows and evicts) never writes into the shared prefill."""
    from kvstudy.evaluate import run_sample

    model, tok = arch_models["tiny"]
    s, clock = sample_for("tiny", tok), Clock(torch.device("cpu"))
    runs = [build_run("knorm", {}, R), build_run("decoding", {"press": "knorm", "compression_interval": 2}, R),
            build_run("no_press", {"quantization": "int4"}, None), build_run("adakv", {}, R)]
    shared = SharedPrefill(model, s.context_ids, union([r.prefill_reads() for r in runs]), clock, len(runs))
    before = [t.clone() for layer in shared.cache.layers for t in (layer.keys, layer.values)]
    for run in runs:
        run_sample(model, tok, run, s, 6, Stops(), clock, shared)
    after = [t for layer in shared.cache.layers for t in (layer.keys, layer.values)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_a_press_reading_more_than_it_declares_is_caught(arch_models):
    """The declarations are what the equality rests on: SnapKV declared as reading no hidden states compresses
    differently from a shared prefill (it scores against zeros), so the test above would fail."""
    from kvstudy.presses import NOTHING

    model, tok = arch_models["tiny"]
    s, clock = sample_for("tiny", tok), Clock(torch.device("cpu"))
    run = build_run("snapkv", {"window_size": 16}, R)
    own = cache_state(OwnPrefill(model, s.context_ids, clock).cache_for(run)[0], model)
    run.reads = NOTHING
    shared = SharedPrefill(model, s.context_ids, NOTHING, clock, 2)
    assert not same(own, cache_state(shared.cache_for(run)[0], model))


# --- jobs: a group job's results == one-variant jobs' ---------------------------------------------------------------


def jobs_of(variants, model="tiny", path=TINY, task=None, length=256):
    from kvstudy.config import validate
    from kvstudy.grid import jobs

    task = task or {"niah": {"n_samples": 3, "n_depths": 3}}
    config = {"models": {model: {"path": path, "dtype": "float32"}}, "tasks": task, "lengths": [length],
              "presses": variants, "eval": {"device": "cpu"}}
    return jobs(validate(config))


def compare(grouped: dict, alone: dict) -> None:
    assert grouped["status"] == alone["status"] == "ok", (grouped["error"], alone["error"])
    assert grouped["quality"] == alone["quality"]
    keys = ("id", "prediction", "score", "kv_tokens", "kv_bytes", "kv_tokens_final", "kv_bytes_final", "nll_sum",
            "kl_sum")
    assert [{k: r.get(k) for k in keys} for r in grouped["samples"]] == [
        {k: r.get(k) for k in keys} for r in alone["samples"]]
    for key in ("kv_tokens_kept", "kv_bytes", "kv_fraction_attended", "kv_tokens_final", "kv_bytes_final",
                "attn_implementation"):
        assert grouped["efficiency"][key] == alone["efficiency"][key], key


def with_second_ratio(variants):
    return [{**v, "compression_ratio": [v["compression_ratio"], 0.75]} if "compression_ratio" in v else v
            for v in variants]


@pytest.mark.parametrize("arch", ["tiny", "gemma3", "gpt_neox"])
def test_a_group_job_of_every_press_gives_each_variants_own_results(arch, arch_paths, monkeypatch):
    """Every registered press at two ratios (four prefill classes: SDPA, eager, query-aware, whole prompt) in one
    group job: each result equals the variant's one-variant job, and each sample was prefilled once per class."""
    from kvstudy import evaluate

    if arch == "tiny":
        js = jobs_of(with_second_ratio(VARIANTS))
    else:
        js = jobs_of(with_second_ratio(VARIANTS), arch, arch_paths[arch],
                     {"vt": {"n_samples": 2, "max_new_tokens": 8, "num_hops": 2}}, 160)
        js = [dataclasses.replace(j, stop_words=[]) for j in js]
    grouped = run_group(js, device="cpu")  # on a model of its own
    # the one-variant jobs share one load per attention kernel: each must leave the model as it found it
    cached = functools.cache(evaluate.load_model)
    monkeypatch.setattr(evaluate, "load_model", lambda path, dtype, attn, device, overrides=None:
                        cached(path, dtype, attn, device))
    for job, result in zip(js, grouped):
        compare(result, run_job(job, device="cpu"))
        assert result["efficiency"]["group_variants"] == len(js)
    by = {r["job"]["press"]: r["efficiency"] for r in grouped}
    assert by["observed_attention-cr0.50"]["prefill_shared_by"] == 4  # eager: observed_attention x2, decoding x2
    assert by["snapkv-cr0.50-ws16-qa"]["prefill_shared_by"] == 2
    assert by["snapkv-cs100-pmaxpool-ws16-qp"]["prefill_shared_by"] == 2  # the whole prompt: snapkv, pyramidkv
    assert by["knorm-cr0.50"]["prefill_shared_by"] == len(js) - 8


def test_each_sample_is_prefilled_once_per_prefill_class(monkeypatch):
    from kvstudy import evaluate

    js = jobs_of([{"method": "no_press"}, {"method": "knorm", "compression_ratio": [0.5, 0.9]},
                  {"method": "observed_attention", "compression_ratio": [0.5, 0.9]}, {"method": "int4"}])
    prefills = []
    load = evaluate.load_model

    def counted(*a, **kw):
        model, tok = load(*a, **kw)
        model.model.register_forward_pre_hook(
            lambda m, args, kwargs: prefills.append(kwargs["input_ids"].shape[1]) if kwargs["input_ids"].shape[1] == 256
            else None, with_kwargs=True)
        return model, tok

    monkeypatch.setattr(evaluate, "load_model", counted)
    results = run_group(js, device="cpu")
    assert all(r["status"] == "ok" for r in results)
    assert len(prefills) == 3 * 2  # 3 samples x 2 classes (SDPA: 4 variants, eager: 2), not 3 x 6


def test_timing_is_attributed_per_variant():
    js = jobs_of([{"method": "no_press"}, {"method": "snapkv", "compression_ratio": [0.5, 0.9]}])
    results = run_group(js, device="cpu")
    shared = [r["samples"][0]["prefill_seconds"] for r in results]
    assert len(set(shared)) == 1  # one prefill of sample 0, attributed whole to each variant
    for r in results:
        e = r["efficiency"]
        assert e["prefill_shared_by"] == 3 and e["group_variants"] == 3 and e["compress_seconds"] > 0
        for s in r["samples"]:
            assert s["ttft_seconds"] >= s["prefill_seconds"] + s["compress_seconds"]
        assert 0 < e["variant_seconds"] < e["total_seconds"]
    alone = run_job(js[1], device="cpu")["efficiency"]
    assert alone["prefill_shared_by"] == 1 and alone["compress_seconds"] is None and alone["group_variants"] == 1


def test_perplexity_in_a_group_is_each_variants_own():
    text = str(ROOT / "tests" / "data" / "tiny_text.txt")
    task = {"ppl": {"kind": "perplexity", "source": text, "n_samples": 2, "continuation_tokens": 32, "chunk_size": 8}}
    js = jobs_of([{"method": "no_press"}, {"method": "knorm", "compression_ratio": [0.5, 0.75]},
                  {"method": "pyramidkv", "compression_ratio": 0.5, "window_size": 16}, {"method": "int4"},
                  {"method": "adakv", "compression_ratio": 0.5},
                  {"method": "decoding_budget", "press": "knorm", "target_size": 128}], task=task)
    for job, result in zip(js, run_group(js, device="cpu")):
        compare(result, run_job(job, device="cpu"))
        assert result["fidelity"] == run_job(job, device="cpu")["fidelity"]


# --- errors stay with their variant ------------------------------------------------------------------------------


def test_a_failing_variant_costs_the_others_nothing(monkeypatch):
    js = jobs_of([{"method": "no_press"}, {"method": "knorm", "compression_ratio": 0.5},
                  {"method": "snapkv", "compression_ratio": 0.5}])
    monkeypatch.setenv("KVSTUDY_INJECT_FAIL", "knorm-*")
    failures = {}
    results = run_group(js, device="cpu", failures=failures)
    assert results[1]["status"] == "failed" and "injected" in results[1]["error"] and "Traceback" in failures[1]
    monkeypatch.delenv("KVSTUDY_INJECT_FAIL")
    for i in (0, 2):
        compare(results[i], run_job(js[i], device="cpu"))


def test_out_of_memory_beside_a_shared_prefill_is_tried_again_alone(monkeypatch):
    """A variant that runs out of memory while the shared prefill's uncompressed cache is held runs again on its
    own: its result is its one-variant job's. One that runs out of memory on its own too is `oom`."""
    from kvstudy.engine import prefill

    js = jobs_of([{"method": "no_press"}, {"method": "knorm", "compression_ratio": 0.5},
                  {"method": "snapkv", "compression_ratio": 0.5}])
    derive = prefill.SharedPrefill.cache_for

    def tight(self, run):
        if run.press is not None and type(run.press).__name__ == "KnormPress":
            raise torch.OutOfMemoryError("CUDA out of memory (simulated beside the shared prefill)")
        return derive(self, run)

    monkeypatch.setattr(prefill.SharedPrefill, "cache_for", tight)
    results = run_group(js, device="cpu")
    monkeypatch.undo()
    for job, result in zip(js, results):
        compare(result, run_job(job, device="cpu"))
    assert [r["prefill_shared_by"] for r in results[1]["samples"]] == [1, 1, 1]  # knorm ran alone
    # sample 0 was prefilled for the three; then knorm left the class
    assert [r["prefill_shared_by"] for r in results[2]["samples"]] == [3, 2, 2]

    monkeypatch.setenv("KVSTUDY_INJECT_OOM", "snapkv-*")
    results = run_group(js, device="cpu")
    assert [r["status"] for r in results] == ["ok", "ok", "oom"] and results[2]["samples"] == []


def test_a_shared_prefill_out_of_memory_falls_back_to_own_prefills(monkeypatch):
    from kvstudy.engine import prefill

    js = jobs_of([{"method": "no_press"}, {"method": "knorm", "compression_ratio": 0.5}])

    def no_room(self, *a, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated shared prefill)")

    monkeypatch.setattr(prefill.SharedPrefill, "__init__", no_room)
    results = run_group(js, device="cpu")
    monkeypatch.undo()
    for job, result in zip(js, results):
        compare(result, run_job(job, device="cpu"))
        assert result["efficiency"]["prefill_shared_by"] == 1


def test_a_press_that_is_not_prefill_invariant_prefills_alone(monkeypatch):
    from kvstudy.presses import PressSpec, get_press, register

    knorm = get_press("knorm")
    spec = register(PressSpec("knorm_alone", "knorm, declared not prefill-invariant", knorm.factory,
                              shares_prefill=False))
    try:
        js = jobs_of([{"method": "no_press"}, {"method": "knorm", "compression_ratio": 0.5},
                      {"method": "knorm_alone", "compression_ratio": 0.5}])
        results = run_group(js, device="cpu")
        assert [r["efficiency"]["prefill_shared_by"] for r in results] == [2, 2, 1]
        assert [s["prediction"] for s in results[1]["samples"]] == [s["prediction"] for s in results[2]["samples"]]
        compare(results[2], run_job(js[2], device="cpu"))
    finally:
        PRESSES.pop(spec.name)


def test_a_group_is_one_cell():
    from kvstudy.engine.job import check_cell

    js = jobs_of([{"method": "no_press"}, {"method": "knorm", "compression_ratio": 0.5}])
    check_cell(js)
    with pytest.raises(ValueError, match="knorm-cr0.50 differs in length"):
        check_cell([js[0], dataclasses.replace(js[1], length=512)])
    with pytest.raises(ValueError, match="each variant once"):
        check_cell([js[0], js[0]])


def test_kvstudy_eval_writes_each_variants_result_and_log(tmp_path, monkeypatch):
    """One group job, three fates: ok, failed, out of memory; each variant's result passes the check every reader
    makes (kvstudy.rawcheck: schema, contract, the config's job of its path), and its log says what became of it."""
    from kvstudy.cli import main
    from kvstudy.rawcheck import read

    js = jobs_of([{"method": "no_press"}, {"method": "knorm", "compression_ratio": 0.5},
                  {"method": "snapkv", "compression_ratio": 0.5}])
    args = ["eval", "--device", "cpu"]
    for i, job in enumerate(js):
        args += ["--job", json.dumps(job.as_dict()), "--out", str(tmp_path / f"{i}.json"),
                 "--log", str(tmp_path / f"{i}.log")]
    monkeypatch.setenv("KVSTUDY_INJECT_FAIL", "knorm-*")
    monkeypatch.setenv("KVSTUDY_INJECT_OOM", "snapkv-*")
    main(args)
    results = [read(tmp_path / f"{i}.json", job) for i, job in enumerate(js)]
    assert [r["status"] for r in results] == ["ok", "failed", "oom"]
    ok, failed, oom = results
    assert ok["efficiency"]["group_variants"] == 3 and ok["efficiency"]["variant_seconds"] > 0
    assert ok["efficiency"]["total_seconds"] == oom["efficiency"]["total_seconds"]  # the job's, one number
    assert all(v is None for v in failed["efficiency"].values()) and failed["samples"] == []
    assert oom["quality"]["score"] is None and oom["samples"] == [] and "out of memory" in oom["error"]
    assert "no_press niah 256: ok" in (tmp_path / "0.log").read_text()
    log = (tmp_path / "1.log").read_text()
    assert "Traceback" in log and "failure injected" in log and "recorded as status failed" in log
    assert "snapkv-cr0.50 niah 256: oom" in (tmp_path / "2.log").read_text()


def test_the_gpu_bench_runs_small_on_a_cpu(tmp_path):
    """bench/gpu_engine.py at a small size: both ways over the same samples, the same tokens, one shared prefill."""
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_engine.py"), "--small", "--device", "cpu",
                        "--lengths", "128", "--samples", "1", "--new-tokens", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| snapkv-cr0.88 |" in p.stdout and "| NO |" not in p.stdout
    report = json.loads(out.read_text())["lengths"]["128"]
    assert set(report["one_variant"]) == set(report["grouped"]["variants"]) and len(report["one_variant"]) == 8
    assert all(r["decoded"] == 2 for r in report["grouped"]["variants"].values())
