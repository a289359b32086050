from kvstudy.config import validate
from kvstudy.grid import jobs, raw_path, slug, variants


def test_slug_is_readable_and_deterministic():
    assert slug("no_press", None, {}) == "no_press"
    assert slug("snapkv", 0.5, {"window_size": 64}) == "snapkv-cr0.50-ws64"
    assert slug("expected_attention", 0.25, {"use_covariance": False, "n_sink": 4}) == (
        "expected_attention-cr0.25-ns4-ucoff"
    )


def test_lists_expand_into_the_cartesian_product(study):
    vs = variants(validate(study))
    names = [v["press"] for v in vs]
    assert names == [
        "no_press",
        "snapkv-cr0.50-ws16",
        "snapkv-cr0.50-ws32",
        "snapkv-cr0.90-ws16",
        "snapkv-cr0.90-ws32",
        "knorm-cr0.50",
    ]
    assert vs[0]["compression_ratio"] == 0.0
    assert vs[3]["params"] == {"window_size": 16} and vs[3]["compression_ratio"] == 0.9


def test_jobs_cover_the_grid_once(study):
    js = jobs(validate(study))
    assert len(js) == 1 * 2 * 2 * 6 * 1
    paths = {raw_path(j) for j in js}
    assert len(paths) == len(js)
    kv = [j for j in js if j["task"] == "kv"][0]
    assert kv["task_kind"] == "kv_retrieval" and kv["task_params"] == {"n_pairs": 8}
    assert "results/raw/tiny/kv/256/no_press/seed0.json" in paths


def test_jobs_record_the_stop_words_their_task_uses(study):
    """A long-output task stops at end of sequence only, whatever eval.stop_words says; its jobs record that (so
    the raw result says what generation used, and a change of the study's stop words reruns only the tasks that
    use them)."""
    study["tasks"]["route"] = {"kind": "path_traversal"}
    study["eval"] = {"stop_words": ["\n"]}
    by_task = {j["task"]: j["stop_words"] for j in jobs(validate(study))}
    assert by_task == {"niah": ["\n"], "kv": ["\n"], "route": []}


def test_variant_options_are_suffixes_and_leave_other_slugs_alone():
    assert slug("snapkv", 0.5, {"window_size": 64, "query_aware": True}) == "snapkv-cr0.50-ws64-qa"
    assert slug("snapkv", 0.5, {"window_size": 64, "query_aware": False}) == "snapkv-cr0.50-ws64"
    assert slug("knorm", 0.5, {"quantization": "int4"}) == "knorm-cr0.50+int4"
    assert slug("knorm", 0.5, {"quantization": None}) == "knorm-cr0.50"
    assert slug("cab", 0.5, {"query_aware": True, "quantization": "int8"}) == "cab-cr0.50-qa+int8"
    assert slug("int4", None, {}) == "int4"


def test_variant_options_expand_like_parameters(study):
    study["presses"] = [{"method": "knorm", "compression_ratio": 0.5, "quantization": [None, "int4"],
                         "query_aware": [False, True]}]
    names = [v["press"] for v in variants(validate(study))]
    assert names == ["knorm-cr0.50", "knorm-cr0.50-qa", "knorm-cr0.50+int4", "knorm-cr0.50-qa+int4"]


def test_an_exclude_entry_matches_when_every_key_does():
    from kvstudy.grid import matches

    job = {"model": "m", "task": "cwe", "length": 512, "seed": 0, "method": "snapkv", "press": "snapkv-cr0.90-ws16"}
    assert matches({"task": "cwe", "length": [512, 1024]}, job)
    assert not matches({"task": "cwe", "length": 1024}, job)  # one key that does not match: kept
    assert matches({"press": "snapkv-cr0.9*"}, job) and matches({"press": ["knorm*", "*-ws16"]}, job)
    assert not matches({"press": "snapkv"}, job)  # a glob matches the whole name
    assert matches({"model": "m", "method": "snapkv", "seed": 0}, job)


def test_excluded_jobs_leave_the_grid(study):
    study["exclude"] = [{"task": "kv", "press": "snapkv-*"}]
    config = validate(study)
    kept, every = jobs(config), jobs(config, exclude=False)
    assert len(every) - len(kept) == 2 * 4  # kv's snapkv variants at both lengths
    assert {j["press"] for j in kept if j["task"] == "kv"} == {"no_press", "knorm-cr0.50"}
