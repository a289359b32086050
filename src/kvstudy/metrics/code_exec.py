"""Compile a model's C++ and run it against test cases, as LongProc's pseudo_to_code scoring does
(github.com/princeton-pli/LongProc, `longproc/spoc_evaluator.py`), inside resource limits.

LongProc's rule: take the ```cpp block (```c++ counts), prepend its fixed `#include` header, compile with
`g++ -std=c++11 -O`, feed each of the first 10 test cases' input lines (joined by newlines, plus one) on stdin
with a 3-second wall timeout, and compare stdout *exactly* with the expected lines joined the same way. The
program passes when every checked case matches; the first failure stops the run. The exit status is not
checked (as in LongProc), but a program killed by a signal (a crash, or one of our limits) fails the case.

What we add, because this executes model output: every run is a fresh process in a fresh temporary directory,
no shell, an empty environment, stdin/stdout from/to unnamed temporary files (so `RLIMIT_FSIZE` bounds the
output the scorer reads back), limits set with `resource.setrlimit` in `preexec_fn` (CPU seconds, address space,
file size, processes), its own session so a timeout kills the whole group, and, when kvstudy runs as root,
compiler and program run as `nobody` (root ignores the process limit and could read or write anything).
These are limits, not a sandbox: the program can still read what its user can read and use the network. Run
studies that opt in (`allow_code_execution: true`) in a disposable container or account. No library does this for C++ with these limits; HF evaluate's `code_eval` runs Python only.

`preexec_fn` runs Python between fork and exec; the function below only calls `setrlimit` with precomputed
numbers, which keeps that window short in a process that has other (torch) threads.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# LongProc prepends this to every program (the prompt tells the model these are already included)
HEADER = "".join(f"#include <{h}>\n" for h in (
    "cstdio", "iostream", "vector", "algorithm", "numeric", "cmath", "cstring", "set", "map", "queue", "stack",
    "list", "fstream", "climits", "cassert", "iomanip", "sstream", "bitset")) + "using namespace std;\n"
COMPILE_FLAGS = ("-std=c++11", "-O")  # LongProc's
MAX_CASES = 10  # LongProc checks the first 10 test cases
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0  # wall clock per test case (LongProc's)
    cpu_s: int = 5  # RLIMIT_CPU, a backstop behind the wall timeout
    memory_bytes: int = 2048 * MiB  # RLIMIT_AS (LongProc sets none; SPoC programs need well under this)
    output_bytes: int = 16 * MiB  # RLIMIT_FSIZE: the program's stdout file and any file it writes
    compile_timeout_s: float = 60.0
    compile_memory_bytes: int = 4096 * MiB


@dataclass
class CodeResult:
    passed: bool
    reason: str  # "passed", or why not: "no ```cpp block", "compile error: ...", "test 3: timeout", ...
    tests_passed: int = 0  # cases passed before the first failure
    tests_checked: int = 0

    def detail(self) -> dict:
        return {"reason": self.reason, "tests_passed": self.tests_passed, "tests_checked": self.tests_checked}


def extract_cpp(prediction: str) -> str | None:
    """LongProc's extraction: ```c++ is read as ```cpp, then everything from the first ```cpp to the last ```."""
    m = re.search(r"```cpp([\s\S]*)```", re.sub(r"```c\+\+", "```cpp", prediction))
    return m.group(1) if m else None


def compiler() -> str | None:
    return shutil.which("g++")


def _capped(limits: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each limit at most the scorer's own hard limit (`ulimit -v` on a cluster node, say): the child, already
    unprivileged when it applies them, could not raise it, and every case would fail in preexec_fn."""
    out = []
    for which, value in limits:
        hard = resource.getrlimit(which)[1]
        out.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return out


def _limiter(limits: list[tuple[int, int]]):
    limits = _capped(limits)  # read here, in the parent: the child only calls setrlimit

    def apply():
        for which, value in limits:
            resource.setrlimit(which, (value, value))
    return apply


def _unprivileged() -> dict:
    """As root, run the program as nobody: root is exempt from RLIMIT_NPROC and may write anywhere."""
    if os.geteuid() != 0:
        return {}
    try:
        import pwd
        nobody = pwd.getpwnam("nobody")
        return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    except KeyError:
        return {"user": 65534, "group": 65534, "extra_groups": []}


def _spawn(argv: list[str], cwd: Path, stdin: bytes, timeout: float, rlimits, env: dict, max_output: int,
           merge_stderr: bool = False, **kw) -> tuple[int | None, bytes]:
    """(exit status, stdout) — status negative when killed by that signal, None on timeout; its whole session is
    killed after. stdin and stdout are unnamed temporary files the program cannot swap for a link or a pipe."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout:
        fin.write(stdin)
        fin.seek(0)
        proc = subprocess.Popen(argv, cwd=cwd, stdin=fin, stdout=fout,
                                stderr=subprocess.STDOUT if merge_stderr else subprocess.DEVNULL, env=env,
                                close_fds=True, start_new_session=True, preexec_fn=_limiter(rlimits), **kw)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # a timed-out program, or anything it left in its session
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        fout.seek(0)
        return status, fout.read(max_output)


def _compile(code: str, workdir: Path, limits: Limits, user: dict) -> str | None:
    """None when it compiled to workdir/prog, else the reason (the first error line)."""
    gxx = compiler()
    if gxx is None:
        raise RuntimeError("g++ not found on PATH (needed to score pseudo_to_code)")
    (workdir / "prog.cpp").write_text(HEADER + code, encoding="utf-8")
    rl = [(resource.RLIMIT_CPU, int(limits.compile_timeout_s) + 1),
          (resource.RLIMIT_AS, limits.compile_memory_bytes), (resource.RLIMIT_FSIZE, 256 * MiB)]
    # the compiler needs PATH for its assembler and linker; unprivileged too, since `#include "/some/file"` would
    # show that file's lines in the error message recorded in the result
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    status, log = _spawn([gxx, *COMPILE_FLAGS, "-o", "prog", "prog.cpp"], workdir, b"", limits.compile_timeout_s,
                         rl, env, MiB, merge_stderr=True, **user)
    if status is None:
        return "compile error: timeout"
    if status != 0:
        lines = log.decode(errors="replace").splitlines()
        first = next((ln for ln in lines if "error" in ln), lines[0] if lines else f"g++ exit status {status}")
        return "compile error: " + first[:200]
    return None


def _run_case(exe: Path, case_input: str, limits: Limits, user: dict) -> tuple[int | None, bytes]:
    """(status, stdout) of one run in a fresh working directory."""
    with tempfile.TemporaryDirectory(prefix="kvstudy-run-") as d:
        if user:
            os.chown(d, user["user"], user["group"])  # its working directory is its own, nothing else
        rl = [(resource.RLIMIT_CPU, limits.cpu_s), (resource.RLIMIT_AS, limits.memory_bytes),
              (resource.RLIMIT_FSIZE, limits.output_bytes), (resource.RLIMIT_NPROC, 0),
              (resource.RLIMIT_CORE, 0)]
        return _spawn([str(exe)], Path(d), case_input.encode("utf-8"), limits.timeout_s, rl, {},
                      limits.output_bytes, **user)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_tests(code: str, testcases: list, limits: Limits = Limits()) -> CodeResult:
    """LongProc's check of `code` (without the header) against `[[input lines], [output lines]]` cases."""
    cases = testcases[:MAX_CASES]
    user = _unprivileged()
    with tempfile.TemporaryDirectory(prefix="kvstudy-cc-") as d:
        build = Path(d)
        if user:
            os.chown(build, user["user"], user["group"])  # compiled and run by nobody
        why = _compile(code, build, limits, user)
        if why:
            return CodeResult(False, why, 0, len(cases))
        exe = build / "prog"
        for i, (inputs, outputs) in enumerate(cases):
            status, out = _run_case(exe, "\n".join(inputs) + "\n", limits, user)
            expected = "\n".join(outputs) + "\n"
            if status is None:
                why = "timeout"
            elif status < 0:
                why = f"killed by {_signal_name(-status)}"
            else:
                try:
                    why = None if out.decode("utf-8") == expected else "wrong output"
                except UnicodeDecodeError:
                    why = "output not UTF-8"
            if why:
                return CodeResult(False, f"test {i + 1}: {why}", i, len(cases))
        return CodeResult(True, "passed", len(cases), len(cases))


def self_test(limits: Limits = Limits()) -> None:
    """Compile and run a program that must pass, as the model's code will be (same user, limits, directory); run at
    job start. Raises RuntimeError with the reason: a compiler that cannot work there (a wrapper that needs HOME,
    a missing libstdc++, a node's limits) would otherwise score every answer 0 as the model's fault."""
    probe = "int main() { int a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }"
    result = run_tests(probe, [[["2 3"], ["5"]]], limits)
    if not result.passed:
        raise RuntimeError(f"g++ cannot compile and run a + b under the scoring limits here: {result.reason}")


def score_cpp(prediction: str, references: list[str], limits: Limits = Limits()) -> tuple[float, dict]:
    """(1.0 if the ```cpp block passes every checked test case else 0.0, why); references[0] is the JSON list
    of test cases."""
    code = extract_cpp(prediction)
    cases = json.loads(references[0])
    if code is None:
        return 0.0, CodeResult(False, "no ```cpp block", 0, len(cases[:MAX_CASES])).detail()
    result = run_tests(code, cases, limits)
    return float(result.passed), result.detail()
