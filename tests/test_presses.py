"""Every registered press changes the cache of the shipped model the way it claims, changes what it answers at a
high ratio, and equals the full cache exactly at ratio 0.

Tolerances: evicting presses are exact (kvpress keeps `int(q_len * (1 - ratio))` entries per layer and head);
PyramidKV's per-layer budgets are rounded, so their mean is within 1 token of the uniform budget; quantized
bytes are exact (packed data + scales + shifts, the format's own arithmetic); masking presses keep every entry
and mask exactly the number of entries kvpress computes.
"""

import numpy as np
import pytest
import torch

from conftest import TINY
from kvstudy.engine.stops import Stops
from kvstudy.evaluate import run_sample
from kvstudy.measure import Clock, cache_size, full_cache_bytes, masked_fraction
from kvstudy.presses import PRESSES, get_press
from kvstudy.presses.variant import PressRun, attention_for, build_run
from kvstudy.tasks import get_task

LENGTH = 512
RATIO_PRESSES = [name for name, spec in PRESSES.items() if spec.has_ratio]
# prefill presses that evict the same number of tokens in every layer and head
UNIFORM = [n for n in RATIO_PRESSES if PRESSES[n].phase == "prefill" and not PRESSES[n].masking and n != "pyramidkv"]
# small DuoAttention windows so that streaming heads mask something at 512 tokens
PARAMS = {"duo_attention": {"sink_size": 16, "recent_size": 64}}


@pytest.fixture(scope="module")
def models(tiny):
    """Model per attention implementation: the SDPA one is the session's `tiny`, eager is loaded once here."""
    from kvstudy.models import load_model

    loaded = {"sdpa": tiny}

    def get(method, params=None):
        attn = attention_for(method, params or {}) or "sdpa"
        if attn not in loaded:
            loaded[attn] = load_model(TINY, "float32", attn, "cpu")
        return loaded[attn][0]

    return get


@pytest.fixture(scope="module")
def samples(tiny):
    _, tok = tiny
    # 64 pairs = 128 informative tokens: more than a 0.9 press keeps of 512, so every press must lose some
    return get_task("kv_retrieval", {"n_samples": 8, "n_pairs": 64}).samples(tok, LENGTH, seed=0)


def run_of(name, ratio, **options):
    return build_run(name, {**PARAMS.get(name, {}), **options}, ratio)


def prefill(model, run, ids):
    run = run if isinstance(run, PressRun) else PressRun(run)
    cache = run.new_cache(model)
    with torch.no_grad(), run.prefill(model):
        model.model(input_ids=torch.tensor([ids]), past_key_values=cache)
    return cache


@torch.no_grad()
def trace(model, run, sample, follow_ups=()):
    """Logits of the answer to the question and then to each follow-up question (fed after the previous greedy
    answer, positions continuing), under the run's protocol (prefill press, query-aware prefix, decoding press),
    as `evaluate.run_sample` does. Follow-ups are decoding steps: they see what decoding-time eviction left."""
    from kvstudy.evaluate import ask

    run = run if isinstance(run, PressRun) else PressRun(run)
    prefix = sample.context_ids + (sample.question_ids if run.query_aware else [])
    cache = prefill(model, run, prefix)
    n, out = len(prefix), []
    with run.decoding(model):
        for q in [sample.question_ids, *follow_ups]:
            q = torch.tensor([q])
            pos = torch.arange(n, n + q.shape[1]).unsqueeze(0)
            logits = ask(model, q, cache, pos).logits[0, -1]
            out.append(logits)
            model(input_ids=logits.argmax().view(1, 1), past_key_values=cache, position_ids=pos[:, -1:] + 1)
            n += q.shape[1] + 1
    return torch.stack(out)


def follow_ups(tokenizer, sample, n=4):
    """Questions about other keys of the sample's context, spread over it (not its first keys: the earliest tokens
    are seen by the most queries, so accumulated attention, `h2o`, keeps them whatever the ratio)."""
    keys = [i for i in dict.fromkeys(sample.context_ids) if tokenizer.convert_ids_to_tokens(i).startswith("k")]
    keys = [k for k in keys if k != sample.question_ids[-1]]
    return [sample.question_ids[:-1] + [k] for k in keys[:: max(1, len(keys) // n)][:n]]


def test_every_press_of_the_seed_studies_is_registered():
    assert {"no_press", "knorm", "streaming_llm", "snapkv", "tova", "expected_attention", "random", "pyramidkv",
            "observed_attention", "keydiff", "adakv", "duo_attention", "decoding", "decoding_budget", "cab",
            "int8", "int4"} <= set(PRESSES)


@pytest.mark.parametrize("name", UNIFORM)
@pytest.mark.parametrize("ratio", [0.25, 0.75])
def test_press_shrinks_the_real_cache_to_one_minus_ratio(models, samples, name, ratio):
    model = models(name)
    cache = prefill(model, run_of(name, ratio), samples[0].context_ids)
    kept = int(LENGTH * (1 - ratio))  # kvpress keeps int(q_len * (1 - ratio)) tokens per layer
    for layer in cache.layers:
        assert layer.keys.shape[-2] == kept and layer.values.shape[-2] == kept
    tokens, nbytes = cache_size(cache)
    assert tokens == kept
    assert nbytes == full_cache_bytes(model, kept)


def test_pyramidkv_budgets_shrink_with_depth_and_average_to_the_ratio(models, samples):
    model = models("pyramidkv")
    cache = prefill(model, run_of("pyramidkv", 0.5), samples[0].context_ids)
    lengths = [layer.keys.shape[-2] for layer in cache.layers]
    # 2 layers: the pyramid is its two ends, layer 0 keeps nearly all, layer 1 little more than its 64-token window
    assert lengths[0] > lengths[1] >= 64
    assert abs(sum(lengths) / len(lengths) - LENGTH * 0.5) <= 1
    assert cache_size(cache)[1] == sum(full_cache_bytes(model, n) for n in lengths) // len(lengths)


@pytest.mark.parametrize("name", ["adakv", "duo_attention"])
def test_masking_presses_keep_every_entry_and_report_what_they_mask(models, samples, name):
    model = models(name)
    run = run_of(name, 0.5)
    cache = prefill(model, run, samples[0].context_ids)
    tokens, nbytes = cache_size(cache)
    assert tokens == LENGTH and nbytes == full_cache_bytes(model, LENGTH)  # frees nothing
    masked = masked_fraction(model, cache)
    if name == "adakv":  # kvpress masks kv_heads * (k_len - n_kept) entries per layer
        assert masked == pytest.approx((LENGTH - int(LENGTH * 0.5)) / LENGTH)
    else:  # half of the 2 x 2 KV heads stream: they mask everything but 16 sink + 64 recent tokens
        assert masked == pytest.approx(0.5 * (LENGTH - 16 - 64) / LENGTH)


def test_decoding_press_evicts_while_generating_to_one_minus_ratio_of_tokens_seen(models, samples, tiny):
    model = models("decoding")
    run = run_of("decoding", 0.5)
    r = run_sample(model, tiny[1], run, samples[0], 6, Stops(), Clock(torch.device("cpu")))
    assert r["kv_tokens"] == LENGTH  # prefill keeps everything
    seen = LENGTH + len(samples[0].question_ids) + r["decode_tokens"]  # the last token is not in the cache yet
    assert r["kv_tokens_final"] == int(seen * 0.5)
    assert r["kv_bytes_final"] == full_cache_bytes(model, int(seen * 0.5))


def test_decoding_budget_evicts_to_a_fixed_size_and_changes_later_answers(models, samples, tiny):
    run = build_run("decoding_budget", {"press": "knorm", "target_size": 64}, None)
    model = models("decoding_budget", {"press": "knorm"})
    r = run_sample(model, tiny[1], run, samples[0], 4, Stops(), Clock(torch.device("cpu")))
    assert r["kv_tokens"] == LENGTH and r["kv_tokens_final"] == 64
    assert r["kv_bytes_final"] == full_cache_bytes(model, 64)
    more = {s.id: follow_ups(tiny[1], s) for s in samples}
    base = [trace(model, None, s, more[s.id]).argmax(-1).tolist() for s in samples]
    pressed = [trace(model, run, s, more[s.id]).argmax(-1).tolist() for s in samples]
    assert base != pressed


@pytest.mark.parametrize("kind, bits", [("int8", 8), ("int4", 4)])
def test_quantized_cache_bytes_are_packed_data_plus_scales(models, samples, kind, bits):
    model = models(kind)
    cache = prefill(model, build_run(kind, {}, None), samples[0].context_ids)
    tokens, nbytes = cache_size(cache)
    elements = 2 * 2 * 2 * LENGTH * 32  # K,V x layers x KV heads x tokens x head_dim
    # int8: one fp32 scale per (head, token); int4: fp32 scale and shift per group of 64 values
    scales = elements // 32 * 4 if bits == 8 else elements // 64 * 8
    assert tokens == LENGTH and nbytes == elements * bits // 8 + scales
    assert nbytes < full_cache_bytes(model, LENGTH) / (3 if bits == 8 else 6)


def test_quantization_composes_with_eviction_and_counts_the_residual(models, samples, tiny):
    model = models("knorm")
    run = run_of("knorm", 0.5, quantization="int4")
    cache = prefill(model, run, samples[0].context_ids)
    tokens, nbytes = cache_size(cache)
    kept = int(LENGTH * 0.5)
    assert tokens == kept and nbytes == 2 * 2 * 2 * kept * 32 // 2 + 2 * 2 * 2 * kept * 32 // 64 * 8
    # decoding appends full-precision tokens to the residual; their bytes are counted
    r = run_sample(model, tiny[1], run, samples[0], 3, Stops(), Clock(torch.device("cpu")))
    residual = r["kv_tokens_final"] - kept
    assert residual == 2 + 2 and r["kv_bytes_final"] == nbytes + full_cache_bytes(model, residual)


def test_quantization_changes_logits_and_int8_is_closer_than_int4(models, samples):
    model = models("no_press")
    base = trace(model, None, samples[0])
    err = {k: (trace(model, build_run(k, {}, None), samples[0]) - base).abs().max().item() for k in ("int8", "int4")}
    assert 0 < err["int8"] < err["int4"]


def test_no_press_cache_is_the_full_cache(models, samples):
    model = models("no_press")
    tokens, nbytes = cache_size(prefill(model, None, samples[0].context_ids))
    assert tokens == LENGTH and nbytes == full_cache_bytes(model, LENGTH)


@pytest.mark.parametrize("name", RATIO_PRESSES)
@pytest.mark.parametrize("query_aware", [False, True])
def test_ratio_zero_equals_no_press_exactly(models, samples, tiny, name, query_aware):
    model, more = models(name), follow_ups(tiny[1], samples[0])
    base = trace(model, PressRun(None, query_aware=query_aware), samples[0], more)
    same = trace(model, run_of(name, 0.0, query_aware=query_aware), samples[0], more)
    assert torch.equal(base, same)


@pytest.mark.parametrize("name", RATIO_PRESSES)
def test_high_ratio_changes_answers(models, samples, tiny, name):
    model = models(name)
    run = run_of(name, 0.9)
    # decoding-time eviction never touches the first answer: follow-up questions see what it evicted
    more = {s.id: follow_ups(tiny[1], s) for s in samples} if PRESSES[name].phase == "decoding" else {}
    base = [trace(model, None, s, more.get(s.id, ())).argmax(-1).tolist() for s in samples]
    pressed = [trace(model, run, s, more.get(s.id, ())).argmax(-1).tolist() for s in samples]
    assert base != pressed, f"{name} at ratio 0.9 answered exactly like the full cache on {len(samples)} samples"


def test_query_aware_press_sees_the_question(models, samples):
    model = models("snapkv")
    s = samples[0]
    agnostic = prefill(model, run_of("snapkv", 0.9), s.context_ids)
    aware = prefill(model, run_of("snapkv", 0.9, query_aware=True), s.context_ids + s.question_ids)
    assert cache_size(aware)[0] == int((LENGTH + len(s.question_ids)) * 0.1)
    assert not torch.equal(agnostic.layers[1].keys[..., :40, :], aware.layers[1].keys[..., :40, :])


def test_observed_attention_runs_only_with_eager_attention(tiny, samples):
    assert get_press("observed_attention").attention({}) == "eager"
    assert attention_for("decoding", {"press": "observed_attention"}) == "eager"
    assert attention_for("decoding", {"press": "knorm"}) is None
    with pytest.raises(AssertionError, match="eager"):  # never a silent fallback on SDPA
        prefill(tiny[0], run_of("observed_attention", 0.5), samples[0].context_ids)


def test_cab_keeps_local_window_heavy_hitters_and_their_bridges():
    from kvstudy.presses.cab_press import CABPress

    k_len, heavy = 20, [5, 12]
    attn = torch.full((1, 1, k_len, k_len), 1e-3).tril()
    attn[..., heavy] = torch.tril(torch.ones(k_len, k_len))[:, heavy]  # every later query looks at 5 and 12
    keys = torch.randn(1, 1, k_len, 4)
    press = CABPress(compression_ratio=0.5)  # 10 kept: 3 local, 2 bridges, 5 heavy hitters
    scores = press.score(None, None, keys, keys, attn, {})
    kept = set(scores[0, 0].topk(10).indices.tolist())
    assert {17, 18, 19} <= kept  # local window
    assert set(heavy) <= kept  # the two heavy hitters
    assert {4, 11} <= kept  # their bridges: the token before each
    assert len(kept) == 10


def test_cab_split_is_configurable():
    from kvstudy.presses.cab_press import select

    imp = torch.rand(1, 1, 100)
    all_local = select(imp, 40, 1.0, 0.0)[0, 0].topk(40).indices
    assert set(all_local.tolist()) == set(range(60, 100))
    no_bridge = set(select(imp, 40, 0.0, 0.0)[0, 0].topk(40).indices.tolist())
    assert no_bridge == set(imp[0, 0].topk(40).indices.tolist())  # pure cumulative attention


def test_duo_patterns_from_a_local_file_or_computed(models, tmp_path, monkeypatch):
    import kvpress.presses.duo_attention_press as kvduo

    from kvstudy.presses.duo_press import LocalDuoAttentionPress, _on_the_fly, load_patterns

    def offline(*a, **k):
        raise AssertionError("DuoAttention tried to download")

    monkeypatch.setattr(kvduo.requests, "get", offline)
    monkeypatch.setattr(kvduo, "load_dataset", offline)
    model = models("duo_attention")
    computed = _on_the_fly(model, 2, 128)
    assert computed.shape == (2, 2) and ((computed >= 0) & (computed <= 1)).all()
    f = tmp_path / "full_attention_heads.tsv"
    np.savetxt(f, np.array([[0.9, 0.1], [0.2, 0.8]]), delimiter="\t")
    press = LocalDuoAttentionPress(head_compression_ratio=0.5, patterns=str(f))
    press.post_init_from_model(model)
    assert press.streaming_mask.tolist() == [[False, True], [True, False]]  # the two lowest scores stream
    with pytest.raises(ValueError, match="holds 2x2 head scores, the model has 3 layers"):
        load_patterns(f, 3, 2)


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="no parameter 'window'"):
        get_press("snapkv").build({"compression_ratio": 0.5, "window": 3})


def test_wrappers_refuse_what_they_cannot_wrap():
    with pytest.raises(ValueError, match="cannot wrap 'observed_attention'"):
        get_press("adakv").build({"compression_ratio": 0.5, "press": "observed_attention"})
    with pytest.raises(ValueError, match="unknown press 'nope'"):
        get_press("decoding").build({"compression_ratio": 0.5, "press": "nope"})
    with pytest.raises(ValueError, match="not supported with decoding"):
        build_run("decoding", {"quantization": "int4"}, 0.5)


def test_cli_lists_every_press_with_parameters(capsys):
    from kvstudy.cli import main

    main(["presses"])
    out = capsys.readouterr().out
    for name in PRESSES:
        assert f"\n{name} " in "\n" + out
    assert "alpha_safeguard=0.2" in out and "query_aware=False" in out and "[attention: eager]" in out



def test_cab_recomputed_attention_equals_the_observed_one(models, samples):
    """Under SDPA (no weights returned) CAB recomputes the attention; it must match eager attention's weights."""
    from transformers import DynamicCache

    from kvstudy.presses.cab_press import mean_received_attention

    model = models("observed_attention")  # eager
    seen = {}

    def hook(module, args, kwargs, output):
        cache = kwargs["past_key_values"]
        keys = cache.layers[module.layer_idx].keys
        seen[module.layer_idx] = (
            mean_received_attention(module, kwargs["hidden_states"], keys, output[1], kwargs),
            mean_received_attention(module, kwargs["hidden_states"], keys, None, kwargs),
        )

    hooks = [layer.self_attn.register_forward_hook(hook, with_kwargs=True) for layer in model.model.layers]
    try:
        with torch.no_grad():
            model.model(input_ids=torch.tensor([samples[0].context_ids[:300]]), past_key_values=DynamicCache())
    finally:
        for h in hooks:
            h.remove()
    for observed, recomputed in seen.values():
        assert torch.allclose(observed, recomputed, rtol=1e-4, atol=1e-6)


@torch.no_grad()
def test_masked_keys_are_ignored_exactly_by_a_question_of_several_tokens(tiny, samples):
    """Masking presses mask (head, key) entries in attention: a multi-token question against a cache whose
    positions S are masked in every head equals the same question against the cache without S (kvpress's fake
    keys cannot exist for such steps and raised)."""
    from kvstudy.evaluate import ask
    from kvstudy.presses import masking

    masking.install()
    model = tiny[0]
    ctx, q = samples[0].context_ids, torch.tensor([samples[0].question_ids])
    pos = torch.arange(LENGTH, LENGTH + q.shape[1])[None]
    dropped = torch.arange(10, 400, 3)
    keep = torch.ones(LENGTH, dtype=torch.bool)
    keep[dropped] = False

    masked_cache = prefill(model, None, ctx)
    n_kv = masked_cache.layers[0].keys.shape[1]
    idx = (torch.zeros(n_kv * len(dropped), dtype=torch.long), torch.arange(n_kv).repeat_interleave(len(dropped)),
           dropped.repeat(n_kv))
    for layer in model.model.layers:
        layer.self_attn.masked_key_indices = idx
    try:
        masked = ask(model, q, masked_cache, pos).logits
    finally:
        for layer in model.model.layers:
            layer.self_attn.masked_key_indices = None
    cut = prefill(model, None, ctx)
    for layer in cut.layers:
        layer.keys, layer.values = layer.keys[:, :, keep], layer.values[:, :, keep]
    assert torch.allclose(masked, ask(model, q, cut, pos).logits, atol=1e-5)
    assert not torch.allclose(masked, ask(model, q, prefill(model, None, ctx), pos).logits, atol=1e-3)


@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_head_mask_combines_the_models_mask_with_the_masked_entries(mask_kind):
    """SDPA's boolean mask, eager-style additive masks and no mask at all (flash attention, SDPA's is_causal) give
    the same masked attention: causal over the step's tokens, masked entries ignored per KV head group."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from kvstudy.presses.masking import head_mask

    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8)
    idx = (torch.tensor([0, 0, 0]), torch.tensor([0, 0, 1]), torch.tensor([1, 5, 2]))
    causal = torch.ones(3, 10, dtype=torch.bool).tril(7)[None, None]
    additive = torch.zeros(1, 1, 3, 10).masked_fill(~causal, torch.finfo(torch.float32).min)
    model_mask = {"bool": causal, "float": additive, "none": None}[mask_kind]
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 2, True
    out, _ = sdpa_attention_forward(module, q, k, v, head_mask(model_mask, idx, 4, 3, k))
    # reference: explicit softmax with -inf where a query may not look
    allowed = causal.expand(1, 4, 3, 10).clone()
    allowed[0, 0:2, :, 1] = allowed[0, 0:2, :, 5] = allowed[0, 2:4, :, 2] = False
    w = (q @ k.repeat_interleave(2, 1).transpose(2, 3) / 8**0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
    assert torch.allclose(out.transpose(1, 2), w @ v.repeat_interleave(2, 1), atol=1e-6)
    if mask_kind == "none":  # flash attention takes no per-head mask: its masked steps run this same SDPA call
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        from kvstudy.presses import masking

        masking.install()
        module.masked_key_indices = idx
        flash, _ = ALL_ATTENTION_FUNCTIONS["flash_attention_2"](module, q, k, v, None, scaling=8**-0.5)
        assert torch.allclose(flash, out, atol=1e-6)


def test_decoding_with_snapkv_needs_more_buffered_queries_than_its_window(tiny, samples):
    """kvpress hands SnapKV the hidden states buffered since the last eviction and asserts they outnumber its
    64-query window: with fewer the job would fail mid-way, so the config is refused; above it SnapKV evicts."""
    from kvpress import CompressionRatioDecodingPress, SnapKVPress

    with pytest.raises(ValueError, match="compression_interval: press 'snapkv' .* above 64"):
        build_run("decoding", {"press": "snapkv", "compression_interval": 8}, 0.5)
    clock, s = Clock(torch.device("cpu")), samples[0]
    short = PressRun(CompressionRatioDecodingPress(SnapKVPress(), compression_interval=8,
                                                   hidden_states_buffer_size=8, target_compression_ratio=0.5),
                     phase="decoding")
    with pytest.raises(AssertionError, match="window size 64"):
        run_sample(tiny[0], tiny[1], short, s, 12, Stops(), clock)
    run = build_run("decoding", {"press": "snapkv", "compression_interval": 65, "hidden_states_buffer_size": 65}, 0.5)
    r = run_sample(tiny[0], tiny[1], run, s, 70, Stops(), clock)
    seen_at_eviction = LENGTH + len(s.question_ids) + 64  # the 65th step: question, then 64 generated tokens
    assert r["kv_tokens_final"] == int(seen_at_eviction * 0.5) + r["decode_tokens"] - 64
