"""The press variants the engine and architecture tests run: one list, so the two cannot drift apart.

Each entry names the tests that use it: "engine" (tests/test_engine.py: a group job of them all, and each one's
cache from a shared prefill, on four models) and "archs" (tests/test_architectures.py: each one's cache against
transformers' own, on eight architectures x two task kinds). Most serve both; an entry only one of them needs
stays out of the other's matrix, which is the larger for it (and test_engine's prefill-class counts rest on its
selection). Parameters fit 160-512 token contexts.
"""

from __future__ import annotations

R = 0.5
C = 64  # cache_size of the architecture tests: tokens kept per full layer
DUO = {"sink_size": 4, "recent_size": 16, "n_samples": 2}
BOTH = ("engine", "archs")

CASES: list[tuple[dict, tuple[str, ...]]] = [
    ({"method": "no_press"}, BOTH),
    *[({"method": m, "compression_ratio": R}, BOTH) for m in
      ("knorm", "streaming_llm", "tova", "expected_attention", "random", "keydiff", "observed_attention", "cab")],
    ({"method": "snapkv", "compression_ratio": R, "window_size": 16}, BOTH),
    ({"method": "pyramidkv", "compression_ratio": R, "window_size": 16}, BOTH),
    ({"method": "adakv", "compression_ratio": R}, BOTH),
    ({"method": "duo_attention", "compression_ratio": R, **DUO}, BOTH),
    ({"method": "decoding", "compression_ratio": R}, BOTH),  # newest-token scoring: observed_attention (eager)
    ({"method": "decoding", "compression_ratio": R, "press": "knorm", "compression_interval": 8}, ("archs",)),
    ({"method": "decoding", "compression_ratio": R, "press": "cab", "compression_interval": 8}, BOTH),
    ({"method": "decoding_budget", "press": "knorm", "target_size": 32}, BOTH),
    # accumulated attention (issue 21): H2O's recent window + heavy hitters, CAB's split, on the model's kernel
    ({"method": "h2o", "compression_ratio": R}, BOTH),
    ({"method": "cab_accumulated", "compression_ratio": R, "compression_interval": 8}, BOTH),
    ({"method": "int8"}, BOTH),
    ({"method": "int4"}, BOTH),
    ({"method": "snapkv", "compression_ratio": R, "window_size": 16, "query_aware": True}, BOTH),
    # issue 20: absolute budgets (min(cache_size, n) per full layer), max pooling, the whole prompt under the press
    ({"method": "snapkv", "cache_size": 100, "window_size": 16, "pooling": "maxpool", "query_aware": "prompt"},
     ("engine",)),
    ({"method": "pyramidkv", "cache_size": 100, "window_size": 4, "query_aware": "prompt"}, ("engine",)),
    ({"method": "snapkv", "cache_size": C, "window_size": 16, "pooling": "maxpool", "query_aware": "prompt"},
     ("archs",)),
    ({"method": "streaming_llm", "cache_size": C}, ("archs",)),
    ({"method": "knorm", "compression_ratio": R, "quantization": "int4"}, BOTH),
    ({"method": "cab", "compression_ratio": R, "quantization": "int8"}, BOTH),
]


def variants_for(test: str) -> list[dict]:
    """The variants `test` ("engine" or "archs") runs, in list order; fresh dicts, so no test edits another's."""
    if test not in BOTH:
        raise ValueError(f"variants_for: unknown test {test!r} (one of {BOTH})")
    return [dict(v) for v, used_by in CASES if test in used_by]
