"""A non-editable install of kvstudy validates a study from outside the checkout: the schemas ship inside the package
(kvstudy.schemas, package data), not beside it in the repository.

The package is built from a copy of the sources (so no build/ folder is left in the checkout) and installed with
`pip install --no-deps --target`; its dependencies come from the running environment's site-packages. The test
checks that the installed copy, not the checkout's src/, is the one that ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("installed")
    copy = tmp / "source"
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(copy)], check=True, capture_output=True, text=True)
    shutil.rmtree(copy)  # nothing of the sources is left to fall back on
    return site


def _kvstudy(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = ("import sys, kvstudy; print('from', kvstudy.__file__); from kvstudy.cli import main; "
            f"sys.argv = ['kvstudy', *{list(args)!r}]; main()")
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable install's path to src/
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_schemas_are_package_data(installed):
    names = sorted(p.name for p in (installed / "kvstudy" / "schemas").iterdir() if p.suffix in (".yaml", ".json"))
    assert names == ["config.schema.yaml", "result.schema.json", "timing.schema.json"]


def test_installed_package_validates_a_study(installed, tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    run = _kvstudy(installed, tmp_path, "validate", "config.yaml")
    assert run.returncode == 0, run.stderr
    assert f"from {installed}" in run.stdout  # the installed copy ran, not the checkout
    assert "config.yaml: ok," in run.stdout


def test_installed_package_names_a_bad_key(installed, tmp_path):
    text = (ROOT / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(text + "\nseeds: [-1]\n")
    run = _kvstudy(installed, tmp_path, "validate", "config.yaml")
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].startswith("config error: seeds[0]: "), run.stderr
