"""A reasoning model's thoughts, kept apart from its answer before scoring, and the output budget to finish them.

Reasoning models write their thoughts first and close them with a marker: `</think>` (DeepSeek-R1 and its
distills, Qwen3, QwQ, Phi-4-reasoning), `[/THINK]` (Magistral), `</seed:think>` (Seed-OSS). The DeepSeek-R1
templates open the block themselves (the prompt ends with `<think>\\n`); Qwen3 opens it in its output. The task
settings (`kvstudy.tasks.base.Task`): `strip_thinking` (score only what follows the last end marker; on by default,
as HELMET's thinking mode), `thinking_end` (the end markers; the opener is the marker without its slash) and
`thinking_max_new_tokens` (the output budget when the model thinks on this task, i.e. its prompt is wrapped in a
chat template that knows a thinking marker; 0: `max_new_tokens`).

A thought that was opened (by the prompt or the output) and never closed (the budget ran out, or a stop word ended
generation inside it) is not an answer: the scored answer is empty, and the row says so (`thinking.closed: false`),
rather than scoring the first sentence of the reasoning. Markers are matched on the decoded text: none of them is
a special token in those tokenizers, so decoding keeps them.
"""

from __future__ import annotations

THINK_END = ("</think>", "[/THINK]", "</seed:think>")


def opener(end: str) -> str:
    """`</think>` -> `<think>`, `[/THINK]` -> `[THINK]`: the opening marker of an end marker."""
    for closing, opening in (("</", "<"), ("[/", "[")):
        if end.startswith(closing):
            return opening + end[len(closing):]
    return end


def opened_by(prompt_text: str, markers) -> bool:
    """The prompt ends inside an open thought block (its last opener comes after its last end marker)."""
    last = lambda ms: max((prompt_text.rfind(m) for m in ms), default=-1)  # noqa: E731
    start = last([opener(m) for m in markers])
    return start >= 0 and start > last(markers)


def split(text: str, markers, opened: bool) -> tuple[str, dict | None]:
    """(the answer to score, what the thoughts were: {"chars", "closed"} or None when there were none)."""
    ends = [(text.rfind(m), m) for m in markers if m in text]
    if ends:
        at, m = max(ends)
        return text[at + len(m):].strip(), {"chars": at, "closed": True}
    if opened or any(opener(m) in text for m in markers):
        return "", {"chars": len(text), "closed": False}
    return text, None


def template_thinks(tokenizer, markers) -> bool:
    """The tokenizer's chat template knows a thinking marker (it opens a thought block, or handles one)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # several named templates
        template = " ".join(template.values())
    return any(m in template or opener(m) in template for m in markers)


def model_thinks(task, tokenizer) -> bool:
    """Whether a model thinks on `task`: the task wraps its prompt in the model's chat template and that template
    knows a thinking marker. Without a template (HELMET's ICL, RAG, recall, rerank) the model continues the text."""
    from kvstudy.tasks.prompt import uses_chat_template

    return uses_chat_template(tokenizer, task.chat_template) and template_thinks(tokenizer, task.thinking_end)


def budget(task, sample, thinks: bool) -> int:
    """The sample's output budget: its own (a dataset row may set one) or the task's, raised to
    `thinking_max_new_tokens` for a model that thinks."""
    own = sample.meta.get("max_new_tokens", task.max_new_tokens)
    return max(own, task.thinking_max_new_tokens) if thinks and task.thinking_max_new_tokens else own


def answer(task, tokenizer, sample, prediction: str) -> dict:
    """The row's `answer` (what is scored) and, where the model thought, `thinking`."""
    if not task.strip_thinking:
        return {"answer": prediction}
    tail = tokenizer.decode(sample.question_ids[-16:], skip_special_tokens=False)
    text, thoughts = split(prediction, task.thinking_end, opened_by(tail, task.thinking_end))
    return {"answer": text} | ({"thinking": thoughts} if thoughts else {})


def answer_text(task, prediction: str) -> str:
    """The scored part of `prediction` when the prompt is not known (a row scored outside an eval job)."""
    return split(prediction, task.thinking_end, False)[0] if task.strip_thinking else prediction
