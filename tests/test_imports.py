"""No import loop in src/kvstudy, and every module imports on its own.

The import graph is read with `ast` from every import statement of every module, those inside functions included
(an import placed in a function to dodge a loop is still a loop: it only moves the failure to run time). An edge
goes to the module a statement loads: `from kvstudy.a import b` to `kvstudy.a.b` where that is a module, else to
`kvstudy.a`. Not seen: `importlib.import_module` with a computed name (kvstudy.presses loads its press modules so).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_names(src: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of `package` under `src`."""
    out = {}
    for path in sorted((src / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The modules of `modules` that `name` imports anywhere in its file -> the line of the first such import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a.b: the module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                out.setdefault(target, node.lineno)
    return out


def import_graph(src: Path, package: str) -> dict[str, dict[str, int]]:
    modules = module_names(src, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_src_has_no_import_loop():
    graph = import_graph(SRC, "kvstudy")
    assert len(graph) > 50 and "kvstudy.tuning.select" in graph  # the walk sees the package
    cycle = find_cycle(graph)
    assert cycle is None, f"import loop: {describe(cycle, graph)}"


def write_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))


def test_cycle_finder_sees_a_loop_hidden_in_a_function(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": "def f():\n    from pkg.high import g  # hidden in a function\n    return g\n",
        "pkg/high.py": "from pkg import low\n\ndef g():\n    return low\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/leaf.py": "from .. import low\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.low"] == {"pkg.high": 2} and graph["pkg.sub.leaf"] == {"pkg.low": 1}
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) == {"pkg.low", "pkg.high"} and cycle[0] == cycle[-1]
    assert "pkg.low (line 2) -> pkg.high" in describe(cycle, graph)


def test_cycle_finder_passes_a_layered_package(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.top import main\n",
        "pkg/base.py": "X = 1\n",
        "pkg/mid.py": "from pkg.base import X\n",
        "pkg/top.py": "import pkg.mid\n\ndef main():\n    from pkg import base\n    return base.X\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.top"] == {"pkg.mid": 1, "pkg.base": 4}
    assert find_cycle(graph) is None
    graph["pkg.base"]["pkg.top"] = 1  # base now imports top, which imports base: a loop
    cycle = find_cycle(graph)
    assert cycle is not None and {"pkg.base", "pkg.top"} <= set(cycle) and cycle[0] == cycle[-1]


IMPORT_ALONE = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "kvstudy" or m.startswith("kvstudy.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_alone():
    """Each module imported first, with no other module of kvstudy loaded (sys.modules cleared of them between
    modules; third-party libraries stay loaded, which keeps this to one interpreter)."""
    names = sorted(module_names(SRC, "kvstudy"))
    run = subprocess.run([sys.executable, "-c", IMPORT_ALONE, *names], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"modules that do not import alone:\n{run.stdout}{run.stderr[-2000:]}"


def test_tuning_keeps_pandas_lazy():
    """Config validation imports the tuning package: pandas is imported only where a table is built."""
    code = "import sys, kvstudy.tuning; print('pandas' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.stdout.strip() == "False", run.stderr[-2000:]
