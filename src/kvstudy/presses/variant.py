"""A press variant ready to run: the press, when it acts (prefill or decoding), whether it sees the question,
and which cache it fills (the model's own, full precision or quantized: `kvstudy.presses.cache`). The press acts
through `kvstudy.presses.apply`: on full-attention layers of the job's cache only.

A `PressRun` is what every consumer runs (evaluation, perplexity, attention-output error, the tests), through
`kvstudy.engine`: its cache comes from a prefill of its own under the press, or is derived from a prefill shared
with the other variants of its *prefill class* (`prefill_class`: the attention implementation and the prefilled
tokens, i.e. whether the question is appended), keeping only what the press reads (`reads`).

`query_aware: true` follows kvpress's evaluation (`compress_questions`): the question is appended to the context
before compression, so attention-based presses score the context against it. kvpress then feeds only a question
suffix ("\\n" or the chat template's answer prefix); the token-level tasks here have none, so the question itself
is asked again after compression (positions continuing after context + question). The shipped model answers that
way with the full cache (checked); `no_press` with `query_aware: true` is the matching baseline.

`query_aware: prompt` is SnapKV's and PyramidKV's own setting (their papers, KVCache-Factory, the HELMET workshop
runs): the whole prompt (context, then question) is prefilled once under the press, so the observation window
holds the end of the prompt, i.e. the question; only the prompt's last token is fed after compression, to start
the answer (`kvstudy.engine.group.prefix_ids`/`asked_ids`). Nothing is asked twice, which matters for chat
prompts (a repeated question would repeat the template's turn markers). `false` (question-blind: the context
alone is compressed, the question fed after it) stays the explicit other variant.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from kvstudy.presses import NOTHING, QUANTIZATIONS, VARIANT_OPTIONS, Reads, get_press


@dataclass
class PressRun:
    press: Any = None  # a kvpress press (context manager over a model) or None
    phase: str = "prefill"
    query_aware: bool | str = False  # false, true (kvpress: question appended, asked again) or "prompt"
    quantization: str | None = None
    masking: bool = False
    attention: str | None = None  # attention implementation the press needs (None: the model's)
    reads: Reads = Reads()  # what its prefill press reads besides the cache (default: everything)
    shares_prefill: bool = True  # prefill-invariant: its cache can come from a shared prefill
    observes_prefill: bool = False  # a decoding press entered for the prefill too (accumulated attention: h2o)

    @property
    def at_prefill(self) -> bool:
        """Whether the press acts in the prefill: compresses it, or reads it for later (`observes_prefill`)."""
        return self.press is not None and (self.phase == "prefill" or self.observes_prefill)

    def prefill_reads(self) -> Reads:
        """What deriving this variant's cache from a shared prefill needs kept of it."""
        return self.reads if self.at_prefill else NOTHING

    def prefill_class(self, default_attention: str) -> tuple[str, bool]:
        """Variants of one class prefill the same tokens with the same attention: one prefill serves them all."""
        return (self.attention or default_attention, self.query_aware)

    def new_cache(self, model):
        """The model's own cache (`kvstudy.presses.cache`), quantized full layers for a quantized variant."""
        from kvstudy.presses.cache import make_cache

        return make_cache(model.config, self.quantization)

    def prefill(self, model, cache=None):
        """Context in which prefilling `cache` compresses it (a prefill press; only `cache` when given), or a
        decoding press that accumulates attention reads it."""
        return self._applied(model, cache) if self.at_prefill else contextlib.nullcontext()

    def decoding(self, model, cache=None):
        """Context in which feeding `cache` evicts from it (a decoding press; only `cache` when given). Enter it once
        for all the steps: kvpress counts steps towards `compression_interval` inside it and resets on exit."""
        return self._applied(model, cache) if self.phase == "decoding" else contextlib.nullcontext()

    def _applied(self, model, cache):
        from kvstudy.presses.apply import applied

        return applied(self.press, model, cache) if self.press is not None else contextlib.nullcontext()


def split_options(params: dict) -> tuple[dict, dict]:
    """(press parameters, variant options with defaults filled in)."""
    press_params = {k: v for k, v in params.items() if k not in VARIANT_OPTIONS}
    options = {**VARIANT_OPTIONS, **{k: v for k, v in params.items() if k in VARIANT_OPTIONS}}
    return press_params, options


def check_options(method: str, options: dict) -> None:
    """Raise ValueError("<option>: ...") for a combination that cannot run (never run something else instead)."""
    spec = get_press(method)
    q = options["quantization"]
    if q is not None and q not in QUANTIZATIONS:
        raise ValueError(f"quantization: unknown kind {q!r} (known: {', '.join(QUANTIZATIONS)})")
    if q is not None and spec.quantization is not None:
        raise ValueError(f"quantization: press {method!r} already is {spec.quantization} quantization")
    if q is not None and spec.phase == "decoding":
        # kvpress's decoding hook re-reads a quantized layer without its full-precision residual: it would drop
        # the most recent tokens, so this combination is refused rather than measured wrongly.
        raise ValueError(f"quantization: not supported with decoding-time eviction ({method!r})")
    if not isinstance(options["query_aware"], bool) and options["query_aware"] != "prompt":
        raise ValueError(f"query_aware: {options['query_aware']!r} is not true, false or prompt")


def build_run(method: str, params: dict, compression_ratio: float | None) -> PressRun:
    spec = get_press(method)
    press_params, options = split_options(params)
    check_options(method, options)
    if spec.has_ratio:  # a cache_size variant sets its ratio per compression (kvstudy.presses.budget)
        sized = compression_ratio is None and "cache_size" in press_params
        press_params["compression_ratio"] = 0.0 if sized else compression_ratio
    return PressRun(
        press=spec.build(press_params),
        phase=spec.phase,
        query_aware=options["query_aware"],
        quantization=options["quantization"] or spec.quantization,
        masking=spec.masking,
        attention=spec.attention(press_params),
        reads=spec.prefill_reads(press_params),
        shares_prefill=spec.shares_prefill,
        observes_prefill=spec.observes_prefill,
    )


def attention_for(method: str, params: dict) -> str | None:
    return get_press(method).attention(split_options(params)[0])
