"""FlexAttention under kvpress (kvstudy.presses.flex_attention): kvpress's attention patch passes dropout where
transformers' flex function takes `scaling`, so importing kvpress broke every flex forward. With the fix flex
computes eager's model, and a compressed cache answers a question as under SDPA. The first flex call compiles
(torch.compile, some 20 s on CPU), so the tests share one model and few shapes."""

from __future__ import annotations

import pytest
import torch

from archs import make_model
from kvstudy.attn_equivalence import compare
from kvstudy.engine.generate import ask
from kvstudy.models import load_model


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return make_model("llama", tmp_path_factory.mktemp("flex") / "llama")


def test_flex_computes_eagers_model_after_kvpress_is_imported(llama):
    import kvpress  # noqa: F401  (its patch on import is what broke flex)

    group = {"path": llama, "revision": None, "dtype": "float32", "config_overrides": None,
             "models": {"l_flex": "flex_attention", "l_eager": "eager"}}
    row = {r["model"]: r for r in compare(group, tokens=48)}["l_flex"]
    assert row["equivalent"] and row["max_abs_diff"] < 1e-4, row


def _answer_logits(path, attention: str, ids, question):
    import kvpress
    from transformers import DynamicCache

    model, _ = load_model(path, "float32", attention)
    cache = DynamicCache()
    with torch.no_grad():
        with kvpress.KnormPress(compression_ratio=0.5)(model):
            model(input_ids=ids, past_key_values=cache)
        kept = cache.get_seq_length()
        pos = torch.arange(ids.shape[1], ids.shape[1] + question.shape[1]).unsqueeze(0)
        logits = ask(model, question, cache, pos).logits[0, -1]
    return kept, logits


def test_a_compressed_cache_answers_as_under_sdpa(llama):
    g = torch.Generator().manual_seed(1)
    ids, question = torch.randint(2, 500, (1, 64), generator=g), torch.randint(2, 500, (1, 6), generator=g)
    kept_sdpa, sdpa = _answer_logits(llama, "sdpa", ids, question)
    kept_flex, flex = _answer_logits(llama, "flex_attention", ids, question)
    assert kept_sdpa == kept_flex == 32  # the press ran under both: half the context is left
    # the question's six tokens attend causally among themselves under both (a non-causal mask would differ)
    assert torch.allclose(flex, sdpa, atol=1e-4), (flex - sdpa).abs().max()


def test_a_masked_step_under_flex_is_refused():
    from kvstudy.presses import flex_attention
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    flex_attention.install()
    module = torch.nn.Module()
    module.masked_key_indices = (torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))
    q, k = torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 4, 8)
    with pytest.raises(NotImplementedError, match="flex_attention"):
        ALL_ATTENTION_FUNCTIONS["flex_attention"](module, q, k, k, None, 0.0, scaling=1.0)
