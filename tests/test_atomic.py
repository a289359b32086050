"""kvstudy.atomic: the one writer of results, tables and reports (JSON, CSV and text such as LaTeX)."""

from __future__ import annotations

import json
import os
import stat

import pandas as pd
import pytest

from kvstudy import atomic


def names(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_text_csv_and_json_land_whole(tmp_path):
    atomic.write_text_atomic("\\begin{tabular}\n", tmp_path / "t" / "choices.tex")
    atomic.write_csv_atomic(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), tmp_path / "t" / "c.csv")
    atomic.write_atomic({"k": [1, 2]}, tmp_path / "t" / "r.json")
    assert (tmp_path / "t" / "choices.tex").read_text() == "\\begin{tabular}\n"
    assert pd.read_csv(tmp_path / "t" / "c.csv").to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
    assert json.loads((tmp_path / "t" / "r.json").read_text()) == {"k": [1, 2]}
    assert names(tmp_path / "t" / "r.json") == ["c.csv", "choices.tex", "r.json"]  # no temp file left


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "choices.tex"
    atomic.write_text_atomic("old\n", out)

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic.write_text_atomic("new\n", out)
    assert out.read_text() == "old\n" and names(out) == ["choices.tex"]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_mode_is_what_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic.write_text_atomic("x", tmp_path / "f.txt")
        with open(tmp_path / "g.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "f.txt") == mode(tmp_path / "g.txt") == 0o666 & ~umask
