"""Attention-output error of a press: how much the question tokens' attention outputs change under compression.

For one sample: prefill the context twice, once under the press and once with the full cache, then run the question
tokens (positions continuing after the original context, as in `evaluate.run_sample`) against each cache and
capture every layer's attention output (the input of `self_attn.o_proj`: heads concatenated, before the output
projection). The error of a layer is the relative Frobenius norm ||A_compressed - A_full||_F / ||A_full||_F; the
sample's error is the mean over layers. It is a tuning objective (kvstudy.tuning, `objective: combined`).

Neither kvpress nor transformers measures this, so it is written here with forward pre-hooks.
"""

from __future__ import annotations

import contextlib

import torch


def _o_projs(model) -> list[torch.nn.Module]:
    mods = [m.o_proj for name, m in model.named_modules() if name.endswith("self_attn") and hasattr(m, "o_proj")]
    if not mods:
        raise ValueError(f"attention-output error: {type(model).__name__} has no self_attn.o_proj modules")
    return mods


@torch.no_grad()
def _question_attn_outputs(model, press, context_ids: list[int], question_ids: list[int]) -> list[torch.Tensor]:
    from transformers import DynamicCache

    device = model.device
    ctx = torch.tensor([context_ids], device=device)
    cache = DynamicCache()
    with press(model) if press is not None else contextlib.nullcontext():
        model.model(input_ids=ctx, past_key_values=cache)
    q = torch.tensor([question_ids], device=device)
    pos = torch.arange(ctx.shape[1], ctx.shape[1] + q.shape[1], device=device).unsqueeze(0)
    captured: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().float().clone()))
             for m in _o_projs(model)]
    try:
        model.model(input_ids=q, past_key_values=cache, position_ids=pos)
    finally:
        for h in hooks:
            h.remove()
    return captured


def layer_errors(model, press, sample) -> list[float]:
    """Relative Frobenius error of each layer's question-token attention output, compressed vs full cache."""
    full = _question_attn_outputs(model, None, sample.context_ids, sample.question_ids)
    comp = _question_attn_outputs(model, press, sample.context_ids, sample.question_ids)
    return [float(torch.linalg.norm(c - f) / torch.linalg.norm(f).clamp_min(1e-12)) for c, f in zip(comp, full)]


def measure(model, press, sample) -> float:
    """The sample's attention-output error: the mean over layers of `layer_errors`."""
    errs = layer_errors(model, press, sample)
    return sum(errs) / len(errs)


def summary(rows: list[dict]) -> dict | None:
    """The job's fidelity entry: mean attention-output error over samples (None when not measured)."""
    vals = [r["attn_error"] for r in rows if r.get("attn_error") is not None]
    return {"attn_output_error": sum(vals) / len(vals)} if vals else None
