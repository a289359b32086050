"""kvstudy.report: a report describes the study it was built from, or stops with one line."""

import pandas as pd

from kvstudy.plots.manifest import read_manifest, read_study, write_manifest
from kvstudy.report import check_report_config, config_digest, present_summary, report_mode


def test_config_digest_is_canonical():
    a = {"study": "s", "models": {"m": {"path": "x"}}, "lengths": [1, 2]}
    b = {"lengths": [1, 2], "models": {"m": {"path": "x"}}, "study": "s"}
    assert config_digest(a) == config_digest(b) != config_digest({**a, "lengths": [2, 1]})


def test_manifest_records_the_study(tmp_path):
    fig = tmp_path / "figures" / "a.png"
    fig.parent.mkdir()
    fig.write_bytes(b"png")
    out = tmp_path / "figures" / "all"
    write_manifest([fig], out, tmp_path, {"study": "mine", "config_sha256": "abc"})
    assert read_study(out) == {"study": "mine", "config_sha256": "abc"}
    assert [r["path"] for r in read_manifest(out)] == ["figures/a.png"]


def test_report_config_must_be_the_one_that_built_figures_all(tmp_path):
    built = {"study": "mine", "lengths": [1024]}
    default = {"study": "default", "lengths": [256]}
    out = tmp_path / "all"
    assert check_report_config(built, out).startswith(f"report: {out} does not exist: build study 'mine' first")
    write_manifest([], out, tmp_path, {"study": "mine", "config_sha256": config_digest(built)})
    assert check_report_config(built, out) is None
    line = check_report_config(default, out)
    assert line.startswith(f"report: {out} was built from study 'mine' (config sha256 {config_digest(built)[:12]})")
    assert "not from this config (study 'default'" in line and "\n" not in line
    write_manifest([], out, tmp_path)
    assert "records no study" in check_report_config(built, out)


def test_report_mode_from_the_command_line():
    assert report_mode(["snakemake", "--report", "r.html"]) and report_mode(["snakemake", "--report=r.html"])
    assert not report_mode(["snakemake", "figures/all"])
    assert not report_mode(["snakemake", "--report", "r.html", "--report-after-run", "figures/all"])
    assert not report_mode(["snakemake", "--report-stylesheet", "s.css"])


def test_captions_count_what_is_present(tmp_path):
    rows = [{"model": "m", "task": t, "press": p, "status": s, "n": n}
            for t, p, s, n in (("a", "no_press", "ok", 10), ("a", "x", "failed", None), ("b", "no_press", "ok", 10),
                               ("b", "x", "oom", None))]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    assert present_summary(tmp_path / "results.csv") == (
        "4 eval jobs in results.csv (1 model(s), 2 task(s), 2 press variant(s)): 2 ok with 20 samples scored; "
        "1 ran out of memory (drawn as OOM); 1 failed (drawn as failed; errors in results.csv and the job logs).")
    assert "missing" in present_summary(tmp_path / "nope.csv")
