"""The question and the answer after a prefilled cache: greedy decoding as kvpress's pipeline does it.

The question goes in with position ids continuing after the *prefilled* tokens (the original context length, not
the entries a press kept), then the answer is decoded greedily one token at a time, under the variant's decoding
press (entered once for all the steps). Written out here, not `generate()`, so that each phase is timed apart and
the cache can be read between them.
"""

from __future__ import annotations

import torch

from kvstudy.presses.cache import uneven


def ask(model, q: torch.Tensor, cache, pos: torch.Tensor):
    """Feed the question against the cache. Presses with per-layer budgets (PyramidKV) leave full layers of
    different lengths, for which transformers cannot build one attention mask for several new tokens (a known
    limitation): there the question goes in one token at a time, which computes the same thing."""
    if not uneven(cache) or q.shape[1] == 1:
        return model(input_ids=q, past_key_values=cache, position_ids=pos, logits_to_keep=1)
    for i in range(q.shape[1]):
        out = model(input_ids=q[:, i : i + 1], past_key_values=cache, position_ids=pos[:, i : i + 1], logits_to_keep=1)
    return out


@torch.no_grad()
def answer(model, run, cache, n_prefix: int, question_ids: list[int], max_new_tokens: int, stops, clock
           ) -> tuple[list[int], float, float]:
    """(generated token ids, the clock when the first answer token was known, the clock at the end), generated
    until `stops` (kvstudy.engine.stops.Stops) says the answer is done or `max_new_tokens`."""
    device = model.device
    q = torch.tensor([question_ids], device=device)
    with run.decoding(model, cache):
        pos = torch.arange(n_prefix, n_prefix + q.shape[1], device=device).unsqueeze(0)
        out = ask(model, q, cache, pos)
        generated = [int(out.logits[0, -1].argmax())]
        t_first = clock.now()
        pos = pos[:, -1:] + 1
        while len(generated) < max_new_tokens and not stops.done(generated):
            out = model(input_ids=torch.tensor([[generated[-1]]], device=device), past_key_values=cache,
                        position_ids=pos)
            generated.append(int(out.logits[0, -1].argmax()))
            pos = pos + 1
    return generated, t_first, clock.now()
