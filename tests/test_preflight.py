"""Config validation's preflight (kvstudy.preflight): each model's config and tokenizer, press support, every task
x model x length's samples and one task per task entry, checked before any job; `exclude:` leaves cells out of
the grid (and out of the checks); a passed preflight is cached. Every refusal is one line naming the culprit."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, dry_run_jobs
from kvstudy.config import ConfigError, validate
from kvstudy.grid import jobs
from standins import fake_hub, hub_models, local_model, place_data


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Run in a fresh directory: the preflight cache (.snakemake/) and relative paths live there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    """A local Llama-shaped model directory (config + byte-level BPE tokenizer, no weights): an English tokenizer."""
    return local_model(tmp_path_factory.mktemp("bpe") / "llama", "llama")


def base(**tasks) -> dict:
    return {"models": {"tiny": {"path": TINY}}, "tasks": tasks or {"niah": {"n_samples": 2}}, "lengths": [256],
            "presses": [{"method": "no_press"}, {"method": "snapkv", "compression_ratio": 0.5}]}


def refused(config, match: str | None = None, preflight: bool = True) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        validate(config, preflight=preflight)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("config error: "), msg
    assert all("\n" not in line for line in e.value.lines)
    if match:
        assert match in msg, msg
    return e.value


# --- refusals the issue lists, each one line -------------------------------------------------------------------

def test_ruler_niah_defaults_on_a_word_level_tokenizer(here):
    """The shipped model's tokenizer knows only its lexicon's words: RULER's 7-digit values cannot be written."""
    e = refused(base(niah={"kind": "ruler_niah", "n_samples": 2}),
                "config error: tasks.niah: on model tiny at length 256: value_type 'numbers' needs digits")
    assert "use value_type: words" in str(e) and "exclude: [{task: niah}]" in str(e)
    validate(base(niah={"kind": "ruler_niah", "n_samples": 2, "value_type": "words"}), preflight=True)


def test_cwe_defaults_below_its_length_on_an_english_tokenizer(here, bpe_model):
    config = base(cwe={"n_samples": 1})
    config["models"] = {"llama": {"path": bpe_model}}
    config["lengths"] = [512, 8192]
    e = refused(config, "config error: tasks.cwe: on model llama at length 512: length 512 is too short")
    assert "num_common / freq_common" in str(e)
    assert "exclude: [{task: cwe, length: 512}]" in str(e)  # 8192 builds: only 512 is to leave out
    config["exclude"] = [{"task": "cwe", "length": 512}]
    validate(config, preflight=True)


def test_a_relative_model_path_that_does_not_exist_is_not_a_hub_id(here, monkeypatch):
    import socket

    def no_network(*args):  # from_pretrained of a would-be hub id retried the hub for over a minute
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    (here / "models").mkdir()
    config = base()
    config["models"] = {"mine": {"path": "models/my-llama"}}
    refused(config, "config error: models.mine.path: 'models/my-llama' does not exist (./models is a local folder")


def test_a_hub_id_neither_cached_nor_given_by_the_hub_is_one_line(here, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(here / "hub"))
    config = base()
    config["models"] = {"llama": {"path": "meta-llama/Not-A-Model"}}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    refused(config, "config error: models.llama.path: 'meta-llama/Not-A-Model' is neither a local directory nor in "
                    "the local hub cache")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_such_repo(repo_id, timeout=None):
        assert timeout is not None and timeout <= 10
        raise RuntimeError(f"404 Client Error: Repository Not Found for url: .../{repo_id}")

    monkeypatch.setattr(huggingface_hub, "model_info", no_such_repo)
    refused(config, "the hub does not give it: 404 Client Error")


def test_a_cached_hub_model_needs_no_hub(here, monkeypatch):
    from huggingface_hub import constants

    fake_hub(here / "hub", ["meta-llama/Llama-3.1-8B-Instruct"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(here / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = base(niah={"n_samples": 2}, rn={"kind": "ruler_niah", "n_samples": 1})
    config["models"] = {"llama": {"path": "meta-llama/Llama-3.1-8B-Instruct",
                                  "config_overrides": {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}}}
    validate(config, preflight=True)


def test_a_mistyped_value_is_one_line_not_a_bare_key_error():
    """ruler_niah's value_type was looked up in a dict at sample time: `KeyError: 'number'` from inside a job."""
    refused(base(niah={"kind": "ruler_niah", "value_type": "number"}),
            "config error: tasks.niah.value_type: 'number' is not one of words, numbers, uuids", preflight=False)
    refused(base(niah={"kind": "json_kv", "vocab": "englsh"}), "config error: tasks.niah.vocab: 'englsh'",
            preflight=False)
    refused(base(qa={"kind": "hf_qa", "source": "x.jsonl", "truncation": "centre"}),
            "config error: tasks.qa.truncation: 'centre' is not one of middle, left, right", preflight=False)


def test_a_local_data_file_that_does_not_exist_is_an_error(here, monkeypatch):
    e = refused(base(**{"rag_0.5k": {"kind": "helmet_rag", "source": "data/helmet/kilt/nq.jsonl"}}),
                "config error: tasks.rag_0.5k.source: data/helmet/kilt/nq.jsonl: no such file (relative paths are read")
    assert len(e.lines) == 1  # not again for each cell of the task
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(here / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = base(rag={"kind": "helmet_rag", "source": "data/helmet/kilt/nq.jsonl"})
    config["models"]["tiny"]["path"] = "org/not-cached"
    with pytest.raises(ConfigError) as e:  # said even where no model loads (it needs no tokenizer)
        validate(config, preflight=True)
    assert [line.split(":")[1] for line in e.value.lines] == [" models.tiny.path", " tasks.rag.source"]


def test_a_hub_dataset_is_left_to_job_start(here):
    """Opening a hub dataset may download gigabytes (and the hub may be reachable only where jobs run)."""
    from kvstudy.preflight import check

    report = check(validate(base(niah={"n_samples": 1}, wiki={"kind": "perplexity", "source": "Salesforce/wikitext"})))
    assert report["hub_tasks"] == ["wiki"] and report["samples"] == 1


def test_every_problem_is_its_own_line(here):
    config = base(niah={"kind": "ruler_niah", "n_samples": 1}, kv={"kind": "cwe", "vocab": "english"})
    e = refused(config)
    assert len(e.lines) == 2 and "(and 1 more problem:" in str(e)
    assert [line.split(":")[1] for line in e.lines] == [" tasks.niah", " tasks.kv"]


# --- press support ---------------------------------------------------------------------------------------------

def test_an_unsupported_press_is_refused_and_can_be_left_out(here, monkeypatch):
    from kvstudy.presses import support

    asked = []

    def unsupported(method, params, model_config, task_kind="generate"):
        asked.append((method, model_config.model_type, task_kind))
        return "no per-layer budget on this model" if method == "snapkv" else None

    monkeypatch.setattr(support, "unsupported", unsupported)
    config = base()
    refused(config, "config error: presses[1]: press snapkv-cr0.50 on model tiny: no per-layer budget on this "
                    "model (leave it out with exclude: [{model: tiny, method: snapkv}])")
    assert ("snapkv", "llama", "generate") in asked
    config["exclude"] = [{"model": "tiny", "method": "snapkv"}]
    asked.clear()
    validate(config, preflight=True)
    assert asked == [("no_press", "llama", "generate")]  # left-out cells are not checked


# --- exclude --------------------------------------------------------------------------------------------------

def test_exclude_drops_exactly_the_matching_jobs(study):
    all_jobs = jobs(validate(study))
    study["exclude"] = [{"task": "kv", "length": [512]}, {"press": "snapkv-cr0.9*"}, {"model": "tiny", "method": "knorm"}]
    kept = jobs(validate(study))
    gone = [j for j in all_jobs if j.press not in {k.press for k in kept if k.task == j.task
                                                      and k.length == j.length}]
    assert len(kept) == len(all_jobs) - len(gone)
    assert not [j for j in kept if (j.task, j.length) == ("kv", 512)]
    assert not [j for j in kept if j.press.startswith("snapkv-cr0.90") or j.method == "knorm"]
    assert {j.press for j in kept} == {"no_press", "snapkv-cr0.50-ws16", "snapkv-cr0.50-ws32"}
    assert len(kept) == 3 * 3  # (niah 256, niah 512, kv 256) x the 3 variants left
    assert len(jobs(validate(study), exclude=False)) == len(all_jobs)


@pytest.mark.parametrize("entry, key, words", [
    ({"model": "mistral"}, "exclude[0].model", "'mistral' is not a model of this study (tiny)"),
    ({"task": "cwe"}, "exclude[0].task", "'cwe' is not a task"),
    ({"method": "pyramidkv"}, "exclude[0].method", "'pyramidkv' is not a method"),
    ({"length": 1024}, "exclude[0].length", "1024 is not a length of this study (256, 512)"),
    ({"seed": 3}, "exclude[0].seed", "3 is not a seed"),
    ({"press": "snapkv-cr0.7*"}, "exclude[0].press", "matches no press variant"),
    ({"method": "knorm", "press": "snapkv*"}, "exclude[0]", "no press variant is both"),
    ({"lenght": 256}, "exclude[0]", "'lenght' was unexpected"),
    ({"model": "tiny"}, "exclude", "leaves out every job"),
])
def test_bad_exclude_entries_are_one_line(study, entry, key, words):
    study["exclude"] = [entry]
    e = refused(study, preflight=False)
    assert str(e).startswith(f"config error: {key}:") and words in str(e), str(e)


def test_exclude_cannot_cut_a_searched_press(study):
    study["presses"] = [{"method": "no_press"},
                        {"method": "snapkv", "compression_ratio": 0.5, "search": {"params": {"window_size": [8, 16]}}}]
    study["exclude"] = [{"method": "snapkv"}]
    refused(study, "dev-split trials cannot be left out", preflight=False)


def test_the_snakefile_schedules_no_excluded_job(tmp_path):
    from conftest import copy_workflow

    wd = copy_workflow(tmp_path)
    config = yaml.safe_load((wd / ".test" / "config.yaml").read_text())
    config["exclude"] = [{"task": "kv_retrieval", "length": 512}, {"press": "snapkv-cr0.90"}]
    (wd / "study.yaml").write_text(yaml.safe_dump(config))
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "figures/all", "--cores", "1",
                        "--configfile", "study.yaml"], cwd=wd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    # raw results the eval jobs (one per press entry and cell, eval.group entry) write: 1 model x 2 tasks x 2 lengths
    # x 4 variants = 16, less kv_retrieval at 512 (4) and snapkv-cr0.90 elsewhere (3)
    outputs = [o for j in dry_run_jobs(p.stdout) if j["rule"].startswith("eval") for o in j["output"].split(", ")]
    assert len(outputs) == 9, p.stdout[-2000:]
    assert "results/raw/tiny/kv_retrieval/512/" not in p.stdout and "/snapkv-cr0.90/" not in p.stdout
    aggregate = next(line for line in p.stdout.splitlines() if "kvstudy aggregate" in line)
    assert '"exclude"' in aggregate  # aggregate reads exactly the jobs that run


# --- task identity ----------------------------------------------------------------------------------------------

def test_a_task_that_resolves_differently_per_model_is_refused(here, bpe_model):
    """`json_kv` with vocab auto: 128 word pairs on the tiny model's word-level tokenizer, uuid pairs on a BPE one."""
    config = base(recall={"kind": "json_kv", "n_samples": 1})
    config["models"]["bpe"] = {"path": bpe_model}
    refused(config, 'config error: tasks.recall: is a different task on different models (vocab "lexicon" on tiny; '
                    'vocab "english" on bpe); set vocab in tasks.recall, or give each model its own task entry')
    config["tasks"]["recall"]["vocab"] = "lexicon"  # one task on both
    validate(config, preflight=True)
    # or one entry per model, each left out on the other
    config["tasks"] = {"recall_tiny": {"kind": "json_kv", "n_samples": 1},
                       "recall_bpe": {"kind": "json_kv", "n_samples": 1}}
    config["exclude"] = [{"task": "recall_tiny", "model": "bpe"}, {"task": "recall_bpe", "model": "tiny"}]
    validate(config, preflight=True)


def test_results_record_the_resolved_task(tiny):
    from kvstudy.evaluate import run_job
    from kvstudy.tasks import get_task

    job = {"model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
           "task": "recall", "task_kind": "json_kv", "task_params": {"n_samples": 1}, "length": 128, "seed": 0,
           "press": "no_press", "method": "no_press", "params": {}, "compression_ratio": 0.0, "stop_words": ["\n"]}
    r = run_job(job, device="cpu")
    assert r["job"]["task_params"] == {"n_samples": 1}
    assert r["job"]["task_resolved"]["vocab"] == "lexicon"  # 'auto' as the tiny model's tokenizer resolved it
    assert r["job"]["task_resolved"] == {**get_task("json_kv").params(), "n_samples": 1, "vocab": "lexicon"}


def test_perplexity_results_record_the_resolved_task():
    from kvstudy.evaluate import run_job

    job = {"model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
           "task": "ppl", "task_kind": "perplexity", "length": 64, "seed": 0,
           "task_params": {"n_samples": 1, "source": str(ROOT / "tests" / "data" / "tiny_text.txt"),
                           "continuation_tokens": 8, "fidelity": False},
           "press": "no_press", "method": "no_press", "params": {}, "compression_ratio": 0.0, "stop_words": []}
    r = run_job(job, device="cpu")
    assert r["job"]["task_resolved"]["continuation_tokens"] == 8 and r["job"]["task_resolved"]["chunk_size"] == 128


# --- figures the study cannot draw ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    (lambda c: c.update(figures=[{"figure": "sweep_heatmap"}]),
     "figures[0]: sweep_heatmap needs a compressed press with two varying parameters (snapkv varies nothing; "
     "knorm varies compression_ratio)"),
    (lambda c: c.update(figures=[{"figure": "sweep_heatmap", "x": "window", "y": "compression_ratio"}]),
     "sweep_heatmap needs a compressed press with parameters window and compression_ratio"),
    (lambda c: c.update(figures=[{"figure": "sweep_heatmap", "methods": ["snapk"]}]),
     "sweep_heatmap option methods: 'snapk' is not in this study"),
    (lambda c: c.update(figures=["score_vs_ratio"], presses=[{"method": "no_press"}, {"method": "int4"}]),
     "figures[0]: score_vs_ratio needs a press with a compression_ratio (this study has int4, no_press)"),
    (lambda c: c.update(figures=["niah_heatmap"], tasks={"fwe": {}}), "figures[0]: niah_heatmap needs a task whose"),
    (lambda c: c.update(figures=["model_groups"]), "figures[0]: model_groups needs at least two model groups"),
    (lambda c: c.update(figures=["context_scaling"], lengths=[256]), "context_scaling needs at least two context"),
    (lambda c: c.update(figures=["delta_heatmap"], presses=[{"method": "knorm", "compression_ratio": 0.5}]),
     "figures[0]: delta_heatmap needs a no_press baseline"),
    (lambda c: c.update(figures=["delta_heatmap"], exclude=[{"method": "no_press"}]), "delta_heatmap needs a no_press"),
])
def test_a_figure_the_study_cannot_draw_is_refused(study, change, words):
    study["presses"] = [{"method": "no_press"}, {"method": "snapkv", "compression_ratio": 0.5},
                        {"method": "knorm", "compression_ratio": [0.25, 0.5]}]
    change(study)
    refused(study, words, preflight=False)


def test_figures_the_study_can_draw_pass(study):
    study["models"]["tiny2"] = {"path": TINY, "group": "b"}
    study["models"]["tiny"]["group"] = "a"
    study["figures"] = ["score_vs_ratio", "niah_heatmap", "model_groups", "context_scaling", "delta_heatmap",
                        {"figure": "sweep_heatmap", "x": "window_size", "y": "compression_ratio",
                         "methods": ["snapkv"]}]
    validate(study)


def test_default_figures_are_those_the_study_can_draw(study):
    study["tasks"] = {"fwe": {}}  # no needle depth: niah_heatmap cannot be drawn
    assert validate(study)["figures"] == ["score_vs_ratio", "pareto_memory"]
    study["figures"] = ["niah_heatmap"]  # asked for by name: refused
    refused(study, "niah_heatmap needs", preflight=False)


# --- the cache --------------------------------------------------------------------------------------------------

def test_a_passed_preflight_is_cached_and_a_change_runs_it_again(here, monkeypatch):
    from kvstudy import preflight
    from kvstudy.tasks import TASKS

    built = []
    real = TASKS["niah"].samples
    monkeypatch.setattr(TASKS["niah"], "samples", lambda self, *a: built.append(a) or real(self, *a))
    config = validate(base())
    assert not preflight.check(config)["cached"] and len(built) == 1
    assert preflight.check(config)["cached"] and len(built) == 1  # nothing rebuilt
    assert list((here / ".snakemake" / "kvstudy" / "preflight").glob("*.json"))
    config["figures"] = ["pareto_memory"]  # not something the preflight reads
    assert preflight.check(config)["cached"]
    config["lengths"] = [256, 512]
    assert not preflight.check(config)["cached"] and len(built) == 3
    from kvstudy.tasks.haystack import LEXICON

    data = here / "words.txt"  # the tiny model's words, as a cwe word list
    data.write_text(" ".join(LEXICON.filler))
    config["tasks"] = {"niah": {"n_samples": 1}, "cwe": {"n_samples": 1, "word_list": str(data), "num_common": 2,
                                                         "freq_common": 3, "freq_uncommon": 1}}
    assert not preflight.check(config)["cached"]
    assert preflight.check(config)["cached"]
    os.utime(data, ns=(time.time_ns(), time.time_ns() + 10**9))  # a data file the study reads changed
    assert not preflight.check(config)["cached"]


def test_an_essay_haystack_without_its_essays_is_one_line_naming_task_and_path(here):
    """RULER's essay haystack reads a data file: missing or empty, the study stops before any job, saying which."""
    task = {"kind": "ruler_niah", "n_samples": 1, "value_type": "words", "haystack": "essay"}
    refused(base(rn=task | {"essay_source": "data/pg/missing"}),
            "config error: tasks.rn.essay_source: data/pg/missing: no such file")
    (here / "empty").mkdir()
    e = refused(base(rn=task | {"essay_source": "empty"}), "config error: tasks.rn: on model tiny at length")
    assert "essay_source empty: holds no text" in str(e) and len(e.lines) == 1


def test_a_failed_preflight_is_not_cached(here):
    from kvstudy import preflight

    config = validate(base(niah={"kind": "ruler_niah", "n_samples": 1}))
    for _ in range(2):
        with pytest.raises(ConfigError):
            preflight.check(config)
    assert not list((here / ".snakemake").rglob("*.json"))


# --- the paper-scale study with local stand-ins -----------------------------------------------------------------

def test_helmet_reasoning_validates_with_stand_ins(tmp_path):
    """studies/helmet_reasoning.yaml: 5 hub models (stand-in configs and BPE tokenizers in a fake hub cache, offline)
    and HELMET / LongProc files (tests/data at the paths it names); the second run finds the preflight cached. Its
    time (goal <= 30 s cold) is measured by bench/validation_time.py, not here."""
    text = (ROOT / "studies" / "helmet_reasoning.yaml").read_text()
    study = yaml.safe_load(text)
    fake_hub(tmp_path / "hub", hub_models(study))
    place_data(study, tmp_path)
    (tmp_path / "study.yaml").write_text(text)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "kvstudy.cli", "validate", "study.yaml"]
    outs = []
    for _ in range(2):  # cold, then warm (cached)
        p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        outs.append(p.stdout)
    assert "3960 eval jobs" in outs[0] and "5 models" in outs[0] and "75 task cells" in outs[0]
    assert "icl_banking77, icl_clinic150" in outs[0]  # hub datasets: left to job start, and said so
    assert "cached" not in outs[0] and "cached" in outs[1]


def test_tuning_ruler_builds_every_task_with_stand_ins(tmp_path):
    """studies/tuning_ruler.yaml: RULER's 13 tasks at 4k, essay haystack and SQuAD / HotpotQA from stand-ins at the
    paths its data: entries fill, and LooGLE's 3 on local stand-in files; the preflight builds each task's first
    samples on both models' tokenizers."""
    text = (ROOT / "studies" / "tuning_ruler.yaml").read_text()
    study = yaml.safe_load(text)
    fake_hub(tmp_path / "hub", hub_models(study))
    assert {p.relative_to(tmp_path).as_posix() for p in place_data(study, tmp_path)} >= {
        "data/ruler/essays", "data/ruler/squad/squad-dev-v2.0.json",
        "data/ruler/hotpotqa/hotpotqa-hotpot_dev_distractor_v1.json"}
    (tmp_path / "study.yaml").write_text(text)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "kvstudy.cli", "validate", "study.yaml"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    # 2 models x 16 tasks; RULER's 13 built, 8 samples each at 4k; LooGLE's 3 read the hub at job start
    assert "32 task cells, 208 samples built" in p.stdout, p.stdout
    assert "not built, hub datasets opened at job start: longdep_qa, shortdep_cloze, shortdep_qa" in p.stdout
    # LooGLE's entries as they are, on local stand-ins of simonjegou/loogle's configs: built too (test part, 4k)
    for name, t in study["tasks"].items():
        if t.get("source") == "simonjegou/loogle":
            t["source"] = str(ROOT / "tests" / "data" / "loogle" / f"{name.replace('longdep', 'shortdep')}.jsonl")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    # 3 of the stand-in's 4 documents are the test part (30% of 4 rounds to 1 dev document): 6 rows per task
    assert "32 task cells, 244 samples built" in p.stdout and "not built" not in p.stdout, p.stdout
