"""Provenance page (kvstudy.provenance) and the figures: section (kvstudy.plots.specs)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kvstudy.config import ConfigError, validate
from kvstudy.plots.specs import grid_summary, resolve
from kvstudy.provenance import write_provenance


def test_provenance_page_has_commit_config_versions_devices_and_times(tmp_path, study):
    raw = tmp_path / "r.json"
    raw.write_text(json.dumps({"provenance": {"device": "cuda", "device_name": "NVIDIA H100", "host": "gpu7",
                                              "torch": "2.13.0", "git_commit": "abc123"}}))
    bench = tmp_path / "benchmarks" / "eval" / "tiny" / "niah" / "1024" / "no_press"
    bench.mkdir(parents=True)
    (bench / "seed0.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    results = pd.DataFrame({"model": ["tiny"], "task": ["niah"], "status": ["oom"], "total_seconds": [None]})
    results.to_csv(tmp_path / "results.csv", index=False)
    out = write_provenance(study, tmp_path / "prov.html", root=tmp_path, results_csv=tmp_path / "results.csv",
                           raw_paths=[raw, tmp_path / "missing.json"], benchmarks=tmp_path / "benchmarks")
    page = out.read_text()
    for words in ("Git commit", "not a git checkout", "kvstudy source", "NVIDIA H100", "gpu7", "abc123", "statsmodels", "pandas",
                  "12.5", "benchmark", "oom", "builtin:tiny-retrieval", "Resolved config"):
        assert words in page, words


def test_figures_list_form_and_mapping_form(study):
    study = {**study, "models": {"a": {"path": "builtin:tiny-retrieval", "group": "base"},
                                 "b": {"path": "builtin:tiny-retrieval", "group": "reasoning"}}}
    study["figures"] = ["score_vs_ratio", {"figure": "score_vs_ratio", "name": "svr_again"},
                        {"figure": "model_groups"}]
    specs = resolve(validate(study))
    assert [s["name"] for s in specs] == ["score_vs_ratio", "svr_again", "model_groups"]
    assert specs[2]["options"]["groups"] == {"a": "base", "b": "reasoning"}  # from models.<m>.group
    assert "eval jobs (2 models x" in grid_summary(validate(study))


@pytest.mark.parametrize("entry, words", [
    ({"figure": "pie"}, "figures[0]: unknown figure 'pie'"),
    ({"figure": "score_vs_ratio", "colour": "red"}, "figures[0].colour: figure 'score_vs_ratio' has no option"),
    ({"name": "x"}, "figures[0]"),
])
def test_bad_figure_entries_are_one_line_config_errors(study, entry, words):
    with pytest.raises(ConfigError, match=None) as e:
        validate({**study, "figures": [entry]})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_duplicate_output_names_are_refused(study):
    with pytest.raises(ConfigError, match="already the name of figures"):
        validate({**study, "figures": ["score_vs_ratio", {"figure": "pareto_memory", "name": "score_vs_ratio"}]})
