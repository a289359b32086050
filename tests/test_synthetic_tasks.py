"""RULER / HELMET / LongProc synthetic generators: exact lengths, right answers, on the tiny model's word-level
tokenizer (lexicon rendering) and on a byte-level BPE tokenizer trained here (English rendering, subword pieces)."""

import json
import re
from collections import Counter

import pytest

from bpe import train_bpe
from kvstudy.metrics import METRICS
from kvstudy.models.tiny import build_tokenizer
from kvstudy.tasks import get_task
from kvstudy.tasks.countdown import solve


@pytest.fixture(scope="module")
def tiny_tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def bpe():
    return train_bpe()


CASES = {  # kind: params for both tokenizers (the lexicon needs word values)
    "ruler_niah": {"value_type": "words"},
    "vt": {"num_chains": 2},
    "cwe": {"num_common": 3, "freq_common": 20, "freq_uncommon": 2},
    "fwe": {},
    "json_kv": {},
    "path_traversal": {"route_hops": 6},
}


@pytest.mark.parametrize("kind", list(CASES) + ["countdown"])
@pytest.mark.parametrize("length", [700, 2048, 3001])
@pytest.mark.parametrize("which", ["tiny", "bpe"])
def test_exact_length_on_any_tokenizer(kind, length, which, tiny_tok, bpe):
    if kind == "countdown" and which == "tiny":
        pytest.skip("countdown has no lexicon rendering (tested below)")
    tok = tiny_tok if which == "tiny" else bpe
    samples = get_task(kind, {"n_samples": 2} | CASES.get(kind, {})).samples(tok, length, seed=0)
    for s in samples:
        assert len(s.context_ids) == length and s.context_ids[0] == tok.bos_token_id
        assert s.question_ids and s.references
        assert tok.unk_token_id is None or tok.unk_token_id not in s.context_ids + s.question_ids
        assert s.meta["vocab"] == ("lexicon" if which == "tiny" else "english")


def test_countdown_needs_digits(tiny_tok):
    with pytest.raises(ValueError, match="digits"):
        get_task("countdown", {"n_samples": 1}).samples(tiny_tok, 512, 0)


def test_numbers_on_the_lexicon_is_an_error_naming_the_fix(tiny_tok):
    with pytest.raises(ValueError, match="value_type: words"):
        get_task("ruler_niah", {"n_samples": 1}).samples(tiny_tok, 512, 0)


@pytest.mark.parametrize("params", [
    {"key_type": "words", "value_type": "numbers"},
    {"key_type": "uuids", "value_type": "uuids", "haystack": "needle", "num_keys": 4},
    {"value_type": "numbers", "num_values": 4, "haystack": "words"},
    {"key_type": "numbers", "num_keys": 4, "num_queries": 3},
])
def test_ruler_niah_needles_hold_the_answers(bpe, params):
    task = get_task("ruler_niah", {"n_samples": 6, "n_depths": 3} | params)
    for s in task.samples(bpe, 2000, seed=1):
        text = bpe.decode(s.context_ids)
        q = bpe.decode(s.question_ids)
        assert len(s.references) == task.num_values * task.num_queries
        for ref, off in zip(s.references, s.meta["answer_offsets"]):
            needle = bpe.decode(s.context_ids[off : off + 200]).split(".")[0]
            assert needle.startswith(" One of the special magic") and needle.endswith(f"is: {ref}")
            key = re.search(r" for (.+?) is:", needle).group(1)
            assert key in q  # the needle holding the answer is the queried key's
        if task.value_type == "numbers":
            assert all(re.fullmatch(r"\d{7}", r) for r in s.references)
        if task.value_type == "uuids":
            assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", r)
                       for r in s.references)
        # a queried key's values are in the context exactly once each; RULER's metric gives the full answer 1.0
        assert all(text.count(r) == 1 for r in s.references)
        assert METRICS["string_match_all"](" ".join(s.references), s.references) == 1.0
        assert s.depth == s.meta["needle_offset"] / 2000
        assert abs(s.depth - s.meta["target_depth"]) < 0.1  # the instructions shift it a little
        if task.haystack == "noise":
            assert "The grass is green." in text
        if task.haystack == "needle":  # distinct distractor keys, as RULER's
            keys = re.findall(r"One of the special magic \w+ for (\S+) is:", text)
            assert len(keys) > 10 and len(keys) == len(set(keys))


def test_ruler_niah_lexicon_needles(tiny_tok):
    for s in get_task("ruler_niah", {"n_samples": 5, "value_type": "words", "num_values": 2}).samples(tiny_tok, 512, 3):
        key = tiny_tok.convert_ids_to_tokens(s.question_ids)[1]
        for ref, off in zip(s.references, s.meta["answer_offsets"]):
            assert tiny_tok.convert_ids_to_tokens(s.context_ids[off : off + 2]) == [ref, key]


def test_vt_chain_leads_from_the_value_to_every_answer(bpe, tiny_tok):
    for s in get_task("vt", {"n_samples": 4, "num_chains": 2, "num_hops": 3}).samples(bpe, 1500, 0):
        text = bpe.decode(s.context_ids)
        assigned = dict(re.findall(r"VAR (\w+) = (\w+)\.", text))
        holders, frontier = set(), {s.meta["value"]}
        while frontier:  # follow the assignments from the value
            frontier = {var for var, src in assigned.items() if src in frontier} - holders
            holders |= frontier
        assert holders == set(s.references) and len(holders) == 4
        assert s.meta["value"] in bpe.decode(s.question_ids)
    s = get_task("vt", {"n_samples": 1}).samples(tiny_tok, 512, 0)[0]
    first = tiny_tok.convert_ids_to_tokens(s.context_ids[s.meta["needle_offset"] : s.meta["needle_offset"] + 2])
    assert first == [s.meta["value"], s.references[0]]


@pytest.mark.parametrize("which", ["tiny", "bpe"])
def test_cwe_references_are_the_most_common_words(which, tiny_tok, bpe):
    tok = tiny_tok if which == "tiny" else bpe
    task = get_task("cwe", {"n_samples": 3, "num_common": 4, "freq_common": 12, "freq_uncommon": 2})
    for s in task.samples(tok, 2500, 0):
        text = tok.decode(s.context_ids[1:])
        words = re.findall(r"\d+\. (\w+)", text) if which == "bpe" else text.split()[s.meta["pad_tokens"]:]
        assert len(words) == s.meta["n_items"]
        counts = Counter(words)
        assert all(counts[w] == 12 for w in s.references)
        assert max(c for w, c in counts.items() if w not in s.references) < 12
        if which == "bpe":
            assert [int(n) for n in re.findall(r"(\d+)\. \w+", text)] == list(range(1, len(words) + 1))


@pytest.mark.parametrize("which", ["tiny", "bpe"])
def test_fwe_references_are_the_top_three_after_the_dots(which, tiny_tok, bpe):
    tok = tiny_tok if which == "tiny" else bpe
    for s in get_task("fwe", {"n_samples": 3}).samples(tok, 1500, 2):
        text = tok.decode(s.context_ids[1:])
        if which == "bpe":
            text = text.split("Coded text:", 1)[1]
        counts = Counter(w for w in text.split() if w.strip("."))
        top = [w for w, _ in counts.most_common(4)]
        assert top[:3] == s.references and counts[top[2]] > counts[top[3]]


def test_json_kv_is_valid_json_holding_the_answer(bpe, tiny_tok):
    for s in get_task("json_kv", {"n_samples": 4}).samples(bpe, 1800, 0):
        text = bpe.decode(s.context_ids[1:])
        obj = json.loads("{" + text.split("JSON data: {", 1)[1])
        key = json.loads(bpe.decode(s.question_ids).split("Key: ", 1)[1].split(" Corresponding")[0])
        assert obj[key] == s.references[0] and len(obj) == s.meta["n_pairs"] > 10
        assert bpe.decode(s.context_ids[s.meta["needle_offset"] :]).lstrip(", ").startswith(json.dumps(key))
        assert METRICS["substring_exact_match"](f"The value is {s.references[0]}.", s.references) == 1.0
    for s in get_task("json_kv", {"n_samples": 3}).samples(tiny_tok, 1024, 0):
        off = s.meta["needle_offset"]
        assert tiny_tok.convert_ids_to_tokens(s.context_ids[off : off + 2]) == [
            s.references[0], tiny_tok.convert_ids_to_tokens(s.question_ids)[1]]


@pytest.mark.parametrize("which", ["tiny", "bpe"])
def test_path_traversal_route_is_the_unique_way(which, tiny_tok, bpe):
    tok = tiny_tok if which == "tiny" else bpe
    for s in get_task("path_traversal", {"n_samples": 3, "route_hops": 7}).samples(tok, 2500, 0):
        text = tok.decode(s.context_ids[1:])
        q = tok.decode(s.question_ids)
        if which == "bpe":
            edges = re.findall(r"You can travel from (.+?) to (.+?) by (\w+)\.", text)
            src, dst = re.search(r"route from (.+?) to (.+?) based", q).groups()
            hop = "From {}, take a {} to {}."
            nxt = {a: (b, t) for a, b, t in edges}
            fmt = lambda a, b, t: hop.format(a, t, b)  # noqa: E731
        else:
            words = text.split()
            edges = [(words[k - 2], words[k - 1], "") for k, w in enumerate(words) if w == "."]
            src, dst = q.split()[1:]
            nxt = {a: (b, t) for a, b, t in edges}
            fmt = lambda a, b, t: f"{a} {b} ."  # noqa: E731
        assert len(nxt) == len(edges)  # one outgoing connection per city
        route, city = [], src
        while city != dst:
            b, t = nxt[city]
            route.append(fmt(city, b, t))
            city = b
        assert "\n".join(route) == s.references[0] and len(route) == 7
        assert METRICS["route_partial_accuracy"]("<Route>\n" + s.references[0] + "\n</Route>", s.references) == 1.0


def test_countdown_examples_check_out_and_the_puzzle_is_solvable(bpe):
    s = get_task("countdown", {"n_samples": 1}).samples(bpe, 3000, 0)[0]
    text = bpe.decode(s.context_ids[1:])
    examples = re.findall(r"Numbers: \[([\d, ]+)\], target: (\d+)\n[\s\S]*?(<Solution>[\s\S]*?</Solution>)", text)
    assert len(examples) == s.meta["n_examples"] >= 2
    for nums, target, sol in examples:  # the metric accepts every worked example's own solution
        ref = json.dumps({"numbers": [int(x) for x in nums.split(",")], "target": int(target)})
        assert METRICS["countdown_solution"](sol, [ref]) == 1.0
    ref = json.loads(s.references[0])
    assert solve(ref["numbers"], ref["target"], [], limit=10_000) is not None


@pytest.mark.parametrize("kind", list(CASES))
def test_seeded(kind, tiny_tok):
    task = get_task(kind, {"n_samples": 2} | CASES[kind])
    a, b, c = (task.samples(tiny_tok, 1024, seed=s) for s in (0, 0, 1))
    assert [s.context_ids for s in a] == [s.context_ids for s in b] != [s.context_ids for s in c]


@pytest.mark.parametrize("kind", ["ruler_niah", "vt", "json_kv", "niah"])
def test_chat_template_wraps_synthetic_prompts_at_the_exact_length(kind):
    tok = train_bpe(chat=True)
    # chat_template "auto" (json_kv's default is HELMET's none: set here) and the tokenizer has one
    task = get_task(kind, {"n_samples": 2, "chat_template": "auto"} | ({"vocab": "english"} if kind != "niah" else {}))
    for s in task.samples(tok, 1000, 0):
        assert len(s.context_ids) == 1000
        assert tok.decode(s.context_ids).startswith("<|user|>\n")
        assert tok.decode(s.question_ids).endswith("<|end|>\n<|assistant|>\n")
    task.chat_template = "none"
    s = task.samples(tok, 1000, 0)[0]
    assert s.context_ids[0] == tok.bos_token_id and not tok.decode(s.question_ids).endswith("<|assistant|>\n")


@pytest.mark.parametrize("kind", list(CASES) + ["countdown"])
def test_resolved_says_which_vocabulary_the_samples_used(kind, tiny_tok, bpe):
    """`Task.resolved`: what `vocab: auto` became for a tokenizer, the vocabulary the samples were written in."""
    task = get_task(kind, {"n_samples": 1} | CASES.get(kind, {}))
    assert task.resolved(bpe)["vocab"] == task.samples(bpe, 700, 0)[0].meta["vocab"] == "english"
    assert task.resolved(tiny_tok)["vocab"] == "lexicon"
    assert get_task(kind, {"vocab": "english"}).resolved(tiny_tok)["vocab"] == "english"  # set: kept as set


@pytest.mark.parametrize("kind, key, value", [
    ("ruler_niah", "value_type", "number"), ("ruler_niah", "key_type", "uuid"), ("ruler_niah", "haystack", "noises"),
    ("vt", "haystack", "needle"), ("cwe", "vocab", "englsh"), ("json_kv", "vocab", "auto-detect"),
])
def test_a_value_outside_a_parameters_choices_is_refused_when_the_task_is_made(kind, key, value):
    from kvstudy.tasks.base import TaskParamError

    with pytest.raises(TaskParamError, match=f"^{value!r} is not one of") as e:
        get_task(kind, {key: value})
    assert e.value.key == key


def test_cwe_too_short_says_how_many_tokens_it_needs(bpe):
    with pytest.raises(ValueError, match=r"^length 512 is too short: the 10 common words x freq_common 30 alone take "
                                         r"\d+ tokens of the \d+ this tokenizer leaves"):
        get_task("cwe", {"n_samples": 1}).samples(bpe, 512, 0)


@pytest.mark.parametrize("kind, params", [("niah", {}), ("ruler_niah", {"value_type": "words"}), ("json_kv", {})])
@pytest.mark.parametrize("which", ["tiny", "bpe"])
def test_samples_of_one_depth_bin_are_independent_replicates(kind, params, which, tiny_tok, bpe):
    """Depth bins spread samples over the haystack, but within a bin each sample draws its own depth, haystack and
    needle: replicates at one fixed offset (issue 15) were one unit to a press that chooses by position."""
    if kind == "niah" and which == "bpe":
        pytest.skip("niah writes lexicon words only")
    tok = tiny_tok if which == "tiny" else bpe
    n_depths, per_bin, length = 5, 4, 2048
    samples = get_task(kind, {"n_samples": n_depths * per_bin, "n_depths": n_depths} | params).samples(tok, length, 3)
    for k in range(n_depths):
        group = [s for i, s in enumerate(samples) if i % n_depths == k]
        assert all(s.meta["depth_bin"] == k for s in group)
        assert len({tuple(s.context_ids) for s in group}) == per_bin  # every haystack its own
        offsets = [s.meta["needle_offset"] for s in group]
        assert len(set(offsets)) > 1, (k, offsets)  # not one offset for the bin
        drawn = [s.depth if kind == "niah" else s.meta.get("target_depth", s.depth) for s in group]
        assert len(set(drawn)) == per_bin
        if kind != "json_kv":  # json_kv's bin is over its pairs (recorded depth: the pair's offset / length)
            assert all(k / n_depths <= d < (k + 1) / n_depths for d in drawn), (k, drawn)
    # deterministic from (seed, length, sample index): fewer samples are the first ones of more
    first = get_task(kind, {"n_samples": 3, "n_depths": n_depths} | params).samples(tok, length, 3)
    assert [s.context_ids for s in first] == [s.context_ids for s in samples[:3]]


ESSAY = ("The first essay begins here. It talks about startups and painters! Does it ask questions? "
         "Yes, and it answers them at length.\n\nA new paragraph follows the first one.")


def _essays(tmp_path, form):
    """A stand-in for the Paul Graham essays: a folder of .txt files, or RULER's JSON {"text": ...}."""
    if form == "folder":
        (tmp_path / "b.txt").write_text("Second essay, its only sentence.")
        (tmp_path / "a.txt").write_text(ESSAY)
        (tmp_path / "notes.md").write_text("Not an essay and never read.")
        return str(tmp_path)
    path = tmp_path / "essays.json"
    path.write_text(json.dumps({"text": ESSAY + " Second essay, its only sentence."}))
    return str(path)


@pytest.mark.parametrize("form", ["folder", "json"])
@pytest.mark.parametrize("length", [700, 2001])
def test_ruler_niah_essay_haystack_is_the_essays_at_the_exact_length(form, length, tmp_path, bpe):
    source = _essays(tmp_path, form)
    task = get_task("ruler_niah", {"n_samples": 4, "n_depths": 4, "haystack": "essay", "essay_source": source})
    samples = task.samples(bpe, length, seed=2)
    for s in samples:
        assert len(s.context_ids) == length and s.context_ids[0] == bpe.bos_token_id
        text = bpe.decode(s.context_ids)
        assert "The first essay begins here." in text and "Second essay, its only sentence." in text
        assert "Not an essay" not in text and "\n" not in text  # whitespace collapsed as RULER does
        assert text.index("The first essay") < text.index("Second essay")  # files in name order
        off = s.meta["needle_offset"]
        needle = bpe.decode(s.context_ids[off : off + 200]).split(".")[0]
        assert needle.startswith(" One of the special magic") and needle.endswith(f"is: {s.references[0]}")
        assert text.count(s.references[0]) == 1
        assert abs(s.depth - s.meta["target_depth"]) < 0.15  # needles go between sentences, near their depth
        assert bpe.decode(s.context_ids[:off]).rstrip()[-1] in ".!?"  # after a sentence (or the instructions)
    assert [s.meta["depth_bin"] for s in samples] == [0, 1, 2, 3]
    again = task.samples(bpe, length, seed=2)
    assert [s.context_ids for s in again] == [s.context_ids for s in samples]
    other = task.samples(bpe, length, seed=3)
    assert [s.context_ids for s in other] != [s.context_ids for s in samples]


@pytest.mark.parametrize("what", ["missing", "empty folder", "blank json"])
def test_ruler_niah_essay_source_without_text_is_a_one_line_error_naming_it(what, tmp_path, bpe):
    source = tmp_path / "essays"
    if what == "empty folder":
        source.mkdir()
    if what == "blank json":
        source = tmp_path / "essays.json"
        source.write_text(json.dumps({"text": "  \n "}))
    task = get_task("ruler_niah", {"n_samples": 1, "haystack": "essay", "essay_source": str(source)})
    with pytest.raises(ValueError, match=f"essay_source {re.escape(str(source))}: (no such|holds no text)") as e:
        task.samples(bpe, 700, 0)
    assert "\n" not in str(e.value)


def test_essay_source_goes_with_the_essay_haystack_only():
    from kvstudy.tasks.base import TaskParamError

    with pytest.raises(TaskParamError, match="haystack: essay"):
        get_task("ruler_niah", {"haystack": "essay"})
    with pytest.raises(TaskParamError, match="haystack: essay"):
        get_task("ruler_niah", {"essay_source": "x.json"})
