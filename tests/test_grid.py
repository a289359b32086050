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
    kv = [j for j in js if j.task == "kv"][0]
    assert kv.task_kind == "kv_retrieval" and kv.task_params == {"n_pairs": 8}
    assert "results/raw/tiny/kv/256/no_press/seed0.json" in paths


def test_jobs_record_the_stop_words_their_task_uses(study):
    """A long-output task stops at end of sequence only, whatever eval.stop_words says; its jobs record that (so
    the raw result says what generation used, and a change of the study's stop words reruns only the tasks that
    use them)."""
    study["tasks"]["route"] = {"kind": "path_traversal"}
    study["eval"] = {"stop_words": ["\n"]}
    by_task = {j.task: list(j.stop_words) for j in jobs(validate(study))}
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
    assert {j.press for j in kept if j.task == "kv"} == {"no_press", "knorm-cr0.50"}


def test_eval_groups_are_press_entries_by_default(study):
    from kvstudy.grid import RAW, eval_groups

    groups = eval_groups(validate(study))
    assert [(g.name, g.presses, g.cell) for g in groups] == [
        ("eval_no_press", ("no_press",), None),
        ("eval_snapkv", ("snapkv-cr0.50-ws16", "snapkv-cr0.50-ws32", "snapkv-cr0.90-ws16", "snapkv-cr0.90-ws32"), None),
        ("eval_knorm", ("knorm-cr0.50",), None),
    ]
    assert groups[2].paths(RAW) == ["results/raw/{model}/{task}/{length}/knorm-cr0.50/seed{seed}.json"]


def test_a_methods_later_entry_is_a_group_of_its_own_and_renames_nothing(study):
    from kvstudy.grid import eval_groups

    before = {g.name: g.presses for g in eval_groups(validate(study))}
    study["presses"].insert(1, {"method": "knorm", "compression_ratio": 0.9})
    after = {g.name: g.presses for g in eval_groups(validate(study))}
    assert after == {**before, "eval_knorm": ("knorm-cr0.90",), "eval_knorm_2": ("knorm-cr0.50",)}


def test_cell_groups_hold_every_variant_and_variant_mode_has_none(study):
    from kvstudy.grid import eval_groups

    study["eval"] = {"group": "cell"}
    [cell] = eval_groups(validate(study))
    assert cell.name == "eval_cell" and len(cell.presses) == 6 and cell.cell is None
    study["eval"] = {"group": "variant"}
    assert eval_groups(validate(study)) is None


def test_cells_that_exclude_thins_get_a_literal_group(study):
    """Every job is in exactly one group's outputs, no excluded job in any: the common subset of an entry gets the
    wildcard rule, a thinned cell a rule of its own (literal paths, which Snakemake prefers)."""
    from kvstudy.grid import RAW, eval_groups

    study["exclude"] = [{"task": "kv", "length": 512, "press": "snapkv-cr0.90*"}, {"press": "*-ws32"}]
    config = validate(study)
    groups = eval_groups(config)
    snap = [g for g in groups if g.name.startswith("eval_snapkv")]
    assert [(g.name, g.presses, g.cell) for g in snap] == [
        ("eval_snapkv", ("snapkv-cr0.50-ws16", "snapkv-cr0.90-ws16"), None),
        ("eval_snapkv_c0", ("snapkv-cr0.50-ws16",), ("tiny", "kv", 512, 0)),
    ]
    assert snap[1].paths(RAW) == ["results/raw/tiny/kv/512/snapkv-cr0.50-ws16/seed0.json"]
    cells = {(j.model, j.task, j.length, j.seed) for j in jobs(config)}
    produced = []
    for g in groups:
        for cell in ([g.cell] if g.cell else [c for c in cells if not any(o.cell == c for o in groups
                                                                             if o.name.startswith(g.name + "_c"))]):
            produced += [p.format(model=cell[0], task=cell[1], length=cell[2], seed=cell[3]) for p in g.paths(RAW)]
    assert sorted(produced) == sorted(raw_path(j) for j in jobs(config))


def test_searched_entries_are_not_grouped(study):
    from kvstudy.grid import eval_groups

    study["presses"].append({"method": "snapkv", "compression_ratio": 0.5,
                             "search": {"params": {"window_size": [16, 32]}, "mode": ["global"]}})
    names = [g.name for g in eval_groups(validate(study))]
    assert names == ["eval_no_press", "eval_snapkv", "eval_knorm"]
