"""Where an answer ends (kvstudy.engine.stops): stop ids, and stop words of several tokens matched in the text."""

from __future__ import annotations

import pytest

from bpe import train_bpe
from kvstudy.engine.stops import Stops


@pytest.fixture(scope="module")
def tok():
    return train_bpe()


def ids(tok, text):
    return tok.encode(text, add_special_tokens=False)


def test_a_single_token_stop_word_is_a_stop_id(tok):
    (newline,) = ids(tok, "\n")
    stops = Stops.of(tok, ["\n"])
    assert newline in stops.ids and tok.eos_token_id in stops.ids and stops.texts == ()
    answer = ids(tok, "magic") + [newline]
    assert not stops.done(answer[:-1]) and stops.done(answer)
    assert stops.prediction(tok, answer) == "magic"


def test_a_stop_word_of_several_tokens_stops_where_its_text_ends(tok):
    assert len(ids(tok, "\n\n")) > 1  # the case the stop ids alone never stop at
    stops = Stops.of(tok, ["\n\n"])
    assert stops.texts == ("\n\n",)
    answer = ids(tok, "one special\n\nnumber")
    ends = [i + 1 for i in range(len(answer)) if stops.done(answer[: i + 1])]
    assert tok.decode(answer[: ends[0]]).endswith("\n\n")  # the first token that completes it
    assert stops.prediction(tok, answer[: ends[0]]) == "one special"
    assert not any(stops.done(answer[: i]) for i in range(1, ends[0]))  # one newline alone does not stop


def test_no_stops_never_stop(tok):
    assert not Stops().done(ids(tok, "magic\n\n")) and Stops().prediction(tok, ids(tok, " magic ")) == "magic"
