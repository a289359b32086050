import pytest

from kvstudy.config import ConfigError, load, validate
from kvstudy.grid import jobs


def test_valid_config_gets_defaults(study):
    cfg = validate(study)
    assert cfg["seeds"] == [0]
    assert cfg["eval"]["device"] == "auto"
    assert cfg["figures"] == ["score_vs_ratio", "pareto_memory", "niah_heatmap"]
    assert "seeds" not in study  # the caller's dict is not modified


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
