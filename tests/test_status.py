import json
import types

import pytest

from kvstudy.cli import main
from kvstudy.config import validate
from kvstudy.grid import LOG, jobs, raw_path
from kvstudy.status import grid_status, incomplete_outputs, locked_outputs, render, retry_failed
from rawfixtures import raw_for


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def mark_incomplete(root, output):
    """An incomplete marker where Snakemake's own file persistence puts it (snakemake.persistence.file)."""
    from snakemake.persistence.file import FilePersistence

    fake = types.SimpleNamespace(_fetch_max_len=lambda subject: 255)
    marker = FilePersistence._record_path(fake, str(root / ".snakemake" / "incomplete"), output)
    write(root / marker, json.dumps({"external_jobid": None}))


def lock(root, outputs):
    write(root / ".snakemake" / "locks" / "0.output.lock", "\n".join(outputs) + "\n")


@pytest.fixture
def grid(study, tmp_path):
    """Jobs 0-6 in every state: done, oom, failed, running, interrupted (marker), interrupted (log only),
    interrupted (a result Snakemake still marks incomplete); the rest missing."""
    cfg = validate(study)
    js = jobs(cfg)
    for job, status in ((js[0], "ok"), (js[1], "oom"), (js[2], "failed"), (js[6], "ok")):
        write(tmp_path / raw_path(job), json.dumps(raw_for(job, status)))
    for job in js[2:6]:
        write(tmp_path / LOG.format(**job.as_dict()), "Traceback ...")
    for job in (js[3], js[4], js[6]):
        mark_incomplete(tmp_path, raw_path(job))
    return cfg, js, tmp_path


def test_status_tells_every_state_apart(grid):
    cfg, js, root = grid
    lock(root, [raw_path(js[3]), raw_path(js[7])])  # a snakemake runs job 3, job 7 is queued
    states = grid_status(cfg, root)
    got = [states[raw_path(j)] for j in js[:8]]
    assert got == ["done", "oom", "failed", "running", "interrupted", "interrupted", "interrupted", "missing"]
    assert sum(s == "missing" for s in states.values()) == len(js) - 7
    text = render(cfg, states)
    assert (f"done=1 (.)  oom=1 (O)  failed=1 (F)  running=1 (R)  interrupted=3 (I)  missing={len(js) - 7} (-)  "
            f"invalid=0 (X)  total={len(js)}") in text
    assert "tiny/niah/256/seed0" in text and "snapkv-cr0.90-ws32" in text


def test_without_a_running_snakemake_started_jobs_are_interrupted(grid):
    cfg, js, root = grid
    states = grid_status(cfg, root)
    assert states[raw_path(js[3])] == "interrupted" and states[raw_path(js[2])] == "failed"


def test_markers_are_read_back_as_snakemake_writes_them(tmp_path):
    long = "results/raw/" + "m" * 300 + "/niah/256/no_press/seed0.json"  # longer than a file name may be
    for output in ("results/raw/tiny/niah/256/no_press/seed0.json", long):
        mark_incomplete(tmp_path, output)
    (tmp_path / ".snakemake" / "incomplete" / "migration_underway").touch()
    assert incomplete_outputs(tmp_path) == {"results/raw/tiny/niah/256/no_press/seed0.json", long}
    lock(tmp_path, ["a", "b"])
    assert locked_outputs(tmp_path) == {"a", "b"}


def test_retry_failed_removes_failed_results_and_keeps_logs(grid, capsys, tmp_path):
    cfg, js, root = grid
    assert retry_failed([raw_path(j) for j in js], root) == [raw_path(js[2])]
    assert not (root / raw_path(js[2])).exists() and (root / LOG.format(**js[2].as_dict())).exists()
    assert (root / raw_path(js[0])).exists() and (root / raw_path(js[1])).exists()
    assert grid_status(cfg, root)[raw_path(js[2])] == "interrupted"  # its log is left: it ran and stopped


def test_retry_failed_from_the_command_line(grid, study, monkeypatch, capsys):
    import yaml

    cfg, js, root = grid
    (root / "study.yaml").write_text(yaml.safe_dump(study))
    main(["status", str(root / "study.yaml"), "--root", str(root), "--retry-failed"])
    out = capsys.readouterr().out
    assert f"removed failed result {raw_path(js[2])}" in out and "1 failed result(s) removed" in out
    assert "failed=0 (F)" in out
    lock(root, [raw_path(js[3])])
    write(root / raw_path(js[5]), json.dumps(raw_for(js[5], "failed")))
    with pytest.raises(SystemExit, match="a snakemake holds locks"):  # never under a running snakemake
        main(["status", str(root / "study.yaml"), "--root", str(root), "--retry-failed"])
    assert (root / raw_path(js[5])).exists()
