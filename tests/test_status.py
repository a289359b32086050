import json

from kvstudy.config import validate
from kvstudy.grid import LOG, jobs, raw_path
from kvstudy.status import grid_status, render


def test_status_tells_done_oom_failed_and_missing(study, tmp_path):
    cfg = validate(study)
    js = jobs(cfg)
    done, oom, failed = js[0], js[1], js[2]
    for job, status in ((done, "ok"), (oom, "oom")):
        p = tmp_path / raw_path(job)
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"status": status}))
    log = tmp_path / LOG.format(**failed)
    log.parent.mkdir(parents=True)
    log.write_text("Traceback ...")

    states = grid_status(cfg, tmp_path)
    assert states[raw_path(done)] == "done" and states[raw_path(oom)] == "oom"
    assert states[raw_path(failed)] == "failed"
    assert sum(s == "missing" for s in states.values()) == len(js) - 3
    text = render(cfg, states)
    assert f"done=1 (.)  oom=1 (O)  failed=1 (F)  missing={len(js) - 3} (-)  total={len(js)}" in text
    assert "tiny/niah/256/seed0" in text and "snapkv-cr0.90-ws32" in text
