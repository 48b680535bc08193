"""What every task is: problems, rendered as conversations (SFT), checked (evals), rewarded (RL).

    task = TASKS["arithmetic"]
    rows = task.conversations(random.Random(0), 1000)            # SFT data: prompt + labeled answer
    problems = task.problems(random.Random(1), 200, split="eval")  # held-out problems
    answers = engine.generate_batch([render_prompt(tok, p.prompt) for p in problems], params)
    score = [task.check(p, a) for p, a in zip(problems, answers)]  # evals
    rewards = [task.reward(p, a) for p, a in zip(problems, answers)]  # RL

An answer is anything with the `Completion` fields a check reads: `text` (the answer's text,
thinking and tool calls excluded) and `calls` (the tool calls made, each with `name`,
`arguments` and `result`). Tasks import nothing from the engine: they only read answers.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from picochat.rundir import PicochatError

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class TaskUnavailable(PicochatError):
    """A task cannot run here (a package or data set is missing, or nothing fits the context):
    recorded as skipped, with this message, while the other tasks go on."""


@dataclass
class Problem:
    prompt: list[dict]                      # the conversation the model answers (ends on a user turn)
    target: Any                             # what a right answer must state
    solution: list[dict] = field(default_factory=list)   # the labeled answer (assistant and tool turns)
    meta: dict = field(default_factory=dict)


class Task:
    """A task's problems and its checker. Subclasses define `problems` and `check`."""

    name: str = ""
    splits: tuple[str, ...] = ("train",)    # "eval": problems kept out of training (held-out phrasings)

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        raise NotImplementedError

    def check(self, problem: Problem, answer) -> bool:
        raise NotImplementedError

    def reward(self, problem: Problem, answer) -> float:
        """RL's reward for an answer: 1 when it checks out, else 0."""
        return float(self.check(problem, answer))

    def conversations(self, rng: random.Random, count: int) -> list[list[dict]]:
        """Training conversations: each problem's prompt followed by its labeled answer."""
        return [p.prompt + p.solution for p in self.problems(rng, count)]


def numbers_in(text: str) -> list[str]:
    """The numbers a text states, thousands separators removed."""
    return [n.replace(",", "") for n in NUMBER.findall(text)]


def final_number(text: str, last: bool) -> str | None:
    """An answer's number: a completion's first (it should answer straight away), a chat
    answer's last (it may work its way there)."""
    found = numbers_in(text)
    return found[-1 if last else 0] if found else None


def normalize_prompt(text: str) -> str:
    """Lower case, letters and digits only: how prompts are compared for held-out checks."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def phrasings(frames: list[str], parts: list[str], held_out: list[str] = ()) -> list[str]:
    """Every frame with every part in its `{e}` slot, less any that normalises to a held-out
    phrasing. Training asks in many ways built from pieces, so a small model learns the request
    rather than a few wordings, and a phrasing it never saw still reads as the same request."""
    banned = {normalize_prompt(h) for h in held_out}
    made = [frame.replace("{e}", part) for frame in frames for part in parts]
    return [m for m in dict.fromkeys(made) if normalize_prompt(m) not in banned]
