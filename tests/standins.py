"""Local stand-ins for what the paper-scale studies (studies/*.yaml) read at validation: their hub models and their
data files. Nothing is downloaded.

- `fake_hub(root, repo_ids)`: a hub cache in the `HF_HUB_CACHE` layout (`models--org--name/snapshots/<sha>/` and
  `refs/main`) whose snapshots hold a small config of the model's architecture (tests/archs.py; T5 for the NLI
  judge) and the byte-level BPE tokenizer of tests/bpe.py with a chat template. Weights are not there: validation
  never reads them. Use it with HF_HUB_CACHE=root and HF_HUB_OFFLINE=1.
- `place_data(study, dest)`: the small files of tests/data copied to the paths a study names (HELMET, LongProc, RULER).
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

DATA = Path(__file__).parent / "data"
SHA = "0" * 40
# what each data path of a study is stood in for by (first matching fragment wins)
DATA_FILES = (
    ("helmet/kilt/", ["helmet_nq.jsonl"]),
    ("helmet/msmarco/test_reranking_data_k10_", ["helmet_msmarco_demos.jsonl"]),  # rerank's demos: other queries
    ("helmet/msmarco/", ["helmet_msmarco.jsonl"]),
    ("alce/asqa", ["alce_asqa.json"]),
    ("alce/qampari", ["alce_qampari.json"]),
    ("helmet/prompts/", ["alce_demos.json"]),
    ("helmet_prompts/", ["alce_demos.json"]),
    ("html_to_tsv", ["longproc/html_to_tsv.json", "longproc/page0.html"]),
    ("pseudo_to_code", ["longproc/pseudo_to_code.json"]),
    ("travel_planning_icl_examples", ["longproc/travel_planning_icl_examples.json"]),
    ("travel_planning", ["longproc/travel_planning.json"]),
    ("path_traversal", ["longproc/path_traversal.json"]),
    ("ruler/essays", ["ruler/essays"]),  # a folder: RULER's essay haystack
    ("ruler/squad/", ["ruler/squad.json"]),
    ("ruler/hotpotqa/", ["ruler/hotpotqa.json"]),
)


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from bpe import train_bpe

    return train_bpe(chat=True)


def arch_of(repo_id: str) -> str:
    name = repo_id.lower()
    if "t5" in name:
        return "t5"
    if "pythia" in name or "neox" in name:
        return "gpt_neox"
    for arch in ("qwen3", "mistral", "phi3", "gemma3"):
        if arch in name.replace("-", ""):
            return arch
    return "qwen2" if "qwen" in name else "llama"


def _config(arch: str):
    if arch == "t5":
        from transformers import T5Config

        return T5Config(vocab_size=600, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    from archs import config_for

    # Mistral-7B v0.2/v0.3 attend to the whole context (sliding_window null); v0.1's 4k window is the exception
    return config_for(arch, sliding_window=None) if arch == "mistral" else config_for(arch)


def fake_hub(root: Path, repo_ids) -> Path:
    """A hub cache at `root` holding config + tokenizer of each of `repo_ids`; returns `root`."""
    root = Path(root)
    for repo_id in sorted(set(repo_ids)):
        repo = root / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / SHA
        if (snapshot / "config.json").exists():
            continue
        snapshot.mkdir(parents=True)
        _config(arch_of(repo_id)).save_pretrained(snapshot)
        _tokenizer().save_pretrained(snapshot)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(SHA)
    return root


def local_model(dest: Path, arch: str = "llama") -> str:
    """A local model directory with config and BPE tokenizer but no weights (all validation reads)."""
    dest = Path(dest)
    if not (dest / "config.json").exists():
        _config(arch).save_pretrained(dest)
        _tokenizer().save_pretrained(dest)
    return str(dest)


def hub_models(study: dict) -> list[str]:
    """The hub ids a study's validation reads: its models' paths and HELMET cite's NLI judge."""
    from kvstudy.metrics.nli import DEFAULT_JUDGE

    ids = [m["path"] for m in study["models"].values() if not m["path"].startswith(("builtin:", ".", "/"))]
    ids += [t.get("judge", DEFAULT_JUDGE) for t in study["tasks"].values() if t.get("kind") == "helmet_cite"]
    return ids


def _fit_output_range(path: Path, low: int) -> None:
    """LongProc travel_planning ships one file for all output sizes and a study picks rows by estimated output
    length: the stand-in's rows get one copy per size the study asks for (`low` and up)."""
    rows = json.loads(path.read_text())
    if not any(r.get("estimated_output_tokens", 0) >= low for r in rows):
        rows += [{**r, "id": f"{r.get('id', i)}-{low}", "estimated_output_tokens": low} for i, r in enumerate(rows)]
    path.write_text(json.dumps(rows))


def place_data(study: dict, dest: Path) -> list[Path]:
    """Copy tests/data stand-ins to the local data paths of `study` under `dest`; returns the paths written."""
    out = []
    for t in study["tasks"].values():
        for key in ("source", "demo_file", "essay_source"):
            path = t.get(key, "")
            if not path.startswith("data/"):
                continue
            fragment, files = next((f, fs) for f, fs in DATA_FILES if f in path)
            target = Path(dest) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if (DATA / files[0]).is_dir():
                shutil.copytree(DATA / files[0], target, dirs_exist_ok=True)
            elif not target.exists():  # two tasks may read one file (travel_planning 2k and 8k)
                shutil.copy(DATA / files[0], target)
            if key == "source" and (t.get("min_output_tokens") or t.get("max_output_tokens")):
                _fit_output_range(target, t.get("min_output_tokens", 0))
            for extra in files[1:]:  # files the first one points at (html_path)
                shutil.copy(DATA / extra, target.parent / Path(extra).name)
            out.append(target)
    return out
