"""`CABAccumulatedPress`: CAB's selection (`cab_press.select`) by importance accumulated in `accumulated_press`'s
state; registered as `cab_accumulated` in `cab_accumulated.py`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kvstudy.presses.accumulated_press import Accumulated, AccumulatedAttentionPress
from kvstudy.presses.cab_press import select


@dataclass
class CABAccumulatedPress(AccumulatedAttentionPress):
    local_fraction: float = 0.3
    bridge_fraction: float = 0.2

    def keep(self, state: Accumulated, n_kept: int) -> torch.Tensor:
        importance = state.scores / state.seen
        p = state.positions
        adjacent = torch.nn.functional.pad(p[..., 1:] == p[..., :-1] + 1, (1, 0))
        scores = select(importance, n_kept, self.local_fraction, self.bridge_fraction, adjacent)
        return scores.topk(n_kept, dim=-1).indices
