"""Fetching models and data before the eval jobs (kvstudy.fetch, workflow/rules/fetch.smk), tested against a local
stand-in for the hub (tests/hubserver.py) with huggingface_hub's own download code: a model and a dataset fetched
at a revision, an interrupted download resumed, a wrong revision refused in one line, a token that reaches no
output, data archives unpacked, and eval jobs that find everything offline with the commit in their result."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from archs import make_model
from conftest import ROOT, copy_workflow
from hubserver import StandInHub

MODEL = "org/tiny-llama"
DATASET = "org/tiny-qa"
TOKEN = "hf_standin_secret_token_123"


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


QA_ROWS = [json.loads(line) for line in (ROOT / "tests/data/kvpress_format.jsonl").read_text().splitlines()[:3]]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The stand-in hub: a random-weight Llama (two commits), a QA dataset, a gated copy of the model, HELMET-like
    and GitHub-like archives."""
    src = Path(make_model("llama", tmp_path_factory.mktemp("model") / "llama"))
    files = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    h = StandInHub()
    h.old_commit = h.add(MODEL, {**files, "README.md": b"old"})
    # formats kvstudy never loads: left out of the snapshot (a second copy of the weights in original/, .bin beside
    # safetensors)
    h.commit = h.add(MODEL, {**files, "pytorch_model.bin": b"b" * 64, "original/consolidated.00.pth": b"p" * 64})
    h.gated_commit = h.add("org/gated", files, token=TOKEN)
    qa = "\n".join(json.dumps(r) for r in QA_ROWS).encode()
    h.dataset_commit = h.add(DATASET, {"data/test.jsonl": qa, "README.md": b"# tiny qa"}, repo_type="dataset")
    h.helmet_commit = h.add("org/helmet", {"data.tar.gz": _tar({"data/kilt/nq.jsonl": qa, "other/x.txt": b"x"})},
                            repo_type="dataset")
    h.plain["longproc.tar.gz"] = _tar({"LongProc-abc/data/html/page.json": b"[]", "LongProc-abc/README.md": b"r"})
    h.start()
    yield h
    h.stop()


def env_for(hub, cache: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "KVSTUDY_HUB"))}
    return {**env, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf_home"),
            "HF_HUB_DISABLE_XET": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5", **extra}


def fetch(spec: dict, out: Path, env: dict, cwd: Path, chunk: int | None = None) -> subprocess.CompletedProcess:
    """`kvstudy fetch` in a fresh process (huggingface_hub reads HF_ENDPOINT at import). `chunk`: huggingface_hub's
    download chunk size (10 MiB: an interrupted transfer resumes from its last full chunk), made small so that a
    small test file can be cut after a few chunks."""
    hook = f"import huggingface_hub.constants as c; c.DOWNLOAD_CHUNK_SIZE = {chunk}; " if chunk else ""
    code = hook + "from kvstudy.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, "fetch", "--spec", json.dumps(spec), "--out", str(out)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_model_fetched_at_a_revision_and_loaded_offline(hub, tmp_path):
    cache = tmp_path / "hub"
    env = env_for(hub, cache)
    p = fetch({"kind": "model", "repo": MODEL, "revision": "main"}, tmp_path / "stamp.json", env, tmp_path)
    assert p.returncode == 0, p.stderr
    stamp = json.loads((tmp_path / "stamp.json").read_text())
    assert stamp["commit"] == hub.commit
    snapshot = Path(stamp["snapshot"])
    assert (snapshot / "model.safetensors").is_file() and (snapshot / "tokenizer.json").is_file()
    assert not (snapshot / "pytorch_model.bin").exists() and not (snapshot / "original").exists()
    # the same model pinned at its older commit is another snapshot
    p = fetch({"kind": "model", "repo": MODEL, "revision": hub.old_commit}, tmp_path / "old.json", env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "old.json").read_text())["commit"] == hub.old_commit

    # offline, with the hub gone (an endpoint nothing answers): loaded from the cache, the commit recorded
    script = (
        "import json, sys, torch\n"
        "from kvstudy.models import load_model\n"
        "from kvstudy.measure import provenance\n"
        "load_model(sys.argv[1], 'float32', 'sdpa', 'cpu')\n"
        "print(json.dumps(provenance(torch.device('cpu'))['revisions']))\n"
    )
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    for path, commit in ((MODEL, hub.commit), (f"{MODEL}@{hub.old_commit}", hub.old_commit)):
        p = subprocess.run([sys.executable, "-c", script, path], env=offline, capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-2000:]
        assert json.loads(p.stdout.strip().splitlines()[-1]) == {f"model:{MODEL}": commit}


def test_interrupted_download_resumes_with_a_range_request(hub, tmp_path):
    hub.cut_after["model.safetensors"] = 5000
    first = len(hub.requests)
    p = fetch({"kind": "model", "repo": MODEL, "revision": "main"}, tmp_path / "stamp.json",
              env_for(hub, tmp_path / "hub"), tmp_path, chunk=1024)
    assert p.returncode == 0, p.stderr
    gets = [r for r in hub.requests[first:] if r["method"] == "GET" and r["path"].endswith("/model.safetensors")]
    # the second GET continues after the last full chunk of the 5000 bytes the first one got
    assert [g["range"] for g in gets] == [None, "bytes=4096-"]
    snapshot = Path(json.loads((tmp_path / "stamp.json").read_text())["snapshot"])
    served = hub.repos[("models", MODEL)]["commits"][hub.commit]["model.safetensors"]
    assert hashlib.sha256((snapshot / "model.safetensors").read_bytes()).digest() == hashlib.sha256(served).digest()


def test_wrong_revision_is_refused_in_one_line(hub, tmp_path):
    p = fetch({"kind": "model", "repo": MODEL, "revision": "v9.9"}, tmp_path / "stamp.json",
              env_for(hub, tmp_path / "hub"), tmp_path)
    assert p.returncode != 0
    assert p.stderr.strip() == f"fetch model {MODEL} at revision v9.9: no such revision on the hub (a branch, tag or " \
                               "commit of the repository)"
    assert not (tmp_path / "stamp.json").exists()
    p = fetch({"kind": "model", "repo": "org/nothing", "revision": "main"}, tmp_path / "stamp.json",
              env_for(hub, tmp_path / "hub"), tmp_path)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1 and "no such repository" in p.stderr


def test_token_authenticates_and_is_written_nowhere(hub, tmp_path):
    spec = {"kind": "model", "repo": "org/gated", "revision": "main"}
    p = fetch(spec, tmp_path / "no.json", env_for(hub, tmp_path / "hub"), tmp_path)
    assert p.returncode != 0 and "gated" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    first = len(hub.requests)
    p = fetch(spec, tmp_path / "stamp.json", env_for(hub, tmp_path / "hub", HF_TOKEN=TOKEN), tmp_path)
    assert p.returncode == 0, p.stderr
    asked = [r for r in hub.requests[first:] if "org/gated" in r["path"]]
    assert asked and all(r["auth"] == f"Bearer {TOKEN}" for r in asked)
    written = p.stdout + p.stderr + (tmp_path / "stamp.json").read_text()
    assert hub.gated_commit in written and TOKEN not in written


def test_dataset_fetched_and_read_offline(hub, tmp_path):
    cache = tmp_path / "hub"
    env = env_for(hub, cache)
    p = fetch({"kind": "dataset", "repo": DATASET, "revision": "main"}, tmp_path / "stamp.json", env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "stamp.json").read_text())["commit"] == hub.dataset_commit
    script = (
        "import json\n"
        "from kvstudy.tasks.sources import load_records\n"
        "from kvstudy import revisions\n"
        f"rows = load_records({DATASET!r}, split='test', task='qa')\n"
        "print(json.dumps([len(rows), rows[0]['question'], revisions.seen()]))\n"
    )
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
               "HF_DATASETS_CACHE": str(tmp_path / "ds")}
    p = subprocess.run([sys.executable, "-c", script], env=offline, capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    n, question, seen = json.loads(p.stdout.strip().splitlines()[-1])
    assert (n, question) == (len(QA_ROWS), QA_ROWS[0]["question"])
    assert seen == {f"dataset:{DATASET}": hub.dataset_commit}


def test_data_archives_unpacked_under_their_root(hub, tmp_path):
    from kvstudy.revisions import MARKER

    env = env_for(hub, tmp_path / "hub")
    spec = {"kind": "data", "name": "helmet", "hub": "org/helmet", "files": ["data.tar.gz"], "root": "data",
            "dest": "data/helmet"}
    p = fetch(spec, tmp_path / "helmet.json", env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "data/helmet/kilt/nq.jsonl").is_file() and not (tmp_path / "data/helmet/other").exists()
    marker = json.loads((tmp_path / "data/helmet" / MARKER).read_text())
    assert marker == {"name": "helmet", "hub": "org/helmet", "revision": "main", "commit": hub.helmet_commit}

    archive = hub.plain["longproc.tar.gz"]
    url = {"kind": "data", "name": "longproc", "url": f"{hub.url}/files/longproc.tar.gz", "root": "LongProc-*/data",
           "dest": "data/longproc"}
    # a partial download of an earlier, interrupted run is continued with a range request
    partial = tmp_path / "resources/downloads/longproc-longproc.tar.gz.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(archive[:100])
    first = len(hub.requests)
    p = fetch({**url, "sha256": hashlib.sha256(archive).hexdigest()}, tmp_path / "lp.json", env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert [r["range"] for r in hub.requests[first:]] == ["bytes=100-"]
    (tmp_path / "lp.json").unlink()
    (tmp_path / "resources/downloads/longproc-longproc.tar.gz").unlink()
    bad = fetch({**url, "sha256": "0" * 64}, tmp_path / "lp.json", env, tmp_path)
    assert bad.returncode != 0 and "is not the pinned" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    p = fetch({**url, "sha256": hashlib.sha256(archive).hexdigest()}, tmp_path / "lp.json", env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "data/longproc/html/page.json").is_file() and not (tmp_path / "data/longproc/README.md").exists()
    assert json.loads((tmp_path / "lp.json").read_text())["commit"] == "sha256:" + hashlib.sha256(archive).hexdigest()

    # a task reading a fetched file records the entry's commit
    script = ("import json\nfrom kvstudy.tasks.sources import load_records\nfrom kvstudy import revisions\n"
              "load_records('data/helmet/kilt/nq.jsonl')\nprint(json.dumps(revisions.seen()))\n")
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {"data:helmet": hub.helmet_commit}, p.stderr


STUDY = f"""
study: fetched
models:
  llama: {{path: {MODEL}, dtype: float32}}
tasks:
  qa: {{kind: hf_qa, source: {DATASET}, n_samples: 2, max_new_tokens: 4}}
  nq: {{kind: hf_qa, source: data/helmet/kilt/nq.jsonl, n_samples: 2, max_new_tokens: 4}}
data:
  helmet: {{hub: org/helmet, files: [data.tar.gz], root: data, dest: data/helmet}}
lengths: [256]
presses:
  - method: no_press
  - {{method: knorm, compression_ratio: 0.5}}
figures: [delta_heatmap]
"""


def test_study_fetches_first_and_its_eval_jobs_run_offline(hub, tmp_path):
    """`snakemake fetch` with the hub up, then the raw results with the hub gone: the eval jobs find model, hub
    dataset and data archive in place, and each result records the commits it read."""
    wd = copy_workflow(tmp_path)
    (wd / "study.yaml").write_text(STUDY)
    env = env_for(hub, tmp_path / "hubcache", HF_DATASETS_CACHE=str(tmp_path / "ds"))
    snake = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "study.yaml"]
    p = subprocess.run(snake[:3] + ["-n", "results/raw/llama/qa/256/no_press/seed0.json"] + snake[3:], cwd=wd,
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", p.stdout, re.M))
    assert counts == {"fetch_model": "1", "fetch_dataset": "1", "eval_no_press": "1", "total": "3"}, p.stdout[-2000:]
    p = subprocess.run(snake[:3] + ["fetch"] + snake[3:], cwd=wd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    offline_env = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing answers there
    raws = ["results/raw/llama/qa/256/no_press/seed0.json", "results/raw/llama/nq/256/no_press/seed0.json"]
    p = subprocess.run(snake[:3] + raws + snake[3:], cwd=wd, env=offline_env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    qa, nq = (json.loads((wd / r).read_text()) for r in raws)
    assert qa["status"] == "ok" and nq["status"] == "ok", (qa["error"], nq["error"])
    assert qa["job"]["model_path"] == MODEL
    assert qa["provenance"]["revisions"] == {f"model:{MODEL}": hub.commit, f"dataset:{DATASET}": hub.dataset_commit}
    assert nq["provenance"]["revisions"] == {f"model:{MODEL}": hub.commit, "data:helmet": hub.helmet_commit}
    stamps = sorted(str(p.relative_to(wd)) for p in (wd / "resources/fetched").rglob("*.json"))
    assert stamps == ["resources/fetched/data/helmet.json", "resources/fetched/dataset/org--tiny-qa.json",
                      "resources/fetched/model/org--tiny-llama.json"]



def test_plan_of_helmet_reasoning_names_what_each_cell_reads():
    """A cite cell waits for its model, the NLI judge and both data entries it reads; an ICL cell for its hub
    dataset; a generated task for its model only. A revision on a built-in model is refused."""
    import yaml

    from kvstudy.config import ConfigError, validate
    from kvstudy.fetch import plan

    study = validate(yaml.safe_load((ROOT / "studies/helmet_reasoning.yaml").read_text()))
    p = plan(study)
    llama = "resources/fetched/model/meta-llama--Llama-3.1-8B-Instruct.json"
    assert p.needs[("llama31_8b", "cite")] == [llama, "resources/fetched/data/helmet.json",
                                               "resources/fetched/data/helmet_prompts.json",
                                               "resources/fetched/model/google--t5_xxl_true_nli_mixture.json"]
    assert p.needs[("llama31_8b", "icl_banking77")] == [llama, "resources/fetched/dataset/PolyAI--banking77.json"]
    assert p.needs[("llama31_8b", "niah")] == [llama, "resources/fetched/data/pg_essays.json"]  # its essays
    assert p.needs[("llama31_8b", "recall_jsonkv")] == [llama]  # a generated task: its model only
    assert len(p.of("model")) == 6 and len(p.of("dataset")) == 2 and len(p.of("data")) == 4
    pinned = {**study, "models": {"m": {"path": "Qwen/Qwen3-8B", "revision": "abc"}}}
    assert "resources/fetched/model/Qwen--Qwen3-8B@abc.json" in plan(pinned).of("model")
    with pytest.raises(ConfigError, match=r"^config error: models.tiny.revision: builtin:tiny-retrieval is not a hub"):
        validate({"models": {"tiny": {"path": "builtin:tiny-retrieval", "revision": "main"}}, "tasks": {"niah": {}},
                  "lengths": [256], "presses": [{"method": "no_press"}]})


def test_provenance_page_lists_the_commits_the_jobs_read(tmp_path):
    from kvstudy.provenance import raw_provenance

    commit = "a" * 40
    for i, revisions in enumerate(({f"model:{MODEL}": commit}, {f"model:{MODEL}": commit}, {})):
        (tmp_path / f"{i}.json").write_text(json.dumps({"provenance": {"device": "cpu", "revisions": revisions}}))
    seen = raw_provenance(sorted(tmp_path.glob("*.json")))
    assert seen[seen.field == f"revision model:{MODEL}"][["value", "jobs"]].values.tolist() == [[commit, 2]]
