"""A fallback for kvpress's fake-key search, used by the per-head masking presses (AdaKV, DuoAttention).

kvpress masks a key by overwriting it with a fake key k such that every query q of the step has <q, k> << 0
(`attention_patch.search_hyperplane`: a perceptron-style search for y with <q, y> > 0 for all q, 1000 steps).
The search is not scale-invariant: when query norms differ by orders of magnitude (the shipped tiny model has a
previous-token head with |q| ~ 200 next to heads with |q| < 1) it fails and raises, although such a y exists.
The fallback runs the same search on unit-normalised queries (the sign of <q, y> does not depend on |q|) and
scales the fake key so that the *smallest* margin is -1e5, the logit kvpress aims for. kvpress's own search is
tried first whenever it can succeed (no all-zero query group), so kvpress's fake keys are kept wherever they work.

A KV group whose queries are all exactly zero at a step (the shipped tiny model has one in layer 0 for the
question tokens) attends uniformly and no fake key can change that: <0, k> = 0 for every k. There the masked keys
stay attended for that step (a zero fake key, with one warning in the job log): masking cannot be done by fake keys,
so the reported masked fraction over-states what that head ignored at that step.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    import kvpress.attention_patch as patch

    original = patch.search_hyperplane
    warned: list[bool] = []  # warn once per process

    def search_hyperplane(X: torch.Tensor, max_iter: int = 1000) -> torch.Tensor:
        Xf = X.float()
        norms = Xf.norm(dim=-1, keepdim=True)
        if not (norms.squeeze(-1) == 0).all(dim=1).any():  # kvpress's search can only succeed without zero rows
            try:
                return original(X, max_iter)
            except ValueError:
                pass
        Xn = torch.where(norms > 0, Xf / norms.clamp(min=1e-30), 0.0)
        dead = (norms.squeeze(-1) == 0).all(dim=1)  # rows whose queries are all zero: nothing can be masked
        if dead.any() and not warned:
            warned.append(True)
            n = int(dead.sum())
            log.warning("kvpress masking: %d KV group(s) with all-zero queries cannot ignore masked keys", n)
        Y = Xn.mean(1)
        for _ in range(max_iter):
            margins = torch.bmm(Xf, Y.unsqueeze(-1)).squeeze(-1)  # (bsz, n)
            violated = (margins <= 0) & (norms.squeeze(-1) > 0)
            if not violated.any():
                smallest = torch.where(norms.squeeze(-1) > 0, margins, torch.inf).min(dim=1, keepdim=True).values
                K = torch.where(dead.unsqueeze(-1), 0.0, -1e5 * Y / smallest.clamp(min=1e-30))
                return K.to(X.dtype)
            Y = Y + (Xn * violated.unsqueeze(-1)).sum(1) / violated.sum(1, keepdim=True).clamp(min=1)
        raise ValueError("Could not find fake keys such that for every query q, exp(<q, k>) = 0 (normalised search)")

    patch.search_hyperplane = search_hyperplane
    _installed = True
