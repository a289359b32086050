"""The entailment judge of HELMET `cite`: a T5 seq2seq NLI model (default HELMET's and ALCE's
`google/t5_xxl_true_nli_mixture`) asked `premise: P hypothesis: H`; it entails when the greedy answer is `1`.

Loaded only to score a judged task, after generation, on the job's device; answers are cached per (premise,
hypothesis) since citation precision asks again about passages recall already asked about. Memory: the default
judge is 11B parameters, ~22 GB in bfloat16 (HELMET's dtype; float16 overflows in T5).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_JUDGE = "google/t5_xxl_true_nli_mixture"
DTYPES = ("bfloat16", "float32")  # not float16: T5 activations overflow in it
# Asked once when a judge loads: a checkpoint that never answers exactly "1" (a wrong model, a broken download,
# the wrong tokenizer) would score every citation 0, one that always does every citation 1, without an error.
SANITY = (("The sky is blue.", "The sky is blue.", True), ("The sky is blue.", "Paris is the capital of Japan.", False))


def check(judge: str, hub_cache: bool = False) -> str:
    """What can be checked before any GPU time; returns what `from_pretrained` gets. A local judge must be a
    directory with a config.json (checked when the config is validated: no network then). A hub id is checked with
    `hub_cache`, at job start, before generation: in the local hub cache, or else the hub must have it (with the hub
    switched off, HF_HUB_OFFLINE=1, it must be in the cache). Otherwise a typo or an unreachable hub would only show
    after every answer had been generated."""
    from kvstudy.models import resolve, split_revision

    where = resolve(judge)  # ValueError naming the path when it is neither an existing directory nor a hub id
    judge, revision = split_revision(judge)  # org/name@REVISION: that revision
    if hub_cache and where == judge and not Path(judge).expanduser().exists():
        import huggingface_hub
        from huggingface_hub import constants, try_to_load_from_cache

        if isinstance(try_to_load_from_cache(judge, "config.json", revision=revision), str):
            return where
        if constants.HF_HUB_OFFLINE:
            raise ValueError(f"{judge!r} is not in the local hub cache and the hub is offline (HF_HUB_OFFLINE)")
        try:
            huggingface_hub.model_info(judge, timeout=30, **({"revision": revision} if revision else {}))
        except Exception as e:  # not found, gated, or no network: from_pretrained would fail the same way later
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{judge!r} is not in the local hub cache and the hub does not give it: {why}") from None
    return where


class NLIJudge:
    """`judge(premise, hypothesis) -> bool`."""

    def __init__(self, judge: str, dtype: str = "bfloat16", device: str = "cpu", max_new_tokens: int = 10,
                 sanity: bool = True):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        from kvstudy.models import hub_location, record_commit

        check(judge)
        where, revision = hub_location(judge)  # a cached hub judge: its snapshot folder (offline after a fetch)
        self.tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(where, revision=revision, dtype=getattr(torch, dtype))
        self.model.to(device).eval()
        record_commit(judge)
        self.max_new_tokens = max_new_tokens
        self.cache: dict[tuple[str, str], bool] = {}
        self.calls = 0  # model calls (cache misses)
        for premise, hypothesis, expected in SANITY if sanity else ():
            if self(premise, hypothesis) is not expected:
                raise ValueError(f"judges {'no' if expected else 'yes'} for premise {premise!r} hypothesis "
                                 f"{hypothesis!r}: not an NLI model that answers '1' for entailment")
        self.cache.clear()
        self.calls = 0

    def __call__(self, premise: str, hypothesis: str) -> bool:
        key = (premise, hypothesis)
        if key not in self.cache:
            import torch

            ids = self.tokenizer(f"premise: {premise} hypothesis: {hypothesis}", return_tensors="pt").input_ids
            with torch.inference_mode():
                out = self.model.generate(ids.to(self.model.device), max_new_tokens=self.max_new_tokens,
                                          do_sample=False)
            self.cache[key] = self.tokenizer.decode(out[0], skip_special_tokens=True).strip() == "1"
            self.calls += 1
        return self.cache[key]

    def close(self) -> None:
        """Free the judge's memory (the job's device is shared with nothing else, but the process lives on)."""
        import gc

        import torch

        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
