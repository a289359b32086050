"""Where an answer ends: the tokenizer's and the model's end ids, a task's single-token stop words (as HELMET stops,
by token id), and stop words of several tokens ("\\n\\n" in most BPE vocabularies), matched in the decoded text as
transformers' `stop_strings` does, the answer cut before the first one. Without the text match a multi-token stop
word would never stop generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def stop_token_ids(tokenizer, words: list[str], generation_config=None) -> set[int]:
    """Token ids that end an answer: the tokenizer's end of sequence, the model's generation_config end ids (as
    `generate` uses: an instruct model's end-of-turn token is often only there, e.g. Llama-3.1's <|eot_id|>,
    Qwen2.5's <|endoftext|>), and each stop word that is a single token."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = getattr(generation_config, "eos_token_id", None)
    ids.update([eos] if isinstance(eos, int) else (eos or []))
    ids.update(enc[0] for w in words if len(enc := tokenizer.encode(w, add_special_tokens=False)) == 1)
    return ids


@dataclass(frozen=True)
class Stops:
    ids: frozenset = frozenset()
    texts: tuple[str, ...] = ()  # stop words of several tokens, matched in the decoded answer
    tokenizer: object = field(default=None, compare=False, repr=False)
    window: int = 0  # tokens decoded to look for a text stop that ends at the newest one

    @classmethod
    def of(cls, tokenizer, words: list[str], generation_config=None) -> "Stops":
        lengths = {w: len(tokenizer.encode(w, add_special_tokens=False)) for w in words}
        texts = tuple(w for w, n in lengths.items() if n > 1)
        return cls(frozenset(stop_token_ids(tokenizer, words, generation_config)), texts, tokenizer,
                   max((lengths[w] for w in texts), default=0) + 2)  # +2: a token that merges the word's edges

    def done(self, generated: list[int]) -> bool:
        """Whether the answer ends at its newest token."""
        if generated[-1] in self.ids:
            return True
        if not self.texts:
            return False
        tail = self.tokenizer.decode(generated[-self.window:], skip_special_tokens=True)
        return any(t in tail for t in self.texts)

    def prediction(self, tokenizer, generated: list[int]) -> str:
        """The answer's text: without its stop id, cut before the first stop word of several tokens."""
        text = tokenizer.decode(generated[:-1] if generated[-1] in self.ids else generated, skip_special_tokens=True)
        return text[:min((text.find(t) for t in self.texts if t in text), default=len(text))].strip()
