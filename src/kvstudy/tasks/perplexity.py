"""Perplexity under compression: windows of a text corpus cut into a context (compressed) and a continuation.

Each sample is `length` context tokens (BOS + text) followed by `continuation_tokens` tokens of the same text.
`kvstudy.perplexity` prefills the context under the press and teacher-forces the continuation against the
compressed cache; only continuation tokens are scored. Texts come from `datasets.load_dataset` (WikiText-103:
`Salesforce/wikitext`, name `wikitext-103-raw-v1`; PG19: `deepmind/pg19`) or a local file (see `sources.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kvstudy.tasks.registry import register
from kvstudy.tasks.base import Sample, Task, TaskParamError
from kvstudy.tasks.sources import load_records


@register
@dataclass
class Perplexity(Task):
    name = "perplexity"
    metric = "perplexity"
    kind: ClassVar[str] = "perplexity"
    higher_is_better: ClassVar[bool] = False
    description = "prefill `length` tokens under the press, teacher-force the continuation, score only it"

    n_samples: int = 8
    source: str = ""  # hub id or local file (.txt, .jsonl, .json, .parquet, .csv)
    dataset_name: str = ""  # hub config name, e.g. wikitext-103-raw-v1
    split: str = "test"
    revision: str = ""
    trust_remote_code: bool = False
    text_column: str = "text"
    separator: str = ""  # between rows when windows run across them (WikiText rows end in "\n"; PG19: "\n\n")
    continuation_tokens: int = 256  # fed after the context; all but the first are scored (see kvstudy.perplexity)
    chunk_size: int = 128  # continuation tokens per forward pass
    fidelity: bool = True  # also run the uncompressed model: KL(full || press) and top-1 agreement

    param_ranges = {"continuation_tokens": (2, 1_000_000), "chunk_size": (1, 1_000_000)}

    def __post_init__(self):
        super().__post_init__()
        if not self.source.strip():
            raise TaskParamError("source", "empty: give a hub id or a local file")

    def samples(self, tokenizer, length: int, seed: int) -> list[Sample]:
        if self.continuation_tokens < 2:
            raise ValueError("continuation_tokens must be at least 2 (the first continuation token is not scored)")
        records = load_records(self.source, self.dataset_name, self.split, self.revision, self.trust_remote_code,
                               task=self.name)
        for n, r in enumerate(records, 1):
            if self.text_column not in r:
                raise ValueError(f"task {self.name}: source {self.source}: row {n}: no column {self.text_column!r} "
                                 f"(has {', '.join(r)})")
        bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
        window = length - len(bos) + self.continuation_tokens
        need = window * self.n_samples
        # Seeded start document; documents follow in corpus order so text stays contiguous.
        start = int(np.random.default_rng([seed, 11]).integers(len(records))) if seed else 0
        sep = tokenizer.encode(self.separator, add_special_tokens=False) if self.separator else []
        stream: list[int] = []
        for k in range(len(records)):
            text = records[(start + k) % len(records)][self.text_column] or ""
            if not text:
                continue
            stream.extend((sep if stream else []) + tokenizer.encode(text, add_special_tokens=False))
            if len(stream) >= need:
                break
        if len(stream) < need:
            raise ValueError(
                f"source {self.source}: {len(stream)} tokens, {need} needed for {self.n_samples} windows of "
                f"{length} + {self.continuation_tokens} tokens"
            )
        out = []
        for i in range(self.n_samples):
            w = stream[i * window : (i + 1) * window]
            ctx = bos + w[: length - len(bos)]
            out.append(
                Sample(
                    id=f"{i}",
                    context_ids=ctx,
                    question_ids=w[length - len(bos) :],  # the continuation
                    references=[],
                    meta={"start_document": start, "window": i},
                )
            )
        return out
