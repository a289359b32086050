"""Time to build synthetic samples, and whether every context hits its length exactly, by task and length.

    python bench/task_generation.py [--lengths 4096 32768 131072] [--n 2] [--tokenizer DIR]

Default tokenizer: a byte-level BPE trained here on the shipped word list (offline stand-in for a real model's);
`--tokenizer` takes a local HF tokenizer directory. The tiny model's word-level tokenizer with `--tiny`.
"""

from __future__ import annotations

import argparse
import time

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from kvstudy.tasks import get_task
from kvstudy.tasks.vocab import NOISE, english_words

TASKS = {
    "ruler_niah": {},
    "ruler_niah(mk3)": {"haystack": "needle", "key_type": "uuids", "value_type": "uuids", "num_keys": 4},
    "vt": {},
    "cwe": {},
    "fwe": {},
    "json_kv": {},
    "path_traversal": {},
    "countdown": {},
}


def bpe() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(english_words()), " ".join(NOISE)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 32768, 131072])
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--tokenizer", default="")
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    if a.tiny:
        from kvstudy.models.tiny import build_tokenizer

        tok = build_tokenizer()
    else:
        tok = AutoTokenizer.from_pretrained(a.tokenizer) if a.tokenizer else bpe()
    print("| task | " + " | ".join(f"{n} tokens: s/sample (exact)" for n in a.lengths) + " |")
    print("|---|" + "---|" * len(a.lengths))
    for label, params in TASKS.items():
        kind = label.split("(")[0]
        cells = []
        for length in a.lengths:
            t0 = time.perf_counter()
            try:
                samples = get_task(kind, {"n_samples": a.n} | params).samples(tok, length, seed=0)
            except ValueError as e:
                cells.append(f"n/a ({str(e)[:40]}…)")
                continue
            dt = (time.perf_counter() - t0) / a.n
            exact = all(len(s.context_ids) == length for s in samples)
            cells.append(f"{dt:.2f} ({'yes' if exact else 'NO'})")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
