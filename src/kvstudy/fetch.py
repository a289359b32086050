"""Fetch what a study's jobs read from the hub or the web, once, before any eval job (workflow/rules/fetch.smk).

Three kinds of item, each one local Snakemake job whose output is a stamp, `resources/fetched/{kind}/{item}.json`:
- `model`: a hub model (a study model's `path`, at its `revision`; HELMET cite's NLI judge), with
  `huggingface_hub.snapshot_download` into the hub cache (`HF_HUB_CACHE`). Weights in formats transformers does
  not load here are left out (`original/*` of Llama holds a second, consolidated copy of the weights; `.bin` when
  the repository has `.safetensors`);
- `dataset`: a hub dataset a task names as `source` (at the task's `revision`), into the hub cache; its jobs read
  the snapshot (kvstudy.tasks.sources);
- `data`: an entry of the study's `data:` (files of a hub repository, e.g. HELMET's `data.tar.gz`, or a URL, e.g.
  a GitHub archive at a commit), unpacked into its `dest` folder (archive members under `root` only, no absolute
  or `..` paths), with a marker (kvstudy.revisions.MARKER) saying where the files came from.

Downloads are huggingface_hub's own: resumable (an interrupted transfer continues with a range request, retried),
authenticated with the user's token (HF_TOKEN or `hf auth login`), which never reaches a stamp, a log line, a raw
result or the report. The stamp records the requested revision and the commit it resolved to; eval jobs, which run
with HF_HUB_OFFLINE=1 (common.smk), depend on the stamps of what they read.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

STAMPS = "resources/fetched"
# task parameters naming local data
FILE_PARAMS = ("source", "demo_source", "demo_file", "word_list", "data_dir", "essay_source")
DOWNLOADS = "resources/downloads"  # URL downloads (kept: a rerun resumes or reuses them)
# weight formats kvstudy never loads (PyTorch, transformers): left out of a model snapshot
IGNORE_MODEL = ["original/*", "*.pth", "*.pt", "*.msgpack", "*.h5", "*.ot", "*.onnx", "*.onnx_data", "*.gguf",
                "*.tflite", "*.mlmodel", "coreml/*", "onnx/*", "openvino/*", "flax_model*", "tf_model*", "rust_model*"]


@dataclass
class Plan:
    """The study's fetch jobs (`items`: stamp path -> spec), what each (model, task) cell needs (`needs`) and what
    each model alone needs (`models`: the timing jobs read no task)."""

    items: dict[str, dict] = field(default_factory=dict)
    needs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    models: dict[str, list[str]] = field(default_factory=dict)

    def of(self, kind: str) -> list[str]:
        return sorted(p for p, s in self.items.items() if s["kind"] == kind)


def _is_hub_model(path: str) -> bool:
    from kvstudy.models import resolve, split_revision

    repo = split_revision(path)[0]
    try:
        return resolve(path) == repo and not Path(repo).expanduser().exists()
    except ValueError:
        return False


def jobs_offline(set_it: bool = True) -> str:
    """Make the jobs snakemake starts from here on run offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1); returns
    the HF_HUB_OFFLINE the user gave, for the fetch jobs. Remembered in KVSTUDY_HUB_OFFLINE_GIVEN, so that a job's
    own snakemake process (SLURM), which inherits the changed environment, still reads the user's value."""
    import os

    given = os.environ.setdefault("KVSTUDY_HUB_OFFLINE_GIVEN", os.environ.get("HF_HUB_OFFLINE", "0"))
    if set_it:
        os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return given


def stamp_path(kind: str, repo: str, revision: str = "") -> str:
    """resources/fetched/{kind}/{org--name}[@revision].json"""
    name = repo.replace("/", "--") + (f"@{revision.replace('/', '--')}" if revision else "")
    return f"{STAMPS}/{kind}/{name}.json"


def plan(config: dict) -> Plan:
    """What a validated study fetches and what each (model, task) cell of its grid needs. Cells, not jobs: a
    10,000-job study costs models x tasks lookups here."""
    from kvstudy.models import split_revision

    out = Plan()

    def add(kind: str, repo: str, revision: str) -> str:
        path = stamp_path(kind, repo, revision)
        out.items.setdefault(path, {"kind": kind, "repo": repo, "revision": revision or "main"})
        return path

    data = {name: {"kind": "data", "name": name, **entry} for name, entry in (config.get("data") or {}).items()}
    model_stamp = {}
    for name, m in config["models"].items():
        if _is_hub_model(m["path"]):
            repo, rev = split_revision(m["path"])
            model_stamp[name] = [add("model", repo, m.get("revision") or rev or "")]
    out.models = model_stamp
    task_stamps = {task: _task_stamps(config, task, add, data, out) for task in config["tasks"]}
    for model in config["models"]:
        for task in config["tasks"]:
            out.needs[(model, task)] = model_stamp.get(model, []) + task_stamps[task]
    return out


def _task_stamps(config: dict, task: str, add, data: dict, out: Plan) -> list[str]:
    """Stamps a task's jobs need: its hub dataset(s), its hub judge, the data entries holding its local files."""
    from kvstudy.models import split_revision
    from kvstudy.tasks import get_task
    from kvstudy.tasks.sources import is_hub

    params = dict(config["tasks"][task])
    t = get_task(params.pop("kind", task), params)
    stamps = []
    for key in FILE_PARAMS:
        value = str(getattr(t, key, "") or "")
        if not value:
            continue
        if key in ("source", "demo_source") and is_hub(value):
            stamps.append(add("dataset", value, getattr(t, "revision", "") or ""))
            continue
        for name, entry in data.items():
            if _under(value, entry["dest"]):
                path = f"{STAMPS}/data/{name}.json"
                out.items.setdefault(path, entry)
                stamps.append(path)
    judge = getattr(t, "judge", "")
    if getattr(t, "judged", False) and judge and _is_hub_model(judge):
        repo, rev = split_revision(judge)
        stamps.append(add("model", repo, rev or ""))
    return list(dict.fromkeys(stamps))


def _under(path: str, folder: str) -> bool:
    p, f = Path(path).expanduser(), Path(folder).expanduser()
    return p == f or f in p.parents


def files_to_fetch(config: dict) -> set[str]:
    """Local data paths of tasks that a `data:` entry provides (the preflight does not require them yet)."""
    dests = [e["dest"] for e in (config.get("data") or {}).values()]

    return {str(t[k]) for t in config["tasks"].values() for k in FILE_PARAMS
            if t.get(k) and any(_under(str(t[k]), d) for d in dests)}


def check_config(config: dict) -> list[str]:
    """Problems of `data:` entries and model revisions, one line each (kvstudy.config raises the first)."""
    problems = []
    for name, m in config["models"].items():
        if m.get("revision") and not _is_hub_model(m["path"]):
            problems.append(f"config error: models.{name}.revision: {m['path']} is not a hub model (a revision "
                            "pins a hub repository's branch, tag or commit)")
    entries = config.get("data") or {}
    for name, e in entries.items():
        dest = Path(e["dest"])
        if dest.is_absolute() or ".." in dest.parts or not dest.parts:
            problems.append(f"config error: data.{name}.dest: {e['dest']}: a relative folder inside the study's "
                            "directory")
        for other, o in entries.items():
            if other < name and (_under(e["dest"], o["dest"]) or _under(o["dest"], e["dest"])):
                problems.append(f"config error: data.{name}.dest: {e['dest']} overlaps data.{other}.dest "
                                f"{o['dest']}")
    return problems


# --- running one fetch job -------------------------------------------------------------------------------------

def run(spec: dict, out: Path) -> dict:
    """Fetch one item (a `Plan.items` spec) and write its stamp to `out`; returns the stamp."""
    kind = spec["kind"]
    try:
        stamp = {"model": _model, "dataset": _dataset, "data": _data}[kind](spec)
    except Exception as e:  # noqa: BLE001 -- one line naming the item; the hub's reason, never a token
        what = spec.get("repo") or spec.get("hub") or spec.get("url") or spec.get("name")
        raise FetchError(f"fetch {kind} {what}{_at(spec)}: {_reason(e)}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    return stamp


class FetchError(RuntimeError):
    pass


def _at(spec: dict) -> str:
    hub = spec["kind"] != "data" or spec.get("hub")
    return f" at revision {spec['revision']}" if hub and spec.get("revision") else ""


def _reason(e: Exception) -> str:
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if isinstance(e, RevisionNotFoundError):
        return "no such revision on the hub (a branch, tag or commit of the repository)"
    if isinstance(e, GatedRepoError):
        return "gated: accept its terms on the hub and log in (hf auth login, or HF_TOKEN)"
    if isinstance(e, RepositoryNotFoundError):
        return "no such repository on the hub (or it is private: log in with hf auth login, or HF_TOKEN)"
    if isinstance(e, LocalEntryNotFoundError):
        return "not in the local hub cache, and the hub cannot be reached (or HF_HUB_OFFLINE is set)"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _snapshot(repo: str, repo_type: str, revision: str, allow=None, ignore=None) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # one bar per file would fill the log
    return snapshot_download(repo, repo_type=repo_type, revision=revision, allow_patterns=allow,
                             ignore_patterns=ignore)


def _model_ignore(repo: str, revision: str) -> list[str]:
    """IGNORE_MODEL, plus `*.bin` where the repository has safetensors weights (transformers loads those)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        files = HfApi().list_repo_files(repo, revision=revision)
    except OfflineModeIsEnabled:  # offline: whatever the cache holds
        return IGNORE_MODEL
    return IGNORE_MODEL + (["*.bin"] if any(f.endswith(".safetensors") for f in files) else [])


def _model(spec: dict) -> dict:
    snapshot = _snapshot(spec["repo"], "model", spec["revision"], ignore=_model_ignore(spec["repo"], spec["revision"]))
    return _hub_stamp(spec, snapshot)


def _dataset(spec: dict) -> dict:
    return _hub_stamp(spec, _snapshot(spec["repo"], "dataset", spec["revision"]))


def _hub_stamp(spec: dict, snapshot: str) -> dict:
    files = sorted(p for p in Path(snapshot).rglob("*") if p.is_file())
    return {**spec, "commit": Path(snapshot).name, "snapshot": snapshot,
            "files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def _data(spec: dict) -> dict:
    """A `data:` entry: hub files or a URL, unpacked (archives) or copied into `dest`; a marker says from where."""
    from kvstudy.revisions import MARKER

    if spec.get("hub"):
        snapshot = _snapshot(spec["hub"], spec.get("repo_type", "dataset"), spec.get("revision") or "main",
                             allow=spec.get("files") or None)
        got = sorted(p for p in Path(snapshot).rglob("*") if p.is_file())
        source, commit = {"hub": spec["hub"], "revision": spec.get("revision") or "main"}, Path(snapshot).name
    else:
        got = [_url(spec)]
        source, commit = {"url": spec["url"]}, "sha256:" + _sha256(got[0])
    if not got:
        raise FetchError(f"files {spec.get('files')} match nothing in the repository")
    dest = Path(spec["dest"])
    dest.mkdir(parents=True, exist_ok=True)
    n = sum(_place(p, dest, spec.get("root", "")) for p in got)
    if n == 0:
        raise FetchError(f"nothing under root {spec.get('root')!r} in {', '.join(p.name for p in got)}")
    marker = {"name": spec["name"], **source, "commit": commit}
    (dest / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    return {**spec, "commit": commit, "files_placed": n, "archives": {p.name: _sha256(p) for p in got}}


def _url(spec: dict) -> Path:
    """Download `url` into DOWNLOADS with huggingface_hub's resumable HTTP GET; check `sha256` if pinned."""
    from huggingface_hub.file_download import http_get  # no hub headers: the token goes to the hub only

    name = spec["name"] + "-" + Path(spec["url"].split("?")[0]).name
    target = Path(DOWNLOADS) / name
    if target.exists() and (not spec.get("sha256") or _sha256(target) == spec["sha256"]):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".incomplete")
    with open(part, "ab") as f:  # a partial file from an interrupted run: resumed with a range request
        http_get(spec["url"], f, resume_size=f.tell(), displayed_filename=name)
    if spec.get("sha256") and _sha256(part) != spec["sha256"]:
        got = _sha256(part)
        part.unlink()
        raise FetchError(f"sha256 {got} is not the pinned {spec['sha256']}")
    part.replace(target)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _place(path: Path, dest: Path, root: str) -> int:
    """Unpack an archive's members under `root` (or copy a plain file) into `dest`; returns the files placed."""
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and _inside(m.name, root)]
            for m in members:
                m.name = _relative(m.name, root)
            tar.extractall(dest, members=members, filter="data")  # data filter: no links out, no special files
        return len(members)
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            n = 0
            for info in z.infolist():
                if info.is_dir() or not _inside(info.filename, root):
                    continue
                target = dest / _relative(info.filename, root)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n += 1
        return n
    if root:
        return 0
    shutil.copy(path, dest / path.name)
    return 1


def _inside(member: str, root: str) -> bool:
    parts = Path(member).parts
    if Path(member).is_absolute() or ".." in parts:
        return False
    depth = len(Path(root).parts) if root else 0
    return len(parts) > depth and (not root or fnmatch.fnmatch("/".join(parts[:depth]), root))


def _relative(member: str, root: str) -> str:
    parts = Path(member).parts
    return "/".join(parts[len(Path(root).parts):] if root else parts)
