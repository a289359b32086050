"""kvstudy.study.Study: a validated config as one frozen value, which the grid expands as it would the dict."""

import dataclasses

import pytest

from kvstudy.config import study as load_study
from kvstudy.config import validate
from kvstudy.grid import eval_groups, jobs
from kvstudy.study import Study


def test_a_study_is_its_validated_config_frozen(study):
    config = validate(study)
    s = load_study(study)
    assert isinstance(s, Study) and s.as_config() == config
    assert Study.from_config(s) is s  # a Study is converted once, then passed as is
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lengths = (1,)
    with pytest.raises(TypeError, match="frozen"):
        s.models["other"] = {}
    with pytest.raises(AttributeError):
        s.presses[1]["compression_ratio"].append(0.1)


def test_the_grid_expands_a_study_as_its_config(study):
    study["exclude"] = [{"task": "kv", "press": ["snapkv-*"]}]
    config = validate(study)
    s = Study.from_config(config)
    assert jobs(s) == jobs(config) and len(jobs(s)) < len(jobs(s, exclude=False))
    assert eval_groups(s) == eval_groups(config)


def test_a_changed_study_changes_its_grid(study):
    s = load_study(study)
    fewer = dataclasses.replace(s, lengths=s.lengths[:1])
    assert {j.length for j in jobs(fewer)} == {s.lengths[0]} and len(jobs(fewer)) * 2 == len(jobs(s))


@pytest.mark.parametrize("name", ["tuning_ruler.yaml"])
def test_every_tuning_sub_study_passes_validation(name):
    """Tuning derives each search's study from the typed study (dataclasses.replace): it must be a valid study,
    and its jobs, at dev seeds, are exactly the search's trials."""
    import yaml

    from conftest import ROOT
    from kvstudy.tuning.study import dev_seed, searches, sub_study, trial_jobs

    s = load_study(yaml.safe_load((ROOT / "studies" / name).read_text()))
    found = searches(s)
    assert found
    for search in found:
        sub = sub_study(s, search)
        assert validate(sub.as_config())["presses"] == sub.as_config()["presses"]
        trials = trial_jobs(s, search)
        assert [(j.press, j.seed) for j in trials] == [(j.press, dev_seed(j.seed)) for j in jobs(sub)]
