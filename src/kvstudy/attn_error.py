"""Attention-output error of a press: how much the question tokens' attention outputs change under compression.

For one sample: the variant's cache as the eval job makes it (`kvstudy.engine.prefill`: under its prefill press, or
derived from the prefill its class shares, with the question appended when query-aware) and the full-precision,
uncompressed cache of the same tokens; then ask the question against each (positions continuing after the prefill,
under the variant's decoding press for the compressed one) and capture every layer's attention output: the input of
its output projection (heads concatenated; Llama's `o_proj`, GPT-NeoX's `dense`: `kvstudy.models.layout`). A
layer's error is the relative Frobenius norm ||A_compressed - A_full||_F / ||A_full||_F; the sample's error is
the mean over layers. It is a tuning objective (kvstudy.tuning, `objective: combined`).

Neither kvpress nor transformers measures this, so it is written here with forward pre-hooks.
"""

from __future__ import annotations

import torch

from kvstudy.engine.generate import ask  # the question exactly as the eval job asks it
from kvstudy.engine.group import asked_ids, prefix_ids
from kvstudy.engine.prefill import OwnPrefill, reset_masks
from kvstudy.measure import Clock
from kvstudy.models.layout import out_projs
from kvstudy.presses.variant import PressRun


def _o_projs(model) -> list[torch.nn.Module]:
    return out_projs(model)


@torch.no_grad()
def _question_attn_outputs(model, run, sample, cache, n: int) -> list[torch.Tensor]:
    """Every layer's attention output of the question asked after a cache of `n` prefilled tokens."""
    device = model.device
    q = torch.tensor([asked_ids(sample, run.query_aware)], device=device)
    pos = torch.arange(n, n + q.shape[1], device=device).unsqueeze(0)
    mods = _o_projs(model)
    captured: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(mods))}
    hooks = [m.register_forward_pre_hook(lambda _m, args, i=i: captured[i].append(args[0].detach().float()))
             for i, m in enumerate(mods)]
    try:
        with run.decoding(model, cache):
            ask(model, q, cache, pos)  # one call, or one per token for uneven layers: concatenated below
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(captured[i], dim=1) for i in range(len(mods))]


def layer_errors(model, press, sample, prefill=None) -> list[float]:
    """Relative Frobenius error of each layer's question-token attention output, compressed vs full cache.
    `press` is a `kvstudy.presses.variant.PressRun`, a bare kvpress press, or None; `prefill` the sample's prefill
    (`kvstudy.engine.prefill`: shared by the variant's class, or its own), made here when not given."""
    run = press if isinstance(press, PressRun) else PressRun(press)
    prefill = prefill or OwnPrefill(model, prefix_ids(sample, run.query_aware), Clock(model.device))
    full_cache = prefill.full()
    reset_masks(model)  # the full cache is attended whole, whatever a masking variant masked before
    full = _question_attn_outputs(model, PressRun(), sample, full_cache, len(prefill))
    comp = _question_attn_outputs(model, run, sample, prefill.cache_for(run)[0], len(prefill))
    return [float(torch.linalg.norm(c - f) / torch.linalg.norm(f).clamp_min(1e-12)) for c, f in zip(comp, full)]


def measure(model, press, sample, prefill=None) -> float:
    """The sample's attention-output error: the mean over layers of `layer_errors`."""
    errs = layer_errors(model, press, sample, prefill)
    return sum(errs) / len(errs)


def summary(rows: list[dict]) -> dict | None:
    """The job's fidelity entry: mean attention-output error over samples (None when not measured)."""
    vals = [r["attn_error"] for r in rows if r.get("attn_error") is not None]
    return {"attn_output_error": sum(vals) / len(vals)} if vals else None
