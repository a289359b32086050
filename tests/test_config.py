import pytest

from kvstudy.config import ConfigError, load, validate
from kvstudy.grid import jobs


def test_valid_config_gets_defaults(study):
    cfg = validate(study)
    assert cfg["seeds"] == [0]
    assert cfg["eval"]["device"] == "auto"
    assert cfg["figures"] == ["score_vs_ratio", "pareto_memory", "niah_heatmap"]
    assert "seeds" not in study  # the caller's dict is not modified


def test_defaults_are_filled_once_from_the_schema(study):
    """A study without seeds, eval, timing, exclude or a model's dtype / attention validates to a config that has
    them, with the schema's values; the grid reads them from there (no fallback of its own)."""
    from kvstudy.config import load_schema

    schema = load_schema()["properties"]
    study["models"]["other"] = {"path": study["models"]["tiny"]["path"], "dtype": "float32"}
    cfg = validate(study)
    assert cfg["seeds"] == schema["seeds"]["default"] == [0]
    assert cfg["exclude"] == [] and cfg["resources"] == {} and cfg["data"] == {}
    eval_props = schema["eval"]["properties"]
    assert cfg["eval"] == {k: eval_props[k]["default"] for k in ("device", "threads", "group", "stop_words")}
    assert cfg["eval"]["stop_words"] == [".", "\n"]
    model_props = schema["models"]["additionalProperties"]["properties"]
    assert cfg["models"]["tiny"] == {"path": study["models"]["tiny"]["path"], "dtype": model_props["dtype"]["default"],
                                     "attn_implementation": model_props["attn_implementation"]["default"]}
    assert cfg["models"]["other"]["dtype"] == "float32"  # a given value is kept
    assert cfg["timing"]["repeats"] == schema["timing"]["properties"]["repeats"]["default"]
    assert cfg["tasks"] == study["tasks"]  # task parameters keep the task's own defaults: job params unchanged
    for j in jobs(cfg):
        assert (j.seed, j.stop_words) == (0, (".", "\n"))
        assert (j.dtype, j.attn_implementation) == ({"tiny": "auto", "other": "float32"}[j.model], "sdpa")
        assert j.chat_template is None  # no model set one


def test_defaults_fill_no_key_whose_absence_means_something():
    """Every `default:` of the schema lies where validation fills it (properties and map entries, not list items),
    and none on a task parameter or a model's chat_template (a filled one would change every job's parameters)."""
    from kvstudy.config import load_schema

    def walk(node, where, in_list):
        if isinstance(node, dict):
            if "default" in node:
                yield where, in_list
            for k, v in node.items():
                yield from walk(v, f"{where}.{k}", in_list or k == "items")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{where}[{i}]", in_list)

    found = list(walk(load_schema(), "", False))
    assert found and not any(w.startswith(".properties.tasks.") or w.endswith(".chat_template") for w, _ in found)
    outside = [w for w, in_list in found if in_list]
    assert all(".properties.presses.items.properties.search." in w for w in outside), outside


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda c: c["presses"].append({"method": "snapkvv", "compression_ratio": 0.5}), "presses[3].method", "snapkvv"),
        (lambda c: c["presses"][2].update(compression_ratio=1.5), "presses[2].compression_ratio", "1.5"),
        (lambda c: c["presses"][1].update(windowsize=3), "presses[1].windowsize", "no parameter"),
        (lambda c: c["presses"][2].pop("compression_ratio"), "presses[2].compression_ratio", "required"),
        (lambda c: c["tasks"].update(nope={}), "tasks.nope", "unknown task kind"),
        (lambda c: c["tasks"]["niah"].update(n_needles=3), "tasks.niah.n_needles", "no parameter"),
        (lambda c: c["models"]["tiny"].update(path="builtin:huge"), "models.tiny.path", "huge"),
        (lambda c: c["models"]["tiny"].update(path="./no/such/dir"), "models.tiny.path", "does not exist"),
        (lambda c: c.update(lengths=[0]), "lengths[0]", "minimum"),
        (lambda c: c.update(lengths="1024"), "lengths", "array"),
        (lambda c: c.update(figures=["pie_chart"]), "figures[0]", "pie_chart"),
        (lambda c: c.update(colour="red"), "(top level)", "colour"),
        (lambda c: c["presses"].append({"method": "knorm", "compression_ratio": 0.5}), "presses", "same variant"),
        (lambda c: c["presses"].append({"method": "adakv", "compression_ratio": 0.5, "press": "snapk"}),
         "presses[3].press", "unknown press 'snapk'"),
        (lambda c: c["presses"].append({"method": "int4", "quantization": "int8"}), "presses[3].quantization",
         "already is int4"),
        (lambda c: c["presses"].append({"method": "knorm", "compression_ratio": 0.5, "quantization": "int3"}),
         "presses[3].quantization", "int3"),
        (lambda c: c["presses"].append({"method": "decoding", "compression_ratio": 0.5, "quantization": "int4"}),
         "presses[3].quantization", "decoding"),
        (lambda c: c["presses"].append({"method": "duo_attention", "compression_ratio": 0.5, "patterns": "no.tsv"}),
         "presses[3].patterns", "no.tsv"),
        (lambda c: c["presses"].append({"method": "cab", "compression_ratio": 0.5, "local_fraction": 0.9}),
         "presses[3].bridge_fraction", "sum to at most 1"),
        (lambda c: (c["models"]["tiny"].update(attn_implementation="eager"),
                    c["presses"].append({"method": "adakv", "compression_ratio": 0.5})),
         "models.tiny.attn_implementation", "adakv"),
        (lambda c: (c["models"]["tiny"].update(attn_implementation="flex_attention"),
                    c["presses"].append({"method": "adakv", "compression_ratio": 0.5})),
         "models.tiny.attn_implementation", "flex_attention"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(study, mutate, key, words):
    mutate(study)
    with pytest.raises(ConfigError) as e:
        validate(study)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"config error: {key}:"), msg
    assert words in msg


def test_load_reports_bad_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(p)


def test_shipped_configs_validate():
    from conftest import ROOT

    assert len(jobs(load(ROOT / "config.yaml"))) == 1 * 2 * 2 * 16  # model x tasks x lengths x variants
    assert len(jobs(load(ROOT / ".test" / "config.yaml"))) == 1 * 2 * 2 * 4


# --- a study stays data: names, resources, loader options, value ranges (issue 19) -------------------------


@pytest.mark.parametrize("name", [".", "..", ".hidden", "-rf", "a/b", "m" * 101, ""])
@pytest.mark.parametrize("where", ["models", "tasks"])
def test_names_that_are_not_plain_file_names_are_refused(study, where, name):
    entry = {"path": "builtin:tiny-retrieval"} if where == "models" else {"kind": "niah"}
    study[where] = {name: entry}
    with pytest.raises(ConfigError, match=rf"^config error: {where}: "):
        validate(study)


def test_long_and_dotted_names_stay_inside_the_output_folders(study):
    import os

    study["models"] = {"m" * 100: {"path": "builtin:tiny-retrieval"}}
    study["tasks"] = {"a..b": {"kind": "niah"}, "v1.2": {"kind": "niah"}}
    for job in jobs(validate(study)):
        path = os.path.normpath(f"results/raw/{job.model}/{job.task}/{job.length}/{job.press}")
        assert path.startswith("results/raw/") and len(path.split("/")) == 6
    for field, value in (("study", ".."), ("figures", [{"figure": "score_vs_ratio", "name": ".."}])):
        with pytest.raises(ConfigError, match=f"config error: {field}"):
            validate({**study, field: value})


def test_a_long_press_variant_name_is_refused(study, monkeypatch):
    import kvstudy.config

    monkeypatch.setattr(kvstudy.config, "MAX_SLUG", 12)
    with pytest.raises(ConfigError, match=r"config error: presses: variant name snapkv-cr0.50-ws16\.\.\. is 18 "
                                          "characters, more than 12"):
        validate(study)


@pytest.mark.parametrize("resources, words", [
    ({"eval": {"slurm_extra": "$(touch /tmp/pwned)"}}, "resources.eval.slurm_extra: '$(touch /tmp/pwned)' is not "
                                                       "allowed (further sbatch options"),
    ({"eval": {"slurm_extra": "--x; rm -rf ~"}}, "resources.eval.slurm_extra"),
    ({"eval": {"slurm_extra": "`id`"}}, "resources.eval.slurm_extra"),
    ({"eval": {"slurm_partition": "gpu && id"}}, "resources.eval.slurm_partition"),
    ({"eval": {"mem_mb": "32000; id"}}, "resources.eval.mem_mb"),
    ({"eval": {"gres": "gpu:1 --wrap=id"}}, "resources.eval.gres"),
    ({"eval": {"cmd": "x"}}, "resources.eval: Additional properties are not allowed ('cmd' was unexpected)"),
    ({"aggregate": {"mem_mb": 1}}, "resources: Additional properties are not allowed ('aggregate' was"),
    # a task's own resources are checked as eval's, and name a task of the study
    ({"tasks": {"niah": {"slurm_extra": "`id`"}}}, "resources.tasks.niah.slurm_extra"),
    ({"tasks": {"niah": {"cmd": "x"}}}, "resources.tasks.niah: Additional properties are not allowed"),
    ({"tasks": {"nope": {"mem_mb": 1}}}, "resources.tasks.nope: no such task (tasks: "),
])
def test_resources_are_known_keys_with_checked_values(study, resources, words):
    with pytest.raises(ConfigError, match="^config error: ") as e:
        validate({**study, "resources": resources})
    assert words in str(e.value)


def test_ordinary_slurm_resources_pass(study):
    ok = {"eval": {"mem_mb": 32000, "runtime": "2h30m", "cpus_per_task": 4, "gpu": 1, "gpu_model": "h100",
                   "gres": "gpu:a100:2", "constraint": "a100|h100", "qos": "normal", "slurm_account": "my-acc",
                   "slurm_partition": "gpu", "slurm_extra": "--mail-type=END --exclusive --mail-user=me@x.org"}}
    assert validate({**study, "resources": ok})["resources"] == ok
    per_task = {**ok, "tasks": {next(iter(study["tasks"])): {"mem_mb": 96000, "runtime": 480}}}
    assert validate({**study, "resources": per_task})["resources"] == per_task


def test_loader_options_are_not_config_overrides(study):
    study["models"]["tiny"]["config_overrides"] = {"trust_remote_code": True}
    with pytest.raises(ConfigError, match=r"models\.tiny\.config_overrides: 'trust_remote_code' is not allowed"):
        validate(study)


def test_a_yte_template_is_refused_by_kvstudy_validate(study, tmp_path):
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**study, "__use_yte__": True}))
    with pytest.raises(ConfigError, match=r"config error: __use_yte__: .* is a YTE template, code that Snakemake runs"):
        load(tmp_path / "s.yaml")


@pytest.mark.parametrize("mutate, words", [
    (lambda c: c.update(lengths=[100_000_000]), "lengths[0]: 100000000 is greater than the maximum of 4194304"),
    (lambda c: c["presses"][1].update(window_size=["twelve", 32]), "presses[1].window_size: 'twelve' is not an integer"),
    (lambda c: c["presses"][1].update(window_size=-4), "presses[1].window_size: -4 is outside [0, 1000000000]"),
    (lambda c: c["presses"][1].update(window_size=True), "presses[1].window_size: True is not an integer"),
    (lambda c: c["presses"].append({"method": "snapkv", "compression_ratio": 0.5,
                                    "search": {"params": {"window_size": [8, "x"]}}}),
     "presses[3].search.params.window_size: 'x' is not an integer"),
    (lambda c: c["presses"].append({"method": "snapkv", "compression_ratio": 0.5,
                                    "search": {"params": {"window_size": [8, 16]},
                                               "constraints": ["window_size > 2 ** 10 ** 10"]}}),
     "presses[3].search.constraints[0]: 'window_size > 2 ** 10 ** 10': 2 ** 10 ** 10: exponent 10000000000 is above 64"),
    (lambda c: c["presses"].append({"method": "snapkv", "compression_ratio": 0.5,
                                    "search": {"params": {"window_size": list(range(1, 1001)),
                                                          "kernel_size": list(range(1, 1001))}}}),
     "presses[3].search.params: the grid has 1,000,000 candidates"),
    (lambda c: c.update(figures=[{"figure": "score_vs_ratio", "average": "yes"}]), "figures[0].average"),
])
def test_values_out_of_type_or_range_are_refused(study, mutate, words):
    mutate(study)
    with pytest.raises(ConfigError) as e:
        validate(study)
    assert words in str(e.value), str(e.value)


def test_a_search_constraint_cannot_hang_validation(study):
    import signal

    def hung(*_):
        raise AssertionError("validation still computing after 120 s")

    study["presses"].append({"method": "snapkv", "compression_ratio": 0.5, "search": {
        "params": {"window_size": [8, 16]}, "constraints": ["window_size ** window_size ** window_size > 0"]}})
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)  # 8 ** 8 ** 8 computed would take far longer (its bound keeps it from being computed)
    try:
        with pytest.raises(ConfigError, match="no candidate satisfies them"):
            validate(study)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_config_error_carries_its_key():
    """One error type: the key and the message apart, read as the one line `config error: KEY: MESSAGE`; a lower
    layer's `subkey: why` lands below its section's key, once; several preflight problems keep one line each."""
    from kvstudy.tasks.base import TaskParamError

    e = ConfigError("presses[2].method", "unknown press 'x'")
    assert (e.key, e.message, str(e), e.lines) == ("presses[2].method", "unknown press 'x'",
                                                   "config error: presses[2].method: unknown press 'x'", [str(e)])
    below = ConfigError.below("presses[1]", ValueError("window_size: 0 is below 1"))
    assert (below.key, below.message) == ("presses[1].window_size", "0 is below 1")
    assert ConfigError.below("tasks.cite", TaskParamError("judge", "no such model")).key == "tasks.cite.judge"
    assert ConfigError.below("presses[0].search", ValueError("a search needs a dev split")).key == "presses[0].search"
    lines = ["config error: tasks.a: x", "config error: tasks.b: y"]
    several = ConfigError.several(lines)
    assert several.lines == lines and str(several).startswith("config error: tasks.a: x (and 1 more problem")


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["presses"].append({"method": "snapkvv", "compression_ratio": 0.5}), "presses[3].method"),
    (lambda c: c["tasks"]["niah"].update(n_needles=3), "tasks.niah.n_needles"),
    (lambda c: c.update(lengths=[0]), "lengths[0]"),
    (lambda c: c.update(figures=["pie_chart"]), "figures[0]"),
    (lambda c: c.update(exclude=[{"model": "nope"}]), "exclude[0].model"),
])
def test_each_section_names_its_key(study, mutate, key):
    mutate(study)
    with pytest.raises(ConfigError) as e:
        validate(study)
    assert e.value.key == key, str(e.value)
