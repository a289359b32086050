"""`H2OPress`: H2O's keep rule (recent window + accumulated heavy hitters) over `accumulated_press`'s state;
registered as `h2o` in `h2o.py`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kvstudy.presses.accumulated_press import Accumulated, AccumulatedAttentionPress


@dataclass
class H2OPress(AccumulatedAttentionPress):
    recent_ratio: float = 0.2

    def keep(self, state: Accumulated, n_kept: int) -> torch.Tensor:
        k_len = len(state)
        n_recent = min(round(self.recent_ratio * n_kept), n_kept)
        heavy = state.scores[..., : k_len - n_recent].topk(n_kept - n_recent, dim=-1).indices
        recent = torch.arange(k_len - n_recent, k_len, device=heavy.device).expand(*heavy.shape[:-1], -1)
        return torch.cat([heavy, recent], -1)
