"""The workflow's own hygiene: snakefmt-clean (line length 120, pyproject.toml [tool.snakefmt]) and no private
Snakemake attribute (one of those breaks silently when Snakemake changes)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk"))]


def snakefmt() -> str | None:
    """snakefmt next to this interpreter (the venv of `pip install -e '.[test]'`), else on PATH."""
    here = Path(sys.executable).parent / "snakefmt"
    return str(here) if here.exists() else shutil.which("snakefmt")


def test_workflow_is_snakefmt_clean():
    exe = snakefmt()
    if exe is None:
        pytest.skip("snakefmt is not installed (it is in the `test` extra: pip install -e '.[test]')")
    run = subprocess.run([exe, "--check", "workflow/", "Snakefile"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"snakefmt --check workflow/ Snakefile (run `snakefmt workflow/ Snakefile`):\n" \
                                f"{run.stdout[-3000:]}{run.stderr[-3000:]}"


# `workflow._x`, `rule._x`, `snakemake.x._y`, or a private name imported from snakemake (FUNC_OVERWRITE_PARAMS_ATTR
# named the private `_overwrite_params` hook)
PRIVATE = re.compile(r"\b(workflow|rules?|snakemake(\.\w+)*)\._\w+"
                     r"|from snakemake\S* import .*(\b_\w+|OVERWRITE_PARAMS)")


def private_uses(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if PRIVATE.search(line) and not line.lstrip().startswith("#")]


def test_no_private_snakemake_attribute():
    files = SNAKEFILES + sorted((ROOT / "src").rglob("*.py"))
    found = {str(f.relative_to(ROOT)): uses for f in files if (uses := private_uses(f.read_text()))}
    assert not found, found


def test_private_use_check_can_fail():
    assert private_uses("from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR")
    assert private_uses("x = workflow._rules")
    assert private_uses("n = snakemake.workflow._x")
    assert not private_uses("EVAL_JOB_GROUP = workflow.group_settings.overwrite_groups.get('eval')")
    assert not private_uses("# workflow._old, in a comment")
