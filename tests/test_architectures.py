"""Every registered press on every architecture kvpress lists as tested, and GPT-NeoX, for a generated task and
perplexity.

Random-weight models (tests/archs.py: Llama, Mistral with a sliding window, Phi3, Qwen2, Qwen3 with 8 query /
2 KV heads, Gemma3 mixing sliding-window and global layers, GPT-NeoX with a fused qkv projection and RoPE over a
quarter of each head) and a BPE tokenizer with digits and a chat template.
Each press variant x architecture x task kind either is refused by `kvstudy.presses.support.unsupported` (config
validation asks it before any job) or runs as an eval job (`kvstudy.grid.jobs` -> `kvstudy.evaluate.run_job`) and
keeps what it claims of *the model's own cache*: the cache transformers builds for the model
(`DynamicCache(config=...)`, as `generate()` does), whose sliding-window layers keep their window. Presses
compress the full-attention layers only (README "Presses"); a refused variant, run anyway, changes nothing.

Expected sizes come from transformers' own cache of the same tokens and from kvpress's budget rule
(`int(n * (1 - ratio))` entries per full layer and KV head), never from kvstudy's own accounting.
"""

from __future__ import annotations

import functools

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from conftest import ROOT
from kvstudy.models.layout import body, kv_heads
from kvstudy.presses import PRESSES
from kvstudy.presses.support import unsupported
from archs import ARCHS, make_model
from variants import DUO, R, variants_for

L = 160  # context tokens: more than three sliding windows
WINDOW = 48
TEXT = str(ROOT / "tests" / "data" / "tiny_text.txt")
TASKS = {"vt": {"n_samples": 1, "max_new_tokens": 10, "num_hops": 2},
         "ppl": {"kind": "perplexity", "source": TEXT, "n_samples": 1, "continuation_tokens": 24, "chunk_size": 8}}
VARIANTS = variants_for("archs")  # every registered press (and both variant options): tests/variants.py


def test_every_registered_press_is_covered():
    assert {v["method"] for v in VARIANTS} == set(PRESSES)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("archs")
    # Gemma3 with 6 layers: 2 global among 4 sliding, so PyramidKV has a pyramid of full layers
    return {a: make_model(a, root / a, sliding_window=WINDOW, layers=6 if a == "gemma3" else 2) for a in ARCHS}


@pytest.fixture(scope="module")
def jobs(paths):
    """Every job of the study, by (arch, task, press slug); models are loaded once (load_model is cached)."""
    from kvstudy import evaluate
    from kvstudy.config import fill_defaults, load_schema
    from kvstudy.grid import jobs as grid_jobs
    from kvstudy.models import load_model

    cached = functools.lru_cache(maxsize=None)(load_model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate, "load_model", lambda path, dtype, attn, device, overrides=None:
                   cached(path, dtype, attn, device))
        out = {}
        for arch, path in paths.items():
            config = {"models": {arch: {"path": path, "dtype": "float32"}}, "tasks": TASKS, "lengths": [L],
                      "presses": VARIANTS, "eval": {"stop_words": []}}
            fill_defaults(config, load_schema())  # not validate: the ppl x query-aware cases are asked for on purpose
            for j in grid_jobs(config):
                out[arch, j.task, j.press] = j
        yield out


def _cases():
    from kvstudy.grid import variants

    slugs = [v["press"] for v in variants({"presses": VARIANTS})]
    return [(a, t, s) for a in ARCHS for t in TASKS for s in slugs if not (t == "ppl" and s.endswith(("-qa", "-qp")))]


@functools.lru_cache(maxsize=None)
def own_cache(path: str, n: int) -> tuple[list[int], list[bool], int]:
    """(entries per layer, sliding per layer, bytes) of transformers' own cache after `n` tokens: the baseline."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=torch.randint(2, 500, (1, n)), past_key_values=cache)
    held = [layer.keys.shape[-2] for layer in cache.layers]
    nbytes = sum(layer.keys.numel() * 4 + layer.values.numel() * 4 for layer in cache.layers)
    return held, list(cache.is_sliding), nbytes


_results: dict = {}


def run(jobs, key):
    from kvstudy.evaluate import run_job

    if key not in _results:
        _results[key] = run_job(jobs[key], device="cpu")
    return _results[key]


def kind(job) -> str:
    return "perplexity" if job.task_kind == "perplexity" else "generate"


@pytest.mark.parametrize("arch, task, slug", _cases())
def test_press_runs_and_keeps_what_it_claims_or_is_refused(jobs, arch, task, slug):
    job = jobs[arch, task, slug]
    why = unsupported(job.method, job.params, AutoConfig.from_pretrained(job.model_path), kind(job))
    if why is not None:
        assert arch == "mistral" and "sliding window of 48 tokens" in why and job.method in why
        return
    r = run(jobs, (arch, task, slug))
    assert r["status"] == "ok" and r["quality"]["n"] == 1
    check_cache(r, job, own_cache(job.model_path, r["samples"][0].get("prefill_tokens", L)))


def check_cache(r, job, own):
    held, sliding, own_bytes = own
    e, s = r["efficiency"], r["samples"][0]
    spec = PRESSES[job.method]
    n, n_full = s.get("prefill_tokens", L), sliding.count(False)
    assert e["kv_bytes_full"] == own_bytes and e["kv_tokens_full"] == sum(held) / len(held)
    fp_bytes = own_bytes / sum(held)  # bytes per held entry (all layers, K and V)
    evicts = spec.has_ratio and spec.phase == "prefill" and not spec.masking
    # kvpress's budget per full layer and KV head, or the absolute one
    kept = min(job.params["cache_size"], n) if "cache_size" in job.params else int(n * (1 - R))
    want = [h if (slide or not evicts) else kept for h, slide in zip(held, sliding)]
    if job.method == "pyramidkv":  # budgets over the full layers, their mean within 1 of the uniform budget
        assert abs(e["kv_tokens_kept"] * len(held) - sum(want)) <= n_full
    else:
        assert e["kv_tokens_kept"] == sum(want) / len(want)
    quantized = spec.quantization or job.params.get("quantization")
    if quantized:
        assert e["kv_bytes"] < 0.75 * fp_bytes * e["kv_tokens_kept"] * len(held)
    else:
        assert e["kv_bytes"] == pytest.approx(fp_bytes * e["kv_tokens_kept"] * len(held))
    if spec.masking:
        assert e["kv_fraction_attended"] == pytest.approx(1 - masked(job, n, held, sliding) / sum(held))
        assert e["kv_fraction_attended"] < 1
    if spec.phase == "decoding":
        assert e["kv_tokens_final"] * len(held) == sum(decoded(job, s, n, h, slide) for h, slide in zip(held, sliding))


def masked(job, n, held, sliding) -> int:
    """Entries per KV head masked, summed over layers: AdaKV drops `n - kept` per full layer and head on average;
    DuoAttention's streaming heads (`ratio` of the full layers' heads) mask all but sink + recent."""
    n_full = sliding.count(False)
    if job.method == "adakv":
        return n_full * (n - int(n * (1 - R)))
    n_kv = kv_heads(AutoConfig.from_pretrained(job.model_path))
    return round(n_full * n_kv * R) * (n - DUO["sink_size"] - DUO["recent_size"]) / n_kv


def decoded(job, s, n, own_held, slide) -> int:
    """Entries one layer holds after the decoding steps: a sliding layer its window; a full layer, at each
    `compression_interval`-th step, is cut to int(tokens seen * (1 - ratio)) (or `target_size`), and grows by one
    entry per step after the last cut."""
    p = job.params
    interval = p.get("compression_interval", 1)
    if job.task_kind == "perplexity":  # one continuation token per step, the last one predicts nothing
        steps, first = s["scored_tokens"], 1  # step i has seen n + i tokens
    else:  # the question, then each generated token but the last
        steps, first = 1 + s["decode_tokens"], s["input_tokens"] - n
    seen_at = lambda step: n + first + step - 1  # noqa: E731
    if slide:
        return min(seen_at(steps), WINDOW - 1)
    last = steps // interval * interval
    if last == 0:
        return seen_at(steps)
    cut = p["target_size"] if "target_size" in p else int(seen_at(last) * (1 - R))
    return cut + steps - last


def test_decoding_press_evicts_at_interval_8_in_perplexity_too(jobs):
    """kvpress resets its step counter on leaving the press context: entered once per token, it never evicted."""
    r = run(jobs, ("llama", "ppl", "decoding-cr0.50-ci8-pknorm"))
    steps = r["samples"][0]["scored_tokens"]
    assert steps >= 16  # two evictions, then steps % 8 more tokens
    assert r["efficiency"]["kv_tokens_final"] == int((L + steps // 8 * 8) * (1 - R)) + steps % 8 < L


@pytest.mark.parametrize("slug", ["knorm-cr0.50", "adakv-cr0.50", "decoding-cr0.50-ci8-pknorm", "int4",
                                  "knorm-cr0.50+int4", "pyramidkv-cr0.50-ws16"])
@pytest.mark.parametrize("task", list(TASKS))
def test_a_refused_press_would_change_nothing(jobs, task, slug):
    """The refusal is true: on a model whose every layer is sliding-window, the press run anyway gives exactly
    the full cache's sizes and outputs."""
    job = jobs["mistral", task, slug]
    assert unsupported(job.method, job.params, AutoConfig.from_pretrained(job.model_path), kind(job))
    base, r = run(jobs, ("mistral", task, "no_press")), run(jobs, ("mistral", task, slug))
    for k in ("kv_tokens_kept", "kv_bytes", "kv_tokens_final", "kv_bytes_final"):
        assert r["efficiency"][k] == base["efficiency"][k]
    # a decoding press feeds perplexity's continuation token by token instead of in chunks: rounding differs
    assert r["quality"]["score"] == pytest.approx(base["quality"]["score"], rel=1e-5)
    assert [x["prediction"] for x in r["samples"]] == [x["prediction"] for x in base["samples"]]


@pytest.mark.parametrize("arch", ARCHS)
def test_no_other_variant_is_refused(paths, arch):
    from kvstudy.grid import variants

    config = AutoConfig.from_pretrained(paths[arch])
    refused = [v["press"] for v in variants({"presses": VARIANTS}) for k in ("generate", "perplexity")
               if unsupported(v["method"], v["params"], config, k)]
    assert refused == [] if arch != "mistral" else len(refused) == 2 * (len(VARIANTS) - 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_question_of_several_tokens_sees_the_compressed_cache_as_token_by_token(paths, arch):
    """Masks and positions after eviction are right in every kind of layer: feeding the question in one step
    equals feeding it one token at a time (on Gemma3 a cache that infers positions from what a full layer holds
    lets a question token see the later ones)."""
    from kvstudy.models import load_model
    from kvstudy.presses.variant import build_run

    model, _ = load_model(paths[arch], "float32", "sdpa", "cpu")
    ids, q = torch.randint(2, 500, (1, L)), torch.randint(2, 500, (1, 6))
    pos = torch.arange(L, L + 6)[None]
    logits = []
    for step in (6, 1):
        run = build_run("knorm", {}, R)
        cache = run.new_cache(model)
        with torch.no_grad():
            with run.prefill(model, cache):
                body(model)(input_ids=ids, past_key_values=cache)
            out = [model(input_ids=q[:, i:i + step], past_key_values=cache, position_ids=pos[:, i:i + step]).logits
                   for i in range(0, 6, step)]
        logits.append(torch.cat(out, 1))
    assert torch.allclose(logits[0], logits[1], atol=1e-4)


def test_sliding_window_cache_is_the_one_generate_keeps(paths, monkeypatch):
    """No press on Mistral (window 48) past its window: the eval loop (prefill, question, greedy decoding) keeps
    the cache `generate()` keeps, answers the same tokens, and counts the bytes of that cache."""
    from kvstudy.engine.stops import Stops
    from kvstudy.evaluate import run_sample
    from kvstudy.measure import Clock, full_cache_bytes
    from kvstudy.models import load_model
    from kvstudy.presses.variant import PressRun
    from kvstudy.tasks.base import Sample

    made = []
    new_cache = PressRun.new_cache
    monkeypatch.setattr(PressRun, "new_cache", lambda self, model: made.append(new_cache(self, model)) or made[-1])
    model, tok = load_model(paths["mistral"], "float32", "sdpa", "cpu")
    ctx, question = torch.randint(2, 500, (L,)).tolist(), torch.randint(2, 500, (5,)).tolist()
    ours = run_sample(model, tok, None, Sample("0", ctx, question, []), 12, Stops(), Clock(torch.device("cpu")))
    with torch.no_grad():
        gen = model.generate(torch.tensor([ctx + question]), max_new_tokens=12, min_new_tokens=12, do_sample=False,
                             return_dict_in_generate=True, pad_token_id=1)
    assert tok.decode(gen.sequences[0, L + 5:], skip_special_tokens=True).strip() == ours["prediction"]
    theirs, [cache] = gen.past_key_values, made
    assert all(layer.keys.shape[-2] == WINDOW - 1 for layer in theirs.layers)
    for a, b in zip(cache.layers, theirs.layers):
        assert torch.allclose(a.keys, b.keys, atol=1e-5) and torch.allclose(a.values, b.values, atol=1e-5)
    their_bytes = sum(x.numel() * x.element_size() for layer in theirs.layers for x in (layer.keys, layer.values))
    assert ours["kv_bytes"] == ours["kv_bytes_final"] == their_bytes == full_cache_bytes(model, L)
    assert ours["kv_tokens"] == ours["kv_tokens_final"] == WINDOW - 1


def _prefilled(path, method, params, ratio):
    from kvstudy.models import load_model
    from kvstudy.presses.variant import build_run

    model, _ = load_model(path, "float32", "sdpa", "cpu")
    run = build_run(method, params, ratio)
    cache = run.new_cache(model)
    with torch.no_grad(), run.prefill(model, cache):
        body(model)(input_ids=torch.randint(2, 500, (1, L)), past_key_values=cache)
    return cache


def test_quantization_on_a_mixed_model_quantizes_the_global_layers_and_keeps_the_windows(paths):
    from transformers.cache_utils import DynamicSlidingWindowLayer, QuantizedLayer

    cache = _prefilled(paths["gemma3"], "knorm", {"quantization": "int4"}, R)
    _, sliding, _ = own_cache(paths["gemma3"], L)
    for layer, slide in zip(cache.layers, sliding):
        if slide:  # the model's own window, in full precision
            assert type(layer) is DynamicSlidingWindowLayer and layer.keys.shape[-2] == WINDOW - 1
            assert layer.keys.dtype == torch.float32
        else:  # evicted, then quantized (kvpress re-quantizes what it kept)
            assert isinstance(layer, QuantizedLayer) and layer.cumulative_length == int(L * (1 - R))
            assert layer.keys.numel() == 0 and layer._quantized_keys is not None


def test_pyramidkv_spreads_its_budgets_over_the_global_layers(paths):
    cache = _prefilled(paths["gemma3"], "pyramidkv", {"window_size": 16}, R)
    _, sliding, _ = own_cache(paths["gemma3"], L)
    full = [layer.keys.shape[-2] for layer, slide in zip(cache.layers, sliding) if not slide]
    assert len(full) == 2 and full[0] > full[1] >= 16  # the pyramid narrows with depth
    assert abs(sum(full) / 2 - L * (1 - R)) <= 1  # and averages to the ratio's budget


def test_a_window_no_shorter_than_the_position_range_is_full_attention():
    """Phi-3.5-mini declares a 262144-token window at 131072 positions: it can never drop a token, so presses run
    on it; a 2047-token window (Phi-3-mini-4k) drops tokens and is left to the model."""
    from transformers import Phi3Config

    from kvstudy.presses.cache import layer_kinds

    never = Phi3Config(num_hidden_layers=2, sliding_window=262144, max_position_embeddings=131072)
    binds = Phi3Config(num_hidden_layers=2, sliding_window=2047, max_position_embeddings=4096)
    assert layer_kinds(never) == ["full", "full"] and unsupported("knorm", {}, never) is None
    assert layer_kinds(binds) == ["sliding", "sliding"] and "2047 tokens" in unsupported("knorm", {}, binds)
    assert unsupported("no_press", {}, binds) is None
    assert "'no_press'" in unsupported("no_press", {"quantization": "int4"}, binds)
