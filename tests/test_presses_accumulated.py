"""`h2o` and `cab_accumulated` (issue 21 point 2): eviction while generating by attention accumulated over every
query so far, against the newest-token scoring of `decoding` (kvpress's decoding press).

Two kinds of evidence:
- a crafted cache and attention sequence fed to the presses' hooks (the weights an eager layer would return), where
  token 2 receives heavy attention from every prefill query and none afterwards: accumulated scoring keeps it,
  newest-token scoring evicts it; the recent window is kept whatever its scores;
- random-weight models (tests/archs.py: Llama, and Qwen3 with 8 query / 2 KV heads and QK norm): the accumulated
  scores equal the column sums of the model's own eager attention matrix over every prefill and decoding query
  (under SDPA the presses recompute it), and the model's cache really shrinks to the budget, holding the model's
  own keys of the positions the press says it kept.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import DynamicCache

from kvstudy.presses.variant import build_run

D = 4  # head_dim of the crafted layer
N = 16  # crafted prefill tokens
HEAVY = 2  # the token every prefill query looks at, and no decoding query
R = 0.5


def _kv(pos: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values that name their token: channel 0 holds its position."""
    k = torch.zeros(1, 1, len(pos), D)
    k[..., 0] = torch.tensor(pos, dtype=torch.float)
    return k, k.clone()


def _prefill_attention() -> torch.Tensor:
    """(1, 1, N, N) causal weights: every query from HEAVY on gives it 0.9, the rest evenly to the others it sees."""
    a = torch.zeros(N, N)
    for q in range(N):
        others = [j for j in range(q + 1) if j != HEAVY]
        if q >= HEAVY:
            a[q, HEAVY] = 0.9
        a[q, others] = (1 - a[q, HEAVY]) / len(others)
    return a[None, None]


def _decode_row(held: torch.Tensor) -> torch.Tensor:
    """The newest query's weights over the held tokens (by identity): none to HEAVY nor its successor (so that
    CAB cannot keep HEAVY as a bridge) nor to generated tokens, the other context tokens decreasing with position."""
    w = 1.0 / (1.0 + held)
    w[(held == HEAVY) | (held == HEAVY + 1) | (held >= N)] = 0
    return (w / w.sum())[None, None, None, :]


def _feed(press, steps: int) -> tuple[DynamicCache, list[list[int]]]:
    """Prefill N crafted tokens, then `steps` decoding steps, through the press's forward hook; returns the cache
    and the positions held after each step."""
    module, cache = SimpleNamespace(layer_idx=0, head_dim=D), DynamicCache()
    cache.update(*_kv(list(range(N))), 0)
    kwargs = {"hidden_states": torch.zeros(1, N, 8), "past_key_values": cache, "cache_position": torch.arange(N),
              "position_ids": torch.arange(N)[None]}
    press.forward_hook(module, (), kwargs, (None, _prefill_attention()))
    held = []
    for t in range(steps):
        p = N + t
        cache.update(*_kv([p]), 0)
        k_len = cache.layers[0].keys.shape[2]
        kwargs = {"hidden_states": torch.zeros(1, 1, 8), "past_key_values": cache,
                  "cache_position": torch.tensor([k_len - 1]), "position_ids": torch.tensor([[p]])}
        press.forward_hook(module, (), kwargs, (None, _decode_row(cache.layers[0].keys[0, 0, :, 0])))
        held.append(cache.layers[0].keys[0, 0, :, 0].long().tolist())
    return cache, held


@pytest.mark.parametrize("accumulated, newest", [
    (("h2o", {}), ("decoding", {"press": "observed_attention"})),
    (("cab_accumulated", {}), ("decoding", {"press": "cab"})),
])
def test_a_token_heavy_early_is_kept_by_accumulated_scores_and_evicted_by_the_newest_token(accumulated, newest):
    steps = 6
    _, acc = _feed(build_run(*accumulated, R).press, steps)
    _, new = _feed(build_run(*newest, R).press, steps)
    for t, (a, b) in enumerate(zip(acc, new)):
        budget = int((N + t + 1) * (1 - R))  # tokens seen after step t, kvpress's decoding budget
        assert len(a) == len(b) == budget and a == sorted(a)  # the cache stays in token order
        assert HEAVY in a, f"{accumulated[0]} evicted the heavy hitter at step {t}"
    assert HEAVY not in new[0], f"{newest} kept token {HEAVY}: the crafted sequence does not tell them apart"


def test_h2o_scores_are_the_column_sums_and_leave_with_their_tokens():
    press = build_run("h2o", {}, R).press
    _, held = _feed(press, 3)
    state = press.state[0]
    assert state.positions[0, 0].tolist() == held[-1]  # the scores follow the cache entries they belong to
    # HEAVY: 0.9 from each prefill query that sees it, nothing since; token 0: its prefill column, then its share
    # of each decoding row (recomputed here from the crafted rows over what each step held)
    assert state.scores[0, 0, held[-1].index(HEAVY)] == pytest.approx(0.9 * (N - HEAVY))
    col0 = float(_prefill_attention()[0, 0, :, 0].sum())
    before = [list(range(N + 1))] + held[:-1]  # what each step attended: the previous cache and its new token
    dec0 = sum(float(_decode_row(torch.tensor(h + [N + t] if t else h, dtype=torch.float))[0, 0, 0, 0])
               for t, h in enumerate(before))
    assert state.scores[0, 0, 0] == pytest.approx(col0 + dec0)
    assert state.seen[0, 0, 0] == N + 3  # seen by every query so far


@pytest.mark.parametrize("recent_ratio", [0.2, 0.5])
def test_h2o_always_keeps_its_recent_window(recent_ratio):
    """Generated tokens get no attention here; H2O keeps the last round(recent_ratio * budget) anyway, and
    without a window (recent_ratio 0) it does not."""
    steps = 8
    _, held = _feed(build_run("h2o", {"recent_ratio": recent_ratio}, R).press, steps)
    _, bare = _feed(build_run("h2o", {"recent_ratio": 0.0}, R).press, steps)
    missed = 0
    for t, (h, b) in enumerate(zip(held, bare)):
        seen = N + t + 1
        n_recent = round(recent_ratio * int(seen * (1 - R)))
        recent = list(range(seen - n_recent, seen))
        assert h[-n_recent:] == recent
        missed += b[-n_recent:] != recent
    assert missed >= steps // 2


def test_cab_bridges_only_a_token_s_own_predecessor():
    """After an eviction the entry before a heavy hitter may be a token far before it: not a bridge."""
    from kvstudy.presses.cab_press import select

    # 4 kept: 1 local (entry 7), 2 heavy hitters (entries 2, 4), 1 bridge: the first heavy hitter's first
    imp = torch.tensor([[[0.1, 0.0, 0.9, 0.0, 0.3, 0.0, 0.0, 0.0]]])
    adjacent = torch.ones_like(imp, dtype=torch.bool)
    kept = set(select(imp, 4, 0.25, 0.25, adjacent)[0, 0].topk(4).indices.tolist())
    assert kept == {1, 2, 4, 7}
    adjacent[0, 0, 2] = False  # entry 1 is not token 2's predecessor (evicted earlier)
    kept = set(select(imp, 4, 0.25, 0.25, adjacent)[0, 0].topk(4).indices.tolist())
    assert kept == {2, 3, 4, 7}  # the bridge goes to the next heavy hitter's predecessor


def test_a_press_that_missed_the_prefill_says_so():
    press = build_run("h2o", {}, R).press
    module, cache = SimpleNamespace(layer_idx=0, head_dim=D), DynamicCache()
    cache.update(*_kv(list(range(N + 1))), 0)
    kwargs = {"hidden_states": torch.zeros(1, 1, 8), "past_key_values": cache, "cache_position": torch.tensor([N]),
              "position_ids": torch.tensor([[N]])}
    with pytest.raises(RuntimeError, match="H2OPress: layer 0 holds 17 entries.*prefill too"):
        press.forward_hook(module, (), kwargs, (None, torch.full((1, 1, 1, N + 1), 1 / (N + 1))))


def test_bad_parameters_and_combinations_are_refused_in_one_line():
    from kvstudy.presses import get_press

    with pytest.raises(ValueError, match="^recent_ratio: must be between 0 and 1$"):
        get_press("h2o").check({"recent_ratio": 1.5})
    with pytest.raises(ValueError, match="^bridge_fraction:"):
        get_press("cab_accumulated").check({"local_fraction": 0.8, "bridge_fraction": 0.4})
    with pytest.raises(ValueError, match="quantization: not supported with decoding-time eviction \\('h2o'\\)"):
        build_run("h2o", {"quantization": "int8"}, R)
    with pytest.raises(ValueError, match="needs a scorer press, not 'h2o'"):
        build_run("decoding", {"press": "h2o"}, R)


# --- random-weight models ------------------------------------------------------------------------------------------

L = 48  # context tokens of the model tests
ARCHS = ("llama", "qwen3")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    from archs import make_model

    root = tmp_path_factory.mktemp("accumulated")
    return {a: make_model(a, root / a) for a in ARCHS}


def _run(model, run, ids: torch.Tensor, steps: int):
    """Prefill ids[:L] under the run, then feed ids[L:L + steps] one token per step (teacher-forced)."""
    cache = run.new_cache(model)
    with torch.no_grad():
        with run.prefill(model, cache):
            model.model(input_ids=ids[:, :L], past_key_values=cache)
        with run.decoding(model, cache):
            for p in range(L, L + steps):
                model(input_ids=ids[:, p:p + 1], past_key_values=cache, position_ids=torch.tensor([[p]]))
    return cache


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_accumulated_scores_are_the_model_s_own_attention_summed_over_every_query(paths, arch, attention):
    """No eviction yet (interval past the steps): per layer and KV head, the score of each token is the sum of the
    attention it got from every prefill and decoding query, averaged over the KV group's query heads, as the
    model's eager attention matrix over the whole sequence gives it."""
    from kvstudy.models import load_model

    steps = 5
    model, _ = load_model(paths[arch], "float32", attention, "cpu")
    ids = torch.randint(2, 500, (1, L + steps), generator=torch.Generator().manual_seed(0))
    run = build_run("h2o", {"compression_interval": 100}, R)
    _run(model, run, ids, steps)
    ref_model, _ = load_model(paths[arch], "float32", "eager", "cpu")
    with torch.no_grad():
        attn = ref_model(input_ids=ids, output_attentions=True).attentions
    n_kv = model.config.num_key_value_heads
    for layer, a in enumerate(attn):
        want = a.sum(2).view(1, n_kv, -1, L + steps).mean(2)  # column sums, KV group mean
        state = run.press.state[layer]
        torch.testing.assert_close(state.scores, want, atol=1e-4, rtol=1e-4)
        assert state.positions[0, 0].tolist() == list(range(L + steps))
        assert state.seen[0, 0].tolist() == [float(L + steps - j) for j in range(L + steps)]


@pytest.mark.parametrize("method", ["h2o", "cab_accumulated"])
@pytest.mark.parametrize("arch", ARCHS)
def test_the_model_s_cache_shrinks_to_the_budget_and_holds_its_own_keys(paths, arch, method):
    """After the prefill the cache is whole (L tokens); after each decoding step every layer and KV head holds
    int(tokens seen * (1 - ratio)) entries: the model's own keys of the positions the press kept (the prefill's
    positions exactly as an uncompressed run has them), the most recent ones among them."""
    from kvstudy.measure import cache_size
    from kvstudy.models import load_model
    from kvstudy.presses.variant import PressRun

    steps = 12
    model, _ = load_model(paths[arch], "float32", "sdpa", "cpu")
    ids = torch.randint(2, 500, (1, L + steps), generator=torch.Generator().manual_seed(1))
    run = build_run(method, {}, R)
    assert cache_size(_run(model, run, ids, 0))[0] == L  # prefill alone: the full context
    cache = _run(model, run, ids, steps)
    full = _run(model, PressRun(), ids, steps)
    budget = int((L + steps) * (1 - R))
    assert cache_size(cache)[0] == budget < cache_size(full)[0] == L + steps
    local = {"h2o": 0.2, "cab_accumulated": 0.3}[method]
    n_recent = round(local * budget)
    for layer, (mine, ref) in enumerate(zip(cache.layers, full.layers)):
        pos = run.press.state[layer].positions  # (1, kv_heads, budget)
        assert mine.keys.shape[2] == mine.values.shape[2] == pos.shape[2] == budget
        assert (pos[..., -n_recent:] == torch.arange(L + steps - n_recent, L + steps)).all()
        from_prefill = pos < L  # later keys were computed after evictions: the uncompressed run's differ
        theirs = ref.keys.gather(2, pos[..., None].expand(-1, -1, -1, ref.keys.shape[-1]))
        torch.testing.assert_close(mine.keys[from_prefill], theirs[from_prefill], atol=1e-5, rtol=1e-5)
        assert from_prefill.sum() > 0
