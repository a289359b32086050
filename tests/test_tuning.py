"""Press hyper-parameter search (kvstudy.tuning): search spaces and constraints, config errors before any job, the
dev split's disjointness from the test split, selection on constructed trial results (known best, per-task vs
global), tuned variants reading their choice, the attention-output error on the tiny model, the sweep figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvstudy import tuning
from kvstudy.config import ConfigError, validate
from kvstudy.evaluate import write_atomic
from kvstudy.grid import jobs, raw_path
from kvstudy.status import render_trial_status

TINY = "builtin:tiny-retrieval"


def searched(search: dict, **fixed) -> dict:
    return {
        "models": {"tiny": {"path": TINY}},
        "tasks": {"niah": {"n_samples": 2}, "kv": {"kind": "kv_retrieval", "n_samples": 2, "n_pairs": 4}},
        "lengths": [256],
        "presses": [{"method": "no_press"}, {"method": "snapkv", "compression_ratio": 0.5, **fixed,
                                             "search": search}],
    }


# --- search spaces --------------------------------------------------------------------------------------------


def test_grid_candidates_in_order_filtered_by_constraints():
    s = {"params": {"window_size": [4, 16, 64], "kernel_size": [1, 7]}, "constraints": ["kernel_size < window_size / 2"]}
    got = tuning.candidates(s, {"compression_ratio": 0.5})
    assert got == [{"kernel_size": 1, "window_size": 4}, {"kernel_size": 1, "window_size": 16},
                   {"kernel_size": 1, "window_size": 64}, {"kernel_size": 7, "window_size": 16},
                   {"kernel_size": 7, "window_size": 64}]  # parameters by name, values in the order given
    reordered = {**s, "params": {"kernel_size": [1, 7], "window_size": [4, 16, 64]}}
    assert tuning.candidates(reordered, {"compression_ratio": 0.5}) == got


def test_constraints_see_fixed_parameters():
    s = {"params": {"window_size": [8, 64, 256]}, "constraints": ["window_size * (1 - compression_ratio) <= 32"]}
    assert [c["window_size"] for c in tuning.candidates(s, {"compression_ratio": 0.5})] == [8, 64]
    assert [c["window_size"] for c in tuning.candidates(s, {"compression_ratio": 0.9})] == [8, 64, 256]


def test_random_candidates_are_seeded_distinct_and_valid():
    s = {"params": {"window_size": {"low": 4, "high": 512, "int": True, "log": True}, "kernel_size": [1, 3, 5, 7]},
         "sample": 6, "seed": 3, "constraints": ["kernel_size <= window_size"]}
    a, b = tuning.candidates(s, {}), tuning.candidates(s, {})
    assert a == b and len(a) == 6
    assert len({json.dumps(c, sort_keys=True) for c in a}) == 6
    assert all(4 <= c["window_size"] <= 512 and c["kernel_size"] <= c["window_size"] for c in a)
    assert tuning.candidates({**s, "seed": 4}, {}) != a
    # the same candidates whatever the key order (a config goes through YAML and JSON on its way to a rule)
    assert tuning.candidates({**s, "params": dict(reversed(list(s["params"].items())))}, {}) == a
    # a finite space with no more valid points than asked for: all of them
    small = {"params": {"window_size": [8, 16]}, "sample": 5}
    assert tuning.candidates(small, {}) == [{"window_size": 8}, {"window_size": 16}]


@pytest.mark.parametrize("expr", ["__import__('os')", "window_size.real > 0", "[1][0]", "open('x')"])
def test_constraints_outside_the_whitelist_are_refused(expr):
    with pytest.raises(tuning.SearchError):
        tuning.parse_constraint(expr, {"window_size"})


# --- config errors before any job -----------------------------------------------------------------------------


@pytest.mark.parametrize("search, fixed, message", [
    ({"params": {"window_size": [8, 16]}, "constraints": ["window_size > 64"]}, {},
     "config error: presses[1].search.constraints: no candidate satisfies them"),
    ({"params": {"window_sizee": [8]}}, {}, "config error: presses[1].search.params.window_sizee: press 'snapkv' "
                                            "has no parameter 'window_sizee'"),
    ({"params": {"compression_ratio": [0.5, 0.9]}}, {}, "config error: presses[1].search.params.compression_ratio"),
    ({"params": {"window_size": [8]}}, {"window_size": 8},
     "config error: presses[1].search.params.window_size: 'window_size' is both fixed and searched"),
    ({"params": {"window_size": [8]}, "constraints": ["window < 3"]}, {},
     "config error: presses[1].search.constraints[0]: 'window < 3': unknown name 'window'"),
    ({"params": {"window_size": {"low": 4, "high": 64}}}, {},
     "config error: presses[1].search.params.window_size: a range needs `sample: n`"),
    ({"params": {"window_size": [8]}, "mode": "per_task"}, {}, "config error: presses[1].search.mode"),
])
def test_bad_search_is_a_one_line_config_error(search, fixed, message):
    with pytest.raises(ConfigError) as e:
        validate(searched(search, **fixed))
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_tuning_figure_needs_a_search(study):
    study["figures"] = ["tuning_sweep"]
    with pytest.raises(ConfigError, match="figures: tuning_sweep needs a press with a search"):
        validate(study)


def test_test_seeds_stay_below_the_dev_offset(study):
    study["seeds"] = [tuning.DEV_SEED_OFFSET]
    with pytest.raises(ConfigError, match="seeds"):
        validate(study)


# --- grid: trials on the dev split, tuned variants on the test split -------------------------------------------


def test_trials_and_tuned_variants(study):
    before = {raw_path(j) for j in jobs(validate(study))}
    study["presses"].append({"method": "streaming_llm", "compression_ratio": [0.5, 0.9],
                             "search": {"params": {"n_sink": [0, 4, 8]}, "mode": "task"}})
    config = validate(study)
    after = {raw_path(j): j for j in jobs(config)}
    assert before <= set(after)  # the test-split paths of other presses do not change
    added = sorted({j.press for p, j in after.items() if p not in before})
    assert added == ["streaming_llm-cr0.50-tuned-task", "streaming_llm-cr0.90-tuned-task"]
    trials = tuning.trial_jobs(config)
    assert len(trials) == 2 * 3 * 2 * 2  # ratios x candidates x tasks x lengths
    assert {tuning.dev_raw_path(j).split("/")[-2] for j in trials} == {"dev"}
    assert {j.seed for j in trials} == {tuning.dev_seed(0)}
    assert all(j.split == "dev" and j.attn_error is None for j in trials)
    assert not set(map(tuning.dev_raw_path, trials)) & set(after)
    job = next(j for j in trials if j.press == "streaming_llm-cr0.50-ns4")
    assert job.params == {"n_sink": 4} and job.compression_ratio == 0.5 and job.tuning_of == "streaming_llm-cr0.50"


def test_dev_split_shares_no_sample_with_the_test_split(tiny):
    """Every registered task, at the study seeds a test can use: no dev sample equals a test sample."""
    from kvstudy.tasks import TASKS, get_task

    from dataclasses import fields

    _, tok = tiny
    checked = []
    for name, cls in TASKS.items():
        if "source" in {f.name for f in fields(cls)}:
            continue  # dataset tasks: a search refuses them (test_search_refuses_dataset_tasks)
        task = get_task(name, {"n_samples": 10})
        try:
            task.samples(tok, 2048, 0)
        except ValueError:
            continue  # needs a tokenizer with digits, or a longer context, than the tiny model's at 2048
        for seed in (0, 1, 7):
            test = {(tuple(s.context_ids), tuple(s.question_ids)) for s in task.samples(tok, 2048, seed)}
            dev = {(tuple(s.context_ids), tuple(s.question_ids))
                   for s in task.samples(tok, 2048, tuning.dev_seed(seed))}
            assert len(dev) == len(test) > 1
            assert not test & dev, (name, seed)
        checked.append(name)
    assert {"niah", "kv_retrieval", "vt", "cwe"} <= set(checked), checked
    assert tuning.dev_seed(0) > 999_999  # the schema's largest test seed


def test_search_refuses_dataset_tasks():
    config = searched({"params": {"window_size": [8]}})
    config["tasks"]["qa"] = {"kind": "hf_qa", "source": "tests/data/kvpress_format.jsonl"}
    with pytest.raises(ConfigError, match=r"presses\[1\]\.search: a search needs a dev split .* task 'qa'"):
        validate(config)
    config["tasks"]["qa"] = {"kind": "ruler_qa", "source": "tests/data/ruler/squad.json"}  # its dev half: allowed
    validate(config)
    # rows split into a test part and a disjoint dev part (dev_split): allowed; test_hf_tasks checks the parts
    config["tasks"]["qa"] = {"kind": "hf_qa", "source": "tests/data/kvpress_format.jsonl",
                             "dev_split": {"fraction": 0.5}}
    validate(config)
    config["tasks"]["qa"] = {"kind": "narrativeqa", "source": "tests/data/narrativeqa.jsonl"}  # a preset, no split
    with pytest.raises(ConfigError, match=r"task 'qa' \(narrativeqa\) reads dataset rows without one"):
        validate(config)
    config = searched({"params": {"window_size": [8]}, "objective": "combined"})
    config["tasks"]["count"] = {"kind": "countdown"}
    validate(config)  # a generated answer with a 0-1 score: fine


# --- selection on constructed results -------------------------------------------------------------------------

GRID = {"params": {"window_size": [8, 16, 32]}, "mode": ["global", "task"]}
# dev scores per (candidate window size, task): ws16 is best on niah, ws32 on kv, ws8 best on average
SCORES = {8: {"niah": 0.8, "kv": 0.8}, 16: {"niah": 0.9, "kv": 0.3}, 32: {"niah": 0.2, "kv": 0.9}}


def write_trials(root: Path, config: dict, scores=SCORES, errors=None, oom=()) -> None:
    for job in tuning.trial_jobs(config):
        ws = job.params["window_size"]
        status = "oom" if ws in oom else "ok"
        result = {"schema_version": 1, "job": job.as_dict(), "status": status,
                  "quality": {"metric": "m", "score": None if status == "oom" else scores[ws][job.task], "n": 2},
                  "fidelity": {"attn_output_error": errors[ws][job.task]} if errors else None}
        write_atomic(result, root / tuning.dev_raw_path(job))


def tune_all(root: Path, config: dict) -> dict:
    out = {"global": tuning.tune(config, "tiny", "snapkv-cr0.50", None, root)}
    for task in config["tasks"]:
        out[task] = tuning.tune(config, "tiny", "snapkv-cr0.50", task, root)
    return out


def test_selection_picks_the_known_best_and_modes_differ(tmp_path):
    config = validate(searched(GRID))
    write_trials(tmp_path, config)
    got = tune_all(tmp_path, config)
    assert got["global"]["chosen"]["params"] == {"window_size": 8}
    assert got["global"]["chosen"]["objective"] == pytest.approx(0.8)
    assert got["niah"]["chosen"]["params"] == {"window_size": 16}
    assert got["kv"]["chosen"]["params"] == {"window_size": 32}
    assert got["niah"]["n_trials"] == 3 and got["global"]["n_trials"] == 6
    assert got["global"]["dev_seeds"] == [tuning.dev_seed(0)]


def test_where_one_candidate_wins_everywhere_the_modes_agree(tmp_path):
    config = validate(searched(GRID))
    write_trials(tmp_path, config, scores={8: {"niah": 0.5, "kv": 0.5}, 16: {"niah": 0.9, "kv": 0.7},
                                           32: {"niah": 0.1, "kv": 0.6}})
    got = tune_all(tmp_path, config)
    assert {got[k]["chosen"]["press"] for k in got} == {"snapkv-cr0.50-ws16"}


def test_ties_go_to_the_first_candidate_and_oom_is_never_chosen(tmp_path):
    config = validate(searched(GRID))
    flat = {ws: {"niah": 0.5, "kv": 0.5} for ws in (8, 16, 32)}
    write_trials(tmp_path, config, scores=flat)
    assert tuning.tune(config, "tiny", "snapkv-cr0.50", None, tmp_path)["chosen"]["params"] == {"window_size": 8}
    write_trials(tmp_path, config, scores={**flat, 32: {"niah": 1.0, "kv": 1.0}}, oom=(32,))
    got = tuning.tune(config, "tiny", "snapkv-cr0.50", None, tmp_path)
    assert got["chosen"]["params"] == {"window_size": 8}
    assert [c["oom"] for c in got["candidates"]] == [False, False, True]


def test_combined_objective_minimises_error_plus_penalty(tmp_path):
    # ws8 scores best but moves the attention outputs most; with penalty 0.1 the error dominates, with 10 the score
    scores = {8: {"niah": 1.0, "kv": 1.0}, 16: {"niah": 0.8, "kv": 0.8}, 32: {"niah": 0.5, "kv": 0.5}}
    errors = {8: {"niah": 0.5, "kv": 0.5}, 16: {"niah": 0.1, "kv": 0.1}, 32: {"niah": 0.05, "kv": 0.05}}
    for penalty, best in ((0.1, 32), (1.0, 16), (10.0, 8)):
        config = validate(searched({**GRID, "objective": "combined", "penalty": penalty}))
        assert all(j.attn_error for j in tuning.trial_jobs(config))
        write_trials(tmp_path, config, scores=scores, errors=errors)
        got = tuning.tune(config, "tiny", "snapkv-cr0.50", None, tmp_path)
        assert got["chosen"]["params"] == {"window_size": best}, penalty
        assert got["better"] == "lower"
        assert got["chosen"]["objective"] == pytest.approx(errors[best]["kv"] + penalty * (1 - scores[best]["kv"]))


def test_missing_trial_is_an_error(tmp_path):
    config = validate(searched(GRID))
    write_trials(tmp_path, config)
    (tmp_path / tuning.dev_raw_path(tuning.trial_jobs(config)[0])).unlink()
    with pytest.raises(FileNotFoundError):
        tuning.tune(config, "tiny", "snapkv-cr0.50", None, tmp_path)


def test_tuned_job_reads_its_choice(tmp_path):
    config = validate(searched(GRID))
    write_trials(tmp_path, config)
    for name, choice in tune_all(tmp_path, config).items():
        task = None if name == "global" else name
        write_atomic(choice, tmp_path / tuning.choice_path("tiny", "snapkv-cr0.50", choice["mode"], task))
    tuned = {(j.task, j.press): j for j in jobs(config) if j.tuning}
    assert set(tuned) == {(t, f"snapkv-cr0.50-tuned-{m}") for t in ("niah", "kv") for m in ("global", "task")}
    job = tuning.apply_choice(tuned["kv", "snapkv-cr0.50-tuned-task"], tmp_path)
    assert job.params == {"window_size": 32} and job.compression_ratio == 0.5
    assert job.tuning["chosen"] == "snapkv-cr0.50-ws32"
    assert tuning.apply_choice(tuned["kv", "snapkv-cr0.50-tuned-global"], tmp_path).params == {"window_size": 8}


def test_summary_tables_and_sweep_figure(tmp_path):
    import pandas as pd

    from kvstudy.plots import make_figure

    config = validate(searched(GRID))
    write_trials(tmp_path, config)
    for name, choice in tune_all(tmp_path, config).items():
        task = None if name == "global" else name
        write_atomic(choice, tmp_path / tuning.choice_path("tiny", "snapkv-cr0.50", choice["mode"], task))
    out = tmp_path / "results/analysis/tuning"
    test_scores = {("niah", "global"): 0.7, ("niah", "task"): 0.8, ("kv", "global"): 0.6, ("kv", "task"): 0.5}
    results = pd.DataFrame([{"model": "tiny", "press": f"snapkv-cr0.50-tuned-{m}", "task": t, "length": 256,
                             "status": "ok", "score": v} for (t, m), v in test_scores.items()])
    results.to_csv(tmp_path / "results.csv", index=False)
    tuning.write_summary(config, tmp_path, tmp_path / "results.csv", out)
    choices = pd.read_csv(out / "choices.csv").set_index("task")
    assert choices.loc["niah", "test_gain"] == pytest.approx(0.1)
    assert choices.loc["kv", "test_gain"] == pytest.approx(-0.1)  # per-task tuning can lose on the test split
    assert choices.loc["mean", "task_test_score"] == pytest.approx(0.65)
    assert choices.loc["niah", "dev_gain"] == pytest.approx(0.9 - 0.8)
    assert choices.loc["kv", "dev_gain"] == pytest.approx(0.9 - 0.8)
    assert choices.loc["mean", "task_dev"] == pytest.approx(0.9)
    assert (out / "choices.tex").read_text().count("\\\\") >= 4
    cands = pd.read_csv(out / "candidates.csv")
    assert len(cands) == 3 * 3  # candidates x (2 tasks + all)
    assert cands[cands.chosen_task].press.tolist() == ["snapkv-cr0.50-ws16", "snapkv-cr0.50-ws32"]
    paths = make_figure("tuning_sweep", tmp_path / "results/tables", tmp_path / "results/analysis", tmp_path / "f")
    assert all(p.stat().st_size > 1000 for p in paths)


# --- attention-output error -----------------------------------------------------------------------------------


def test_attention_output_error_on_the_tiny_model(tiny):
    from kvstudy import attn_error
    from kvstudy.presses import get_press
    from kvstudy.tasks import get_task

    model, tok = tiny
    sample = get_task("niah", {"n_samples": 1}).samples(tok, 512, 0)[0]
    assert attn_error.layer_errors(model, None, sample) == [0.0] * model.config.num_hidden_layers
    mild = attn_error.measure(model, get_press("streaming_llm").build({"compression_ratio": 0.25}), sample)
    hard = attn_error.measure(model, get_press("streaming_llm").build({"compression_ratio": 0.9}), sample)
    assert 0 < mild < hard


def test_eval_job_records_attention_error_when_asked():
    from kvstudy.evaluate import run_job

    config = validate(searched({"params": {"window_size": [8]}, "objective": "combined"}))
    job = next(j for j in tuning.trial_jobs(config) if j.task == "niah")
    result = run_job(job)
    assert result["fidelity"]["attn_output_error"] > 0
    assert all(s["attn_error"] >= 0 for s in result["samples"])


@pytest.mark.parametrize("mode", ["global", "task"])
def test_one_mode_only(tmp_path, mode):
    import pandas as pd

    from kvstudy.plots import make_figure

    config = validate(searched({**GRID, "mode": mode}))
    assert {j.press for j in jobs(config) if j.tuning} == {f"snapkv-cr0.50-tuned-{mode}"}
    write_trials(tmp_path, config)
    for task in ([None] if mode == "global" else ["niah", "kv"]):
        choice = tuning.tune(config, "tiny", "snapkv-cr0.50", task, tmp_path)
        write_atomic(choice, tmp_path / tuning.choice_path("tiny", "snapkv-cr0.50", mode, task))
    out = tmp_path / "results/analysis/tuning"
    tuning.write_summary(config, tmp_path, None, out)
    choices = pd.read_csv(out / "choices.csv")
    assert "dev_gain" not in choices.columns and f"{mode}_choice" in choices.columns
    assert make_figure("tuning_sweep", tmp_path, tmp_path / "results/analysis", tmp_path / "f")


def test_a_choice_depends_only_on_its_part_of_the_study(tmp_path):
    config = validate(searched(GRID))
    write_trials(tmp_path, config)
    part = tuning.tune_study(config, "tiny", "snapkv-cr0.50", "kv")
    assert tuning.tune(part, "tiny", "snapkv-cr0.50", "kv", tmp_path) == tuning.tune(
        config, "tiny", "snapkv-cr0.50", "kv", tmp_path)
    more = searched(GRID)
    more["presses"].append({"method": "knorm", "compression_ratio": 0.5})
    more["models"]["other"] = {"path": TINY}
    more["tasks"]["niah"]["n_samples"] = 3
    more = validate(more)
    assert tuning.tune_study(more, "tiny", "snapkv-cr0.50", "kv") == part  # a new press, model, other task's size
    assert tuning.tune_study(more, "tiny", "snapkv-cr0.50") != tuning.tune_study(config, "tiny", "snapkv-cr0.50")


def test_attention_output_error_follows_the_variant(tiny):
    """The compressed pass is the eval job's: a quantized cache alone moves the outputs; a query-aware press
    that keeps everything does not."""
    from kvstudy import attn_error
    from kvstudy.presses.variant import build_run
    from kvstudy.tasks import get_task

    model, tok = tiny
    sample = get_task("niah", {"n_samples": 1}).samples(tok, 512, 0)[0]
    assert attn_error.measure(model, build_run("no_press", {"quantization": "int4"}, None), sample) > 0
    keep_all = build_run("snapkv", {"query_aware": True}, 0.0)
    assert attn_error.measure(model, keep_all, sample) == pytest.approx(0, abs=1e-5)
    qa = attn_error.measure(model, build_run("streaming_llm", {"query_aware": True}, 0.9), sample)
    assert qa > 0


def test_candidates_get_the_press_checks_a_listed_variant_gets():
    config = searched({"params": {"local_fraction": [0.3, 0.9]}})
    config["presses"][1]["method"] = "cab"
    with pytest.raises(ConfigError, match=r"presses\[1\]\.search\.params: candidate \{'local_fraction': 0.9\}: "
                                          r"bridge_fraction: .* sum to at most 1"):
        validate(config)
    # the constraint language can keep such candidates out
    config["presses"][1]["search"]["constraints"] = ["local_fraction + bridge_fraction <= 1"]
    validate(config)


def test_status_shows_where_a_search_stands(tmp_path):
    config = validate(searched(GRID))
    assert "done=0  oom=0  failed=0  missing=6  choices=0/3" in render_trial_status(config, tmp_path)
    write_trials(tmp_path, config, oom=(32,))
    write_atomic(tuning.tune(config, "tiny", "snapkv-cr0.50", "kv", tmp_path),
                 tmp_path / tuning.choice_path("tiny", "snapkv-cr0.50", "task", "kv"))
    assert "done=4  oom=2  failed=0  missing=0  choices=1/3" in render_trial_status(config, tmp_path)
