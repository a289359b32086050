"""`duo_attention`: DuoAttention head patterns, local only (see `duo_press` for where they come from)."""

from __future__ import annotations

from pathlib import Path

from kvstudy.presses import NOTHING, PressSpec, register


def _check(params: dict) -> None:
    p = params["patterns"]
    if p != "on_the_fly" and not Path(p).is_file():
        raise ValueError(f"patterns: {p!r} is neither 'on_the_fly' nor an existing file")
    if params["sink_size"] < 0 or params["recent_size"] < 1:
        raise ValueError("recent_size: sink_size must be >= 0 and recent_size >= 1")


def _build(compression_ratio: float, patterns: str, sink_size: int, recent_size: int, n_samples: int, q_len: int):
    from kvstudy.presses import masking
    from kvstudy.presses.duo_press import LocalDuoAttentionPress

    masking.install()

    return LocalDuoAttentionPress(head_compression_ratio=compression_ratio, patterns=patterns, sink_size=sink_size,
                                  recent_size=recent_size, n_samples=n_samples, q_len=q_len)


register(
    PressSpec(
        "duo_attention",
        "DuoAttention: a compression_ratio fraction of KV heads (lowest pattern scores) become streaming heads "
        "(sink + recent tokens); patterns from a local TSV or computed on the fly",
        _build,
        {"patterns": "on_the_fly", "sink_size": 128, "recent_size": 256, "n_samples": 8, "q_len": 512},
        masking=True,
        check_values=_check,
        reads=NOTHING,  # head patterns from the model, masks from the keys' length
    )
)
