"""Attention-output error of a press: how much the question tokens' attention outputs change under compression.

For one sample: prefill the context twice, once as the eval job does (`evaluate.run_sample`: the variant's cache,
under its prefill press, with the question appended when query-aware) and once with a full-precision, uncompressed
cache of the same tokens; then ask the question against each (positions continuing after the prefill, under the
variant's decoding press for the compressed one) and capture every layer's attention output: the input of
`self_attn.o_proj` (heads concatenated, before the output projection). A layer's error is the relative Frobenius
norm ||A_compressed - A_full||_F / ||A_full||_F; the sample's error is the mean over layers. It is a tuning
objective (kvstudy.tuning, `objective: combined`).

Neither kvpress nor transformers measures this, so it is written here with forward pre-hooks.
"""

from __future__ import annotations

import torch


def _o_projs(model) -> list[torch.nn.Module]:
    mods = [m.o_proj for name, m in model.named_modules() if name.endswith("self_attn") and hasattr(m, "o_proj")]
    if not mods:
        raise ValueError(f"attention-output error: {type(model).__name__} has no self_attn.o_proj modules")
    return mods


@torch.no_grad()
def _question_attn_outputs(model, run, sample, compressed: bool) -> list[torch.Tensor]:
    from kvstudy.presses.variant import PressRun

    from kvstudy.evaluate import ask  # the question exactly as the eval job asks it

    device = model.device
    prefix = sample.context_ids + (sample.question_ids if run.query_aware else [])
    ctx = torch.tensor([prefix], device=device)
    cache = run.new_cache(model) if compressed else PressRun().new_cache(model)  # the model's own, uncompressed
    with run.prefill(model, cache) if compressed else _null():
        model.model(input_ids=ctx, past_key_values=cache)
    q = torch.tensor([sample.question_ids], device=device)
    pos = torch.arange(ctx.shape[1], ctx.shape[1] + q.shape[1], device=device).unsqueeze(0)
    mods = _o_projs(model)
    captured: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(mods))}
    hooks = [m.register_forward_pre_hook(lambda _m, args, i=i: captured[i].append(args[0].detach().float()))
             for i, m in enumerate(mods)]
    try:
        with run.decoding(model, cache) if compressed else _null():
            ask(model, q, cache, pos)  # one call, or one per token for uneven layers: concatenated below
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(captured[i], dim=1) for i in range(len(mods))]


def _null():
    import contextlib

    return contextlib.nullcontext()


def layer_errors(model, press, sample) -> list[float]:
    """Relative Frobenius error of each layer's question-token attention output, compressed vs full cache.
    `press` is a `kvstudy.presses.variant.PressRun`, a bare kvpress press, or None."""
    from kvstudy.presses.variant import PressRun

    run = press if isinstance(press, PressRun) else PressRun(press)
    full = _question_attn_outputs(model, run, sample, compressed=False)
    comp = _question_attn_outputs(model, run, sample, compressed=True)
    return [float(torch.linalg.norm(c - f) / torch.linalg.norm(f).clamp_min(1e-12)) for c, f in zip(comp, full)]


def measure(model, press, sample) -> float:
    """The sample's attention-output error: the mean over layers of `layer_errors`."""
    errs = layer_errors(model, press, sample)
    return sum(errs) / len(errs)


def summary(rows: list[dict]) -> dict | None:
    """The job's fidelity entry: mean attention-output error over samples (None when not measured)."""
    vals = [r["attn_error"] for r in rows if r.get("attn_error") is not None]
    return {"attn_output_error": sum(vals) / len(vals)} if vals else None
