"""`cab`: CAB, our own press: local window + bridge tokens + heavy hitters (definitions in `cab_press`)."""

from __future__ import annotations

from kvstudy.presses import PressSpec, Reads, register


def _check(params: dict) -> None:
    lf, bf = params["local_fraction"], params["bridge_fraction"]
    if lf < 0 or bf < 0 or lf + bf > 1:
        raise ValueError("bridge_fraction: local_fraction and bridge_fraction must be >= 0 and sum to at most 1")


def _build(compression_ratio: float, local_fraction: float, bridge_fraction: float):
    from kvstudy.presses.cab_press import CABPress

    return CABPress(compression_ratio=compression_ratio, local_fraction=local_fraction, bridge_fraction=bridge_fraction)


register(
    PressSpec(
        "cab",
        "CAB: keep a local window, bridge tokens (each heavy hitter's predecessor) and the highest "
        "cumulative-attention tokens; the rest of the budget after local and bridges goes to importance",
        _build,
        {"local_fraction": 0.3, "bridge_fraction": 0.2},
        check_values=_check,
        reads=Reads(None, True),  # every query's attention: the weights (eager), else recomputed from hidden states
    )
)
