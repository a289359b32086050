"""kvstudy.job.Job: the frozen eval job. Its dict is today's dict byte for byte (raw results' `job` block, result
paths and Snakemake params depend on it), it cannot be changed, and a hand-written job gets the schema's defaults."""

import dataclasses
import hashlib
import json
import pickle

import pytest
import yaml

from conftest import ROOT
from kvstudy import schemas
from kvstudy.config import validate
from kvstudy.grid import jobs
from kvstudy.job import Job
from kvstudy.tuning import trial_jobs

# sha256 of json.dumps([job dict, ...], sort_keys=False) of the default study's jobs, all its jobs (`exclude:`
# ignored) and its tuning trials, computed by the dict-returning grid at d4d372c (before jobs were typed): a Job's
# `as_dict()` must give exactly those dicts (keys, order, values), or every raw result of a study would rerun. The
# five studies/*.yaml were checked the same way when jobs became typed (7cecb2c..7cd8100, every hash equal); they are
# not pinned here because they change with their logs (a study edit is not a change of the job format).
GOLDEN = {
    "config.yaml": ("ee7cdba8e8a748018d7ad8ed2f6b7f736b21eb97cd9c330f69054ef6b49ec65b",
                    "ee7cdba8e8a748018d7ad8ed2f6b7f736b21eb97cd9c330f69054ef6b49ec65b",
                    "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"),
}
STUDIES = [ROOT / "config.yaml"]


def digest(js: list[Job]) -> str:
    assert all(isinstance(j, Job) for j in js)
    return hashlib.sha256(json.dumps([j.as_dict() for j in js], sort_keys=False).encode()).hexdigest()


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_as_dict_is_the_dict_grid_byte_for_byte(path):
    config = validate(yaml.safe_load(path.read_text()))
    got = (digest(jobs(config)), digest(jobs(config, exclude=False)), digest(trial_jobs(config)))
    assert got == GOLDEN[path.name]


def test_a_job_cannot_be_changed_and_hashes(study):
    job = jobs(validate(study))[1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.press = "other"
    with pytest.raises(TypeError, match="frozen"):
        job.task_params["n_pairs"] = 3
    with pytest.raises(AttributeError):
        job.stop_words.append("x")
    assert len({job, dataclasses.replace(job)}) == 1
    assert pickle.loads(pickle.dumps(job)) == job
    assert Job.from_dict(json.loads(json.dumps(job.as_dict()))) == job  # the JSON job file round trip


def test_a_hand_written_job_gets_the_schema_defaults():
    job = Job.from_dict({"model": "tiny", "model_path": "builtin:tiny-retrieval", "task": "niah", "length": 256,
                         "seed": 0, "press": "no_press", "method": "no_press"})
    defaults = schemas.job_defaults()
    assert (job.dtype, job.attn_implementation) == (defaults["dtype"], defaults["attn_implementation"])
    assert list(job.stop_words) == defaults["stop_words"] and job.task_kind == "niah"
    assert "chat_template" not in job.as_dict() and "tuning" not in job.as_dict()


def test_a_job_with_an_unknown_or_missing_key_is_refused():
    with pytest.raises(ValueError, match="unknown key.*colour"):
        Job.from_dict({"model": "tiny", "press": "p", "colour": "red"})
    with pytest.raises(ValueError, match="missing key.*model_path"):
        Job.from_dict({"model": "tiny", "task": "niah", "length": 1, "seed": 0, "press": "p", "method": "p"})


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_study_job_survives_the_json_job_file(path):
    """What `kvstudy eval --job` gets back from a study's job (as_dict -> JSON -> from_dict) is that job."""
    config = validate(yaml.safe_load(path.read_text()))
    for job in [*jobs(config), *trial_jobs(config)]:
        assert Job.from_dict(json.loads(json.dumps(job.as_dict()))) == job
