"""PyramidKV (kvpress `PyramidKVPress`) with its pyramid over the layers a press compresses here.

kvpress spreads PyramidKV's per-layer budgets over every decoder layer by index (`module.layer_idx` of
`config.num_hidden_layers`). Presses here compress full-attention layers only (`kvstudy.presses.cache`), so on a
model that mixes sliding-window and full layers (Gemma3) the full layers would get budgets that do not average to
`1 - compression_ratio`. Here the pyramid runs over the full layers in order (the same budgets as kvpress's on a
model without sliding-window layers). With a single full layer the pyramid is one level: the uniform budget
(kvpress would give that layer the pyramid's widest level). Its scores pool as SnapKV's do here (`pooling`:
avgpool, kvpress's, or maxpool; `snapkv_press.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from kvpress import PyramidKVPress

from kvstudy.presses.cache import layer_kinds
from kvstudy.presses.snapkv_press import Pooled


@dataclass
class FullLayerPyramidKVPress(Pooled, PyramidKVPress):
    def post_init_from_model(self, model):
        super().post_init_from_model(model)
        full = [i for i, kind in enumerate(layer_kinds(model.config)) if kind == "full"]
        self.full_rank = {layer: rank for rank, layer in enumerate(full)}

    def get_layer_budget(self, module, q_len: int) -> int:
        ranks = getattr(self, "full_rank", None)
        if not ranks:
            return super().get_layer_budget(module, q_len)
        if len(ranks) == 1:
            return max(1, round(q_len * (1 - self.compression_ratio)))
        proxy = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=len(ranks)), layer_idx=ranks[module.layer_idx])
        return super().get_layer_budget(proxy, q_len)
