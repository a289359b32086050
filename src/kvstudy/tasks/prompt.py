"""Real-data prompts: fill a template, split it into context (compressed) and question, apply the model's chat
template, truncate the context to the requested length with the model's tokenizer.

The context part is everything up to the end of the long field (`{context}`, the document, the passages); the
rest — question, instructions after it, the chat template's assistant header, the answer prefix — is the question
part, fed after compression, as kvpress's pipeline does. With a chat template the whole prompt is one user turn,
rendered once and split at the same point. The context part (template head included) is at most `length`
tokens; the long field is cut in the middle (default), at the left or at the right to fit. Templates are filled
by plain `{name}` substitution — never `str.format` or `eval` on data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MARKER = "\x00KVSTUDY_CONTEXT\x00"


def fill(template: str, fields: dict) -> str:
    def sub(m):
        if m.group(1) not in fields:
            raise ValueError(f"template placeholder {{{m.group(1)}}} has no value (fields: {', '.join(fields)})")
        return str(fields[m.group(1)])

    return _FIELD.sub(sub, template)


def get_field(row: dict, path: str):
    """`a.b` reads row["a"]["b"]; through a list of dicts it gives the list of their values (answers.text)."""
    value = row
    for part in path.split("."):
        if isinstance(value, list):
            value = [v[part] for v in value]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise ValueError(f"data row has no field {path!r} (columns: {', '.join(row)})")
    return value


def truncate(ids: list[int], budget: int, mode: str) -> list[int]:
    """`ids` cut to `budget` tokens: in the middle, on the left or on the right; never with mode `none` (the input
    runs whole, longer than the length if it is: HELMET does not cut LongProc's inputs)."""
    if len(ids) <= budget or mode == "none":
        return ids
    if budget <= 0:
        return []
    if mode == "middle":
        head = budget // 2
        return ids[:head] + ids[len(ids) - (budget - head) :]
    if mode == "left":  # drop the beginning
        return ids[len(ids) - budget :]
    if mode == "right":
        return ids[:budget]
    raise ValueError(f"unknown truncation {mode!r} (middle, left, right, none)")


def uses_chat_template(tokenizer, setting: str) -> bool:
    if setting == "none":
        return False
    if setting == "auto":
        return bool(getattr(tokenizer, "chat_template", None))
    raise ValueError(f"chat_template {setting!r}: use auto or none")


@dataclass
class Prompt:
    head: list[int]  # BOS / chat header + template text before the long field
    tail: list[int]  # template text after it + assistant header + answer prefix

    def budget(self, length: int) -> int:
        return length - len(self.head)


def split_prompt(tokenizer, template: str, fields: dict, context_key: str, chat_template: str,
                 answer_prefix: str = "") -> Prompt:
    """Head and tail token ids around the long field `context_key` (whose value is not encoded here)."""
    user = fill(template, {**fields, context_key: MARKER})
    if user.count(MARKER) != 1:
        raise ValueError(f"template must contain {{{context_key}}} exactly once")
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False) if s else []  # noqa: E731
    if uses_chat_template(tokenizer, chat_template):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                 add_generation_prompt=True)
        pre, post = rendered.split(MARKER)
        head = enc(pre)  # the rendered template carries its own BOS text, if any
    else:
        pre, post = user.split(MARKER)
        head = ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + enc(pre)
    return Prompt(head=head, tail=enc(post + answer_prefix))


def build(tokenizer, template: str, fields: dict, context_key: str, length: int, chat_template: str = "auto",
          truncation: str = "middle", answer_prefix: str = "") -> tuple[list[int], list[int], dict]:
    """(context_ids, question_ids, meta) with len(context_ids) <= length (unless `truncation` is none); meta
    records the real lengths."""
    p = split_prompt(tokenizer, template, fields, context_key, chat_template, answer_prefix)
    if p.budget(length) <= 0:
        raise ValueError(f"length {length} leaves no room for the context after {len(p.head)} template tokens")
    doc = tokenizer.encode(str(fields[context_key]), add_special_tokens=False)
    kept = truncate(doc, p.budget(length), truncation)
    meta = {"original_context_tokens": len(p.head) + len(doc), "truncated": len(kept) < len(doc),
            "chat_template": uses_chat_template(tokenizer, chat_template)}
    return p.head + kept, p.tail, meta
