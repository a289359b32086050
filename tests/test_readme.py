"""The README's commands, pasted as written.

The own-study block runs line by line, literally, in a copy of the workflow whose `config.yaml` is a small study
(the README says to copy `config.yaml` and edit it; here the copy is already edited). The study headers'
commands are checked for the argument order that broke them (`--configfile` takes several files, so a target
after it is read as a config).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, copy_workflow

README = (ROOT / "README.md").read_text()
SMALL_STUDY = {
    "study": "readme",
    "models": {"tiny": {"path": TINY, "dtype": "float32"}},
    "tasks": {"niah": {"n_samples": 4, "n_depths": 2}},
    "lengths": [256],
    "presses": [{"method": "no_press"}, {"method": "snapkv", "compression_ratio": 0.5}],
    "figures": ["score_vs_ratio"],
}


def bash_block(after: str) -> list[str]:
    """Command lines of the first ```bash block after the line `after`."""
    rest = README.split(after, 1)[1]
    block = re.search(r"```bash\n(.*?)```", rest, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def shell(line: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    return subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.e2e
def test_own_study_block_runs_as_written(tmp_path):
    wd = copy_workflow(tmp_path)
    (wd / "config.yaml").write_text(yaml.safe_dump(SMALL_STUDY))
    lines = bash_block("## Your own study")
    assert any("--configfile my_study.yaml" in x for x in lines)
    for line in lines:
        p = shell(line, wd)
        assert p.returncode == 0, f"README line failed: {line}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        if line.startswith("kvstudy status"):
            assert "done=2" in p.stdout, p.stdout
    assert (wd / "figures/all").exists() and (wd / "report.html").exists()
    assert len(list((wd / "results/raw/tiny/niah/256").glob("*/seed0.json"))) == 2


def commands(text: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r"snakemake [^`\n]*", text)]


@pytest.mark.parametrize("where", ["README.md", "Snakefile", *sorted(p.name for p in (ROOT / "studies").glob("*.yaml"))])
def test_no_target_after_configfile(where):
    """`snakemake ... --configfile X figures/all` reads figures/all as a second config file."""
    path = ROOT / where if (ROOT / where).exists() else ROOT / "studies" / where
    cmds = commands(path.read_text())
    for cmd in cmds:
        args = cmd.split()
        if "--configfile" in args:
            after = args[args.index("--configfile") + 1 :]
            assert len([a for a in after if not a.startswith("-")]) <= 1, f"{where}: {cmd}"
    if where.endswith(".yaml"):
        assert any("--configfile studies/" + where in c for c in cmds), f"{where}: no run command in its header"


def test_readme_task_examples_are_tasks_with_their_parameters():
    """The README's block of task entries (tasks on real data) names registered kinds with parameters they take,
    values they accept: each entry builds its task (no data is read here; the files live on a cluster)."""
    from kvstudy.tasks import get_task

    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if "niah_mk3:" in b)
    tasks = yaml.safe_load(block)["tasks"]
    assert {"rag_nq", "wikitext", "html_to_tsv"} <= set(tasks)
    for name, entry in tasks.items():
        params = {k: v for k, v in entry.items() if k != "kind"}
        get_task(entry.get("kind", name), params)  # raises on an unknown kind, parameter or value
