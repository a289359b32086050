"""GPT-NeoX (Pythia's architecture) under kvstudy's presses: the adapter gives kvpress what the model computes.

A random-weight GPT-NeoX (tests/archs.py: 2 layers, 4 heads of 16, RoPE over a quarter of each head) is laid out
unlike Llama (`model.gpt_neox.layers[i].attention`, fused per-head `query_key_value`, `dense`) and its layers call
attention with the hidden states positionally and the cache as `layer_past` (`kvstudy.presses.adapter`). Checked
here against the model's own computation: the projections and rotation the presses use, the attention weights
they recompute, the averaged rotation ExpectedAttention applies; then that a press really shrinks NeoX's cache, that
no press changes no logit, and that perplexity's scored tokens see the compression. Every press x task kind on it
is in tests/test_architectures.py; shared-prefill invariance in tests/test_engine.py.
"""

from __future__ import annotations

import pytest
import torch

from conftest import ROOT
from archs import ARCHS, config_for, make_model
from kvstudy.models import layout
from kvstudy.presses.adapter import attention_view, hook_kwargs

L = 160
TEXT = str(ROOT / "tests" / "data" / "tiny_text.txt")


@pytest.fixture(scope="module")
def neox(tmp_path_factory):
    from kvstudy.models import load_model

    path = make_model("gpt_neox", tmp_path_factory.mktemp("neox") / "gpt_neox")
    model, tok = load_model(path, "float32", "eager", "cpu")
    yield path, model, tok
    model.set_attn_implementation("sdpa")


def _layer0(model, ids):
    """(attention view, its forward's kwargs under kvpress's names, attention weights, cache) of layer 0."""
    from transformers import DynamicCache

    seen = {}

    def keep(module, args, kwargs, output):
        seen.update(kwargs=hook_kwargs(args, kwargs), weights=output[1])

    attn = layout.attention_modules(model)[0]
    hook = attn.register_forward_hook(keep, with_kwargs=True)
    cache = DynamicCache(config=model.config)
    try:
        with torch.no_grad():
            layout.body(model)(input_ids=ids, past_key_values=cache)
    finally:
        hook.remove()
    return attention_view(attn), seen["kwargs"], seen["weights"], cache


@pytest.mark.parametrize("arch", ARCHS)
def test_the_layout_finds_every_layers_attention_output_projection_and_rotary(arch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config_for(arch))
    n = model.config.get_text_config(decoder=True).num_hidden_layers
    assert len(layout.attention_modules(model)) == len(layout.layers(model)) == n
    assert all(isinstance(p, torch.nn.Linear) for p in layout.out_projs(model))
    assert layout.rotary(model) is not None
    assert layout.is_llama_like(model) == (arch != "gpt_neox")


def test_the_view_projects_and_rotates_as_the_model_does(neox):
    """Keys and values from the view's k/v projections, rotated by `apply_rope`, are the ones NeoX cached; the
    eager attention weights are the ones SnapKV/TOVA's window attention recomputes from the view's queries."""
    from kvpress.utils import get_prerope_key_states, get_prerope_query_states

    from kvstudy.presses.partial_rope import window_attention

    _, model, _ = neox
    view, kwargs, weights, cache = _layer0(model, torch.randint(2, 500, (1, L)))
    h, (cos, sin) = kwargs["hidden_states"], kwargs["position_embeddings"]
    assert kwargs["past_key_values"] is cache and cos.shape[-1] == view.head_dim // 4  # partial RoPE
    keys = layout.apply_rope(get_prerope_key_states(view, h), cos.unsqueeze(1), sin.unsqueeze(1))
    values = view.v_proj(h).view(1, L, -1, view.head_dim).transpose(1, 2)
    assert torch.allclose(keys, cache.layers[0].keys, atol=1e-5)
    assert torch.allclose(values, cache.layers[0].values, atol=1e-5)
    assert get_prerope_query_states(view, h).shape == (1, 4, L, 16)
    w = window_attention(view, h, cache.layers[0].keys, 16, (cos, sin))
    assert torch.allclose(w, weights[..., -16:, :-16], atol=1e-5)


def test_expected_attention_averages_the_models_own_rotation(neox):
    """ExpectedAttention's averaged rotation R, applied to a mean query, is the mean of that query rotated at each
    future position, with RoPE over the first quarter of each head and the rest passed through."""
    from kvstudy.presses.partial_rope import RopeExpectedAttentionPress

    _, model, _ = neox
    view = attention_view(layout.attention_modules(model)[0])
    view.rotary_emb = layout.rotary(model)  # what kvpress attaches when a press is entered
    press = RopeExpectedAttentionPress(n_future_positions=32, use_covariance=False)
    mu = torch.randn(1, 4, 16)
    got, _ = press.apply_avg_rope(view, mu, None, L)
    cos, sin = layout.rotary(model)(mu, torch.arange(L, L + 32)[None])
    want = layout.apply_rope(mu[:, :, None].expand(1, 4, 32, 16), cos[:, None], sin[:, None]).mean(2)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(got[..., 4:], mu[..., 4:])  # the unrotated dimensions are left as they are


@pytest.mark.parametrize("name", ["TOVAPress", "ExpectedAttentionPress"])
def test_on_whole_head_rope_the_rope_aware_presses_score_as_kvpress_bit_for_bit(tiny, name):
    """On Llama-like models nothing changes: the registered TOVA and ExpectedAttention give kvpress's scores."""
    import kvpress

    from kvstudy.presses import partial_rope

    model, _ = tiny
    model.set_attn_implementation("sdpa")
    view, kwargs, _, cache = _layer0(model, torch.randint(4, 60, (1, 200)))
    view.rotary_emb = layout.rotary(model)
    keys, values = cache.layers[0].keys, cache.layers[0].values
    ours, theirs = getattr(partial_rope, f"Rope{name}")(), getattr(kvpress, name)()
    args = (view, kwargs["hidden_states"], keys, values, None, kwargs)
    assert torch.equal(ours.score(*args), theirs.score(*args))


@pytest.mark.parametrize("method, params", [("knorm", {}), ("snapkv", {"window_size": 16}), ("tova", {}),
                                            ("expected_attention", {})])
def test_a_press_shrinks_neox_cache_to_what_it_scored(neox, method, params):
    from kvstudy.engine.prefill import OwnPrefill
    from kvstudy.measure import Clock
    from kvstudy.presses.variant import build_run

    _, model, _ = neox
    model.set_attn_implementation("sdpa")
    ids = torch.randint(2, 500, (L,)).tolist()
    prefill = OwnPrefill(model, ids, Clock(torch.device("cpu")))
    full, cache = prefill.full(), prefill.cache_for(build_run(method, params, 0.5))[0]
    for mine, whole in zip(cache.layers, full.layers):
        assert whole.keys.shape[-2] == L and mine.keys.shape[-2] == L // 2
        # what is kept are whole cached entries, in order: each kept key is one of the full cache's keys
        kept = (mine.keys[0, :, :, None] == whole.keys[0, :, None]).all(-1).any(-1)
        assert bool(kept.all())


def test_no_press_gives_the_plain_forwards_logits(neox):
    """The eval path without a press (prefill of the context into kvstudy's cache, then the question at positions
    continuing after it) gives the logits of one plain forward over context + question."""
    from kvstudy.engine.prefill import OwnPrefill
    from kvstudy.measure import Clock
    from kvstudy.presses.variant import build_run

    _, model, _ = neox
    model.set_attn_implementation("sdpa")
    ids, q = torch.randint(2, 500, (L,)).tolist(), torch.randint(2, 500, (1, 6))
    run = build_run("no_press", {}, None)
    cache = OwnPrefill(model, ids, Clock(torch.device("cpu"))).cache_for(run)[0]
    with torch.no_grad(), run.decoding(model, cache):
        got = model(input_ids=q, past_key_values=cache, position_ids=torch.arange(L, L + 6)[None]).logits
        want = model(input_ids=torch.cat([torch.tensor([ids]), q], 1)).logits[:, -6:]
    assert torch.allclose(got, want, atol=1e-5)


def _ppl(path, method, ratio):
    from kvstudy.perplexity import run_perplexity_job

    press = method if method == "no_press" else f"{method}-cr{ratio:.2f}"
    return run_perplexity_job({
        "model": "gpt_neox", "model_path": path, "dtype": "float32", "attn_implementation": "sdpa",
        "task": "ppl", "task_kind": "perplexity", "length": L, "seed": 0, "press": press, "method": method,
        "params": {}, "compression_ratio": ratio,
        "task_params": {"source": TEXT, "n_samples": 2, "continuation_tokens": 32, "chunk_size": 8}}, device="cpu")


def test_perplexity_on_neox_sees_the_compression(neox):
    """The scored continuation attends to the compressed cache: KNorm at 0.5 changes NeoX's perplexity and its
    distributions (the original study's every press scored identically: compression never reached them)."""
    path = neox[0]
    base, knorm = _ppl(path, "no_press", None), _ppl(path, "knorm", 0.5)
    assert base["status"] == knorm["status"] == "ok"
    assert base["fidelity"]["kl"] == 0.0 and knorm["fidelity"]["kl"] > 0
    assert knorm["quality"]["score"] != base["quality"]["score"]
    assert knorm["quality"]["scored_tokens"] == base["quality"]["scored_tokens"] == 2 * 31
    assert knorm["efficiency"]["kv_tokens_kept"] == L // 2 < base["efficiency"]["kv_tokens_kept"] == L


def test_attention_output_error_reads_neoxs_dense_input(neox):
    """The attention-output error captures the input of each layer's `dense` (NeoX's output projection): zero
    without a press, above zero under one."""
    from kvstudy.attn_error import layer_errors
    from kvstudy.presses.variant import build_run
    from kvstudy.tasks.base import Sample

    _, model, _ = neox
    model.set_attn_implementation("sdpa")
    s = Sample("0", torch.randint(2, 500, (L,)).tolist(), torch.randint(2, 500, (5,)).tolist(), [])
    assert layer_errors(model, build_run("no_press", {}, None), s) == [0.0, 0.0]
    assert all(e > 0 for e in layer_errors(model, build_run("knorm", {}, 0.5), s))
