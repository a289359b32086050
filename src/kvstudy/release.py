"""A citable release of a study: one folder (`release/{study}/`, rule release in workflow/rules/release.smk) and
its tarball, ready for Zenodo or a hub dataset, from which the figures rebuild with no model, no GPU and nothing
else of the checkout.

Contents: per-job and per-sample results as parquet (`data/results.parquet`, `data/samples.parquet`, the rows of
results.csv and samples.csv), the paper tables (`tables/`, with `timing.csv`, the timing protocol's medians the latency figures read), the analysis (`analysis/`), the figures with their
manifest (`figures/`), the resolved config (`config.yaml`), provenance (`provenance.json`: kvstudy version and
commit, package versions, the models and data at the commits the jobs read, devices and hosts the raw results
report; `provenance.html`, the report's page), RO-Crate 1.1 metadata (`ro-crate-metadata.json`: every file with
its size and sha256, the models and datasets it is based on), a README and `SHA256SUMS`.

`rebuild(bundle, out)` recomputes the analysis (Pareto fronts, significance) from the parquet files and draws every
figure of the study's `figures:` from them; `check` compares the analysis with the bundle's (same rows and values)
and each figure's pixels with the bundle's PNG. The release rule runs both before it finishes, so a bundle that
would not rebuild is never written. The RO-Crate JSON-LD is written here (a few dozen lines) rather than with the
`rocrate` package, which would add a dependency tree for a file this small.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ANALYSIS = ("pareto.csv", "significance.csv", "significance_seeds.csv")


def build(config: dict, out: Path, root: Path = Path(".")) -> Path:
    """Write the bundle of the study `config` (resolved) into the folder `out` from the outputs under `root`,
    check that its figures rebuild from it alone, and write `out.tar.gz`. Returns `out`."""
    root, out = Path(root), Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    for name in ("results", "samples"):
        table = pd.read_csv(root / "results/tables" / f"{name}.csv", keep_default_na=False, na_values=[""])
        table.to_parquet(tmp / "data" / f"{name}.parquet", index=False)
    _copy(root / "results/tables", tmp / "tables", exclude={"results.csv", "samples.csv"})
    _copy(root / "results/analysis", tmp / "analysis")
    _copy(root / "figures", tmp / "figures")
    shutil.copy(root / "results/provenance.html", tmp / "provenance.html")
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    prov = provenance(config, root)
    (tmp / "provenance.json").write_text(json.dumps(prov, indent=1, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory() as work:  # the bundle must rebuild before it is released
        rebuild(tmp, Path(work))
        problems = check(tmp, Path(work))
        if problems:
            raise ValueError("release: the figures do not rebuild from the bundle: " + "; ".join(problems))
    (tmp / "README.md").write_text(_readme(config, prov))
    _crate(config, prov, tmp)
    _sums(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    with tarfile.open(out.with_name(out.name + ".tar.gz"), "w:gz") as tar:
        tar.add(out, arcname=out.name)
    return out


def _copy(src: Path, dst: Path, exclude=frozenset()) -> None:
    for p in sorted(src.rglob("*")):
        if p.is_file() and p.name not in exclude and not p.name.startswith("."):
            (dst / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dst / p.relative_to(src))


# --- provenance --------------------------------------------------------------------------------------------------

def provenance(config: dict, root: Path) -> dict:
    """What the results came from: code, packages, the models and data at their commits, where jobs ran."""
    from kvstudy import __version__
    from kvstudy.grid import jobs, raw_path
    from kvstudy.provenance import git_state, package_versions
    from kvstudy.report import config_digest

    revisions: dict[str, set] = {}
    seen: dict[str, dict[str, int]] = {}
    for job in jobs(config):
        try:
            prov = json.loads((root / raw_path(job)).read_text()).get("provenance") or {}
        except (OSError, ValueError):
            continue
        for key, commit in (prov.get("revisions") or {}).items():
            revisions.setdefault(key, set()).add(commit)
        for key in ("device", "device_name", "cuda", "host", "torch", "transformers", "kvpress", "git_commit"):
            seen.setdefault(key, {}).setdefault(str(prov.get(key)), 0)
            seen[key][str(prov.get(key))] += 1
    fetched = []
    for stamp in sorted((root / "resources/fetched").rglob("*.json")):
        s = json.loads(stamp.read_text())
        fetched.append({k: s[k] for k in ("kind", "repo", "hub", "url", "name", "revision", "commit", "sha256")
                        if k in s})
    return {
        "study": config.get("study", ""), "config_sha256": config_digest(config),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kvstudy": {"version": __version__, **git_state(Path(__file__).resolve().parent)},
        "packages": package_versions(),
        "revisions": {k: sorted(v) for k, v in sorted(revisions.items())},  # as the raw results report them
        "fetched": fetched,  # what the fetch rules resolved (resources/fetched)
        "raw_results": seen,  # value -> number of jobs, per provenance field
    }


# --- rebuilding from the bundle alone ----------------------------------------------------------------------------

def rebuild(bundle: Path, out: Path) -> list[Path]:
    """Tables from the parquet files, the analysis recomputed from them, every figure of the study drawn; under
    `out` (tables/, analysis/, figures/). Needs the bundle and kvstudy, nothing else. Returns the figures."""
    from kvstudy.pareto import write_pareto
    from kvstudy.plots import make_figure
    from kvstudy.plots.specs import resolve
    from kvstudy.significance_write import write_significance

    bundle, out = Path(bundle), Path(out)
    tables, analysis = out / "tables", out / "analysis"
    tables.mkdir(parents=True, exist_ok=True)
    analysis.mkdir(parents=True, exist_ok=True)
    for name in ("results", "samples"):
        pd.read_parquet(bundle / "data" / f"{name}.parquet").to_csv(tables / f"{name}.csv", index=False)
    # the timing protocol's medians (latency fronts, context_scaling) are a table of their own, not in the parquet
    timing = bundle / "tables" / "timing.csv"
    if timing.exists():
        shutil.copy(timing, tables / "timing.csv")
    write_pareto(tables / "results.csv", analysis / "pareto.csv", tables / "timing.csv" if timing.exists() else None)
    write_significance(tables / "samples.csv", analysis / "significance.csv", baseline="no_press",
                       seeds_csv=analysis / "significance_seeds.csv")
    if (bundle / "analysis/tuning").is_dir():  # search choices come from trials, which the bundle does not hold
        _copy(bundle / "analysis/tuning", analysis / "tuning")
    config = yaml.safe_load((bundle / "config.yaml").read_text())
    figures = []
    for spec in resolve(config):
        figures += make_figure(spec["figure"], tables, analysis, out / "figures" / spec["name"], spec["options"])
    return figures


def check(bundle: Path, rebuilt: Path) -> list[str]:
    """Differences between a rebuild and the bundle: analysis tables (rows, values) and figure pixels."""
    import numpy as np
    from matplotlib.image import imread

    problems = []
    for name in ANALYSIS:
        a, b = (pd.read_csv(Path(d) / "analysis" / name) for d in (bundle, rebuilt))
        try:
            pd.testing.assert_frame_equal(a, b, check_dtype=False)
        except AssertionError as e:
            problems.append(f"analysis/{name}: {str(e).strip().splitlines()[0]}")
    for png in sorted((Path(bundle) / "figures").glob("*.png")):
        other = Path(rebuilt) / "figures" / png.name
        if not other.exists():
            problems.append(f"figures/{png.name}: not rebuilt")
        elif not np.array_equal(imread(png), imread(other)):
            problems.append(f"figures/{png.name}: pixels differ")
    return problems


# --- metadata ----------------------------------------------------------------------------------------------------

def _readme(config: dict, prov: dict) -> str:
    study = prov["study"]
    based = "\n".join(f"- `{k}` at `{', '.join(v)}`" for k, v in prov["revisions"].items()) or "- (built-in model)"
    return f"""# kvstudy release: {study}

Results of the kvstudy study `{study}` (config sha256 `{prov['config_sha256']}`), made by kvstudy
{prov['kvstudy']['version']} at commit `{prov['kvstudy']['commit']}`.

- `data/results.parquet`: one row per eval job; `data/samples.parquet`: one row per sample (columns:
  kvstudy's docs/data-contracts.md, results.csv and samples.csv)
- `tables/`, `analysis/`, `figures/`: the paper tables, the analysis and the figures (`figures/all` lists them
  with their sha256)
- `config.yaml`: the resolved study; `provenance.json` / `provenance.html`: code, packages, hardware, and the
  models and data the jobs read, at these commits:
{based}
- `ro-crate-metadata.json`: RO-Crate 1.1 metadata; `SHA256SUMS`: every file's checksum

Rebuild the analysis and every figure from this folder alone (no model, no GPU):

    pip install kvstudy=={prov['kvstudy']['version']}   # or the commit above
    kvstudy rebuild . --out rebuilt --check

Publish: `hf upload ORG/NAME . --repo-type dataset` (a hub dataset), or upload `{study}.tar.gz` to Zenodo
(the RO-Crate file holds title, license and files; add authors there).
"""


def _crate(config: dict, prov: dict, bundle: Path) -> None:
    """ro-crate-metadata.json (RO-Crate 1.1): the root dataset, every file, the models and data it is based on."""
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    parts = [{"@id": p.relative_to(bundle).as_posix(), "@type": "File", "contentSize": str(p.stat().st_size),
              "sha256": _sha256(p), "encodingFormat": _format(p)} for p in files]
    based = []
    for key, commits in prov["revisions"].items():
        kind, name = key.split(":", 1)
        for commit in commits:
            url = (f"https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{name}/tree/{commit}"
                   if kind in ("model", "dataset") else f"#data-{name}")
            based.append({"@id": url, "@type": "Dataset" if kind != "model" else "SoftwareSourceCode",
                          "name": name, "version": commit})
    root = {
        "@id": "./", "@type": "Dataset", "name": f"kvstudy results: {prov['study']}",
        "description": (f"KV-cache compression study {prov['study']}: {len(config['models'])} models, "
                        f"{len(config['tasks'])} tasks, lengths {config['lengths']}; per-sample results, tables, "
                        "analysis and figures (kvstudy)"),
        "datePublished": prov["created"], "license": {"@id": "https://creativecommons.org/licenses/by/4.0/"},
        "hasPart": [{"@id": p["@id"]} for p in parts], "isBasedOn": [{"@id": b["@id"]} for b in based],
        "version": prov["config_sha256"],
    }
    meta = {"@id": "ro-crate-metadata.json", "@type": "CreativeWork",
            "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"}, "about": {"@id": "./"}}
    graph = [meta, root, *parts, *based]
    (bundle / "ro-crate-metadata.json").write_text(json.dumps(
        {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph}, indent=1) + "\n")


def _format(p: Path) -> str:
    return {".parquet": "application/vnd.apache.parquet", ".csv": "text/csv", ".tex": "application/x-tex",
            ".pdf": "application/pdf", ".png": "image/png", ".json": "application/json", ".yaml": "application/yaml",
            ".html": "text/html", ".md": "text/markdown"}.get(p.suffix, "text/plain")


def _sums(bundle: Path) -> None:
    lines = [f"{_sha256(p)}  {p.relative_to(bundle).as_posix()}" for p in sorted(bundle.rglob("*")) if p.is_file()]
    (bundle / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()
