"""reasoning-gym's procedurally generated problems, checked by the dataset's own `score_answer`
(`pip install reasoning-gym`): gsm_symbolic (GSM8K-style word problems), basic_arithmetic, and
any of its other generators. The source of verifiable rewards for RL: fresh problems per seed.
"""

from __future__ import annotations

import random

from picochat.chat import assistant, user
from picochat.tasks.base import Problem, Task, TaskUnavailable, final_number


class ReasoningGym(Task):
    splits = ("train", "eval")

    def __init__(self, dataset: str, config: dict | None = None, name: str | None = None):
        self.dataset, self.config, self.name = dataset, dict(config or {}), name or dataset

    def source(self, size: int, seed: int):
        """The reasoning-gym dataset of `size` problems for `seed` (its entries and its scorer)."""
        try:
            import reasoning_gym as rg
        except ImportError as e:
            raise TaskUnavailable("reasoning-gym is not installed; install it with: pip install reasoning-gym") from e
        return rg.create_dataset(self.dataset, size=size, seed=seed, **self.config)

    def problem(self, entry: dict, data) -> Problem:
        """One of a dataset's entries as a problem (scored by that dataset)."""
        return Problem([user(entry["question"])], str(entry["answer"]), [assistant(str(entry["answer"]))],
                       {"entry": entry, "source": data})

    def from_source(self, data) -> list[Problem]:
        return [self.problem(e, data) for e in data]

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        # eval seeds and train seeds come from disjoint halves, so the splits never share a dataset
        seed = rng.randrange(2**30) + (2**30 if split == "eval" else 0)
        return self.from_source(self.source(count, seed))

    def check(self, problem: Problem, answer, last: bool = True) -> bool:
        """The answer's number (last: a chat answer's last, else its first) scores full marks."""
        guess = final_number(answer.text, last)
        return guess is not None and float(problem.meta["source"].score_answer(guess, problem.meta["entry"])) >= 1.0
