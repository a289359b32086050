"""LongProc pseudo_to_code: the model's C++ is compiled and run against test cases (kvstudy.metrics.code_exec),
under limits, only when the config opts in. Programs here are tiny; limits are lowered to keep the tests fast."""

import json
import os

import jsonschema
import pytest

from conftest import ROOT, TINY
from kvstudy.config import ConfigError, validate
from kvstudy.metrics import METRICS, score_with_detail
from kvstudy.metrics.code_exec import MAX_CASES, Limits, extract_cpp, score_cpp
from kvstudy.tasks import get_task
from kvstudy.schemas import DIR as SCHEMAS

DATA = ROOT / "tests" / "data" / "longproc" / "pseudo_to_code.json"
ROWS = json.loads(DATA.read_text())
A_PLUS_B = [json.dumps(ROWS[0]["testcases"])]  # (1 2 -> 3), (10 -4 -> 6), (0 0 -> 0)
FAST = Limits(timeout_s=1.0, cpu_s=2)


def cpp(body: str, fence: str = "cpp") -> str:
    return f"Here is the code.\n```{fence}\n{body}\n```\nDone."


def main(body: str) -> str:
    return cpp("int main() {\n" + body + "\n}")


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["problem_id"])
def test_reference_solutions_pass(row):
    score, detail = score_cpp(cpp("\n".join(row["code_lines"])), [json.dumps(row["testcases"])])
    assert score == 1.0 and detail == {"reason": "passed", "tests_passed": len(row["testcases"]),
                                       "tests_checked": len(row["testcases"])}


def test_extraction_follows_longproc():
    assert extract_cpp("```c++\nint x;\n```") == "\nint x;\n"  # ```c++ counts as ```cpp
    assert extract_cpp("```cpp\na\n```\ntext\n```\nb\n```") == "\na\n```\ntext\n```\nb\n"  # up to the last fence
    assert extract_cpp("int main() {}") is None
    assert score_cpp("int main() { cout << 3 << endl; }", A_PLUS_B) == (0.0, {
        "reason": "no ```cpp block", "tests_passed": 0, "tests_checked": 3})


def test_wrong_output_scores_zero_and_says_where():
    # right on the first two cases, wrong on 0 0: LongProc's score is all-or-nothing
    score, detail = score_cpp(main("int a, b; cin >> a >> b; cout << a + b + (a == 0) << endl;"), A_PLUS_B)
    assert score == 0.0 and detail == {"reason": "test 3: wrong output", "tests_passed": 2, "tests_checked": 3}
    # stdout is compared exactly, as LongProc does: a trailing space is a wrong answer
    assert score_cpp(main("int a, b; cin >> a >> b; cout << a + b << ' ' << endl;"), A_PLUS_B)[0] == 0.0
    assert METRICS["cpp_tests_pass"](main("int a, b; cin >> a >> b; cout << a - b << endl;"), A_PLUS_B) == 0.0


def test_code_that_does_not_compile_scores_zero():
    score, detail = score_cpp(main("int a = undeclared_name;"), A_PLUS_B)
    assert score == 0.0 and detail["reason"].startswith("compile error:") and "undeclared_name" in detail["reason"]


def test_an_infinite_loop_is_killed_by_the_timeout():
    score, detail = score_cpp(main("volatile long x = 0; while (true) { x++; }"), A_PLUS_B, Limits(timeout_s=0.3))
    assert score == 0.0 and detail["reason"] == "test 1: timeout"


def test_a_huge_allocation_is_stopped():
    # without the address-space limit this touches 1 GiB and prints the right answer
    big = ("size_t n = (size_t)1 << 30; char *p = (char *)malloc(n); if (!p) return 1; memset(p, 1, n);"
           " int a, b; cin >> a >> b; cout << a + b + p[n - 1] - 1 << endl;")
    score, detail = score_cpp(cpp("#include <cstdlib>\nint main() {\n" + big + "\n}"), A_PLUS_B,
                              Limits(memory_bytes=256 << 20))
    assert score == 0.0 and detail["reason"] == "test 1: wrong output"  # malloc failed: no output
    vec = "vector<char> v((size_t)1 << 31, 1); cout << 3 << endl;"  # new[] throws: the program aborts
    score, detail = score_cpp(main(vec), A_PLUS_B, Limits(memory_bytes=256 << 20))
    assert score == 0.0 and detail["reason"] == "test 1: killed by SIGABRT"


def test_output_flood_and_process_creation_are_limited():
    score, detail = score_cpp(main("while (true) cout << \"xxxxxxxxxxxxxxxx\";"), A_PLUS_B,
                              Limits(output_bytes=1 << 20))
    assert score == 0.0 and detail["reason"] == "test 1: killed by SIGXFSZ"
    # prints the right sums only when fork() is refused (RLIMIT_NPROC, run as nobody when the scorer is root)
    forking = ("int a, b; cin >> a >> b; pid_t pid = fork(); if (pid == 0) _exit(0);"
               " cout << (pid < 0 ? a + b : -1) << endl;")
    assert score_cpp(cpp("#include <unistd.h>\nint main() {\n" + forking + "\n}"), A_PLUS_B, FAST)[0] == 1.0


def test_limits_above_the_scorers_own_hard_limits_are_capped():
    """On a node whose hard limits are below ours (`ulimit -v`, a CPU-time cap), the unprivileged child cannot
    raise them: asking for more must not fail every case, the scorer's own limits apply instead."""
    import resource
    import subprocess
    import sys

    def lower():  # hard limits below the compiler's 4 GiB address space and 61 s of CPU
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        resource.setrlimit(resource.RLIMIT_CPU, (30, 30))

    code = ("import json, sys; from kvstudy.metrics.code_exec import score_cpp; "
            "print(json.dumps(score_cpp(sys.argv[1], json.loads(sys.argv[2]))))")
    p = subprocess.run([sys.executable, "-c", code, cpp("\n".join(ROWS[0]["code_lines"])), json.dumps(A_PLUS_B)],
                       capture_output=True, text=True, preexec_fn=lower, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    score, detail = json.loads(p.stdout)
    assert score == 1.0 and detail["reason"] == "passed"


def test_score_with_detail_is_plain_for_other_metrics():
    assert score_with_detail("exact_match", "v1", ["v1"]) == (1.0, None)


# --- the task ---

def task_params(**kw):
    return {"source": str(DATA), "subtask": "pseudo_to_code", "allow_code_execution": True} | kw


def test_prompt_is_cut_to_exactly_the_length_with_the_tiny_model(tiny):
    _, tok = tiny
    task = get_task("longproc", task_params())
    assert task.metric == "cpp_tests_pass"
    full = task.samples(tok, 4096, 0)
    assert len(full) == 3 and not full[0].meta["truncated"]
    n = len(full[2].context_ids)  # the template head + the whole pseudocode
    cut = task.samples(tok, n - 3, 0)
    assert [len(s.context_ids) for s in cut] == [n - 3] * 3 and all(s.meta["truncated"] for s in cut)
    assert all(s.meta["original_context_tokens"] == len(f.context_ids) for s, f in zip(cut, full))
    assert cut[0].question_ids == full[0].question_ids  # the instruction after the pseudocode is never cut
    assert cut[1].meta["source_id"] == "T2" and json.loads(cut[1].references[0]) == ROWS[1]["testcases"]


def test_only_the_checked_test_cases_are_kept(tiny, tmp_path):
    row = dict(ROWS[0], testcases=ROWS[0]["testcases"] * 5)  # 15 cases
    (tmp_path / "p.json").write_text(json.dumps([row]))
    s = get_task("longproc", task_params(source=str(tmp_path / "p.json"))).samples(tiny[1], 512, 0)[0]
    assert len(json.loads(s.references[0])) == MAX_CASES == 10


def study_with(task: dict) -> dict:
    return {"models": {"tiny": {"path": TINY}}, "tasks": {"p2c": task}, "lengths": [256],
            "presses": [{"method": "no_press"}]}


def test_config_must_opt_in_to_code_execution():
    task = {"kind": "longproc", "subtask": "pseudo_to_code", "source": str(DATA)}
    with pytest.raises(ConfigError, match=r"^config error: tasks\.p2c\.allow_code_execution: .*true"):
        validate(study_with(task))
    with pytest.raises(ConfigError, match=r"^config error: tasks\.p2c\.allow_code_execution: "):
        validate(study_with(task | {"allow_code_execution": "yes"}))  # a boolean, not a truthy string
    with pytest.raises(ConfigError, match=r"^config error: tasks\.p2c\.allow_code_execution: "):
        validate(study_with(task | {"allow_code_execution": False}))
    assert validate(study_with(task | {"allow_code_execution": True}))["tasks"]["p2c"]["allow_code_execution"]
    # the other subtasks run no code and need no opt-in; no other task can borrow the code-running metric
    validate(study_with({"kind": "longproc", "subtask": "path_traversal", "source": str(DATA)}))
    with pytest.raises(ConfigError, match=r"tasks\.p2c: scorer 'cpp_tests_pass' runs generated code"):
        validate(study_with({"kind": "hf_qa", "source": "x.jsonl", "scorer": "cpp_tests_pass"}))


def test_config_names_the_task_when_gxx_is_missing(monkeypatch):
    import kvstudy.metrics.code_exec as code_exec

    monkeypatch.setattr(code_exec.shutil, "which", lambda name, *a, **k: None)
    task = {"kind": "longproc", "subtask": "pseudo_to_code", "source": str(DATA), "allow_code_execution": True}
    with pytest.raises(ConfigError, match=r"^config error: tasks\.p2c: subtask pseudo_to_code needs g\+\+ on PATH"):
        validate(study_with(task))


def test_a_compiler_that_cannot_work_here_stops_the_job_before_generation(tiny, monkeypatch):
    """A g++ that exits 1 as nobody or under the limits (a wrapper that needs HOME, say) would score every answer
    0 as if the model had written code that does not compile."""
    import kvstudy.metrics.code_exec as code_exec

    import tempfile
    from pathlib import Path

    _, tok = tiny
    where = Path(tempfile.mkdtemp())  # readable by nobody, who runs the compiler when the tests run as root
    where.chmod(0o755)
    broken = where / "g++"
    broken.write_text("#!/bin/sh\necho 'g++: fatal error: cannot write to HOME' >&2\nexit 1\n")
    broken.chmod(0o755)
    task = get_task("longproc", task_params())
    monkeypatch.setattr(code_exec, "compiler", lambda: str(broken))
    with pytest.raises(ValueError, match=r"^task longproc pseudo_to_code: g\+\+ cannot compile and run a \+ b under "
                                         r"the scoring limits here: compile error: .*cannot write to HOME"):
        task.samples(tok, 400, 0)
    monkeypatch.undo()
    assert task.samples(tok, 400, 0)  # the real g++ passes
    broken.unlink()
    where.rmdir()


def test_eval_job_end_to_end_on_the_tiny_model(monkeypatch):
    """run_job on the tiny model; sample 0's answer is swapped for the reference program after generation, so
    scoring inside the job compiles and runs both a passing program and the tiny model's (code-less) output."""
    import kvstudy.evaluate as evaluate

    real = evaluate.run_sample

    def run_sample(model, tokenizer, press, s, *a, **k):
        r = real(model, tokenizer, press, s, *a, **k)
        if s.id == "0":
            r["prediction"] = cpp("\n".join(ROWS[0]["code_lines"]))
        return r

    monkeypatch.setattr(evaluate, "run_sample", run_sample)
    job = {"model": "tiny", "model_path": TINY, "dtype": "float32", "attn_implementation": "sdpa",
           "chat_template": "auto", "task": "p2c", "task_kind": "longproc",
           "task_params": task_params(max_new_tokens=4), "length": 128, "seed": 0,
           "press": "no_press", "method": "no_press", "params": {}, "compression_ratio": 0.0, "stop_words": []}
    r = evaluate.run_job(job, device="cpu")
    jsonschema.validate(r, json.loads((SCHEMAS / "result.schema.json").read_text()))
    assert r["status"] == "ok" and r["quality"]["metric"] == "cpp_tests_pass" and r["quality"]["n"] == 3
    s0, s1, s2 = r["samples"]
    assert s0["score"] == 1.0 and s0["score_detail"]["reason"] == "passed"
    assert s1["score"] == s2["score"] == 0.0 and s1["score_detail"]["reason"] == "no ```cpp block"
    assert r["quality"]["score"] == pytest.approx(1 / 3)
    json.dumps(r)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root scorer drops to nobody")
def test_as_root_the_compiler_and_program_run_as_nobody(tmp_path):
    secret = tmp_path / "secret.txt"  # pytest's tmp_path is private to root (0700)
    secret.write_text("password\n")
    score, detail = score_cpp(cpp(f'#include "{secret}"\nint main() {{}}'), A_PLUS_B)
    assert "Permission denied" in detail["reason"] and "password" not in detail["reason"]
    target = tmp_path / "written"
    writes = f'int a, b; cin >> a >> b; ofstream f("{target}"); f << 1; f.close(); cout << a + b << endl;'
    assert score_cpp(main(writes), A_PLUS_B, FAST)[0] == 1.0 and not target.exists()
