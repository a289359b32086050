"""The unit of a significance test travels from the task to samples.csv: samples that share a context share a
cluster id (`meta.cluster`, samples.csv `cluster`); a sample alone is its own cluster."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bpe import train_bpe
from rawfixtures import raw_for, write
from kvstudy.aggregate import aggregate
from kvstudy.config import validate
from kvstudy.grid import jobs, raw_path
from kvstudy.tasks import get_task


@pytest.fixture(scope="module")
def bpe():
    return train_bpe()


def test_questions_on_one_document_share_a_cluster(bpe, tmp_path):
    """kvpress's hub format and NarrativeQA ask several questions per document: one unit to the tests."""
    story, other = "The lake was cold and the river was warm.", "A short note about the hills."
    rows = [{"context": story, "question": "\nWhat was cold?", "answer": ["lake"]},
            {"context": story, "question": "\nWhat was warm?", "answer": ["river"]},
            {"context": other, "question": "\nAbout what?", "answer": ["hills"]}]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b, c = get_task("hf_qa", {"source": str(path)}).samples(bpe, 512, 0)
    assert a.meta["cluster"] == b.meta["cluster"] != c.meta["cluster"]


def test_aggregate_writes_each_samples_cluster(study, tmp_path):
    job = next(j for j in jobs(validate(study)) if j.press == "no_press")
    result = raw_for(job, scores=(1.0, 1.0, 1.0, 1.0))
    for sample, meta in zip(result["samples"], ({"cluster": "ctx:ab"}, {"cluster": "ctx:ab"}, {}, None)):
        if meta is not None:
            sample["meta"] = meta
    raw = write(tmp_path / raw_path(job), result)
    aggregate([raw], tmp_path / "tables")
    table = pd.read_csv(tmp_path / "tables" / "samples.csv", dtype={"sample_id": str, "cluster": str})
    assert list(table["cluster"]) == ["ctx:ab", "ctx:ab", "2", "3"]  # alone: its own id
