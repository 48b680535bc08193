"""BIG-bench: which tasks picochat uses, and reading them from the sdist tarball.

The `bigbench` sdist (pip download --no-deps bigbench==1.0.0, 342 MB; never pip-installed, it
needs TensorFlow) lies in the sources cache and is read as data:
`bigbench/benchmark_tasks/<task>/[<subtask>/]task.json`. Three users, one list of tasks:

    picochat.evals           scores the EVALUATED tasks (multiple choice by log-likelihood)
    picochat.data.decontam   drops training documents that share 13-word windows with DECONTAMINATED
    picochat.sft_data        reads its own tasks (natural_instructions, topical_chat) in the same pass
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Container, Iterable, Iterator
from pathlib import Path

from picochat.paths import SOURCES_CACHE
from picochat.rundir import PicochatError

SPEC = "bigbench==1.0.0"
FETCH_HINT = f"pip download --no-deps {SPEC} -d {SOURCES_CACHE}"

# The multiple-choice tasks picochat evaluates: (subtasks used, what it asks).
EVALUATED = {
    "social_iqa": ((), "people's motives and reactions in everyday situations (3 choices)"),
    "strategyqa": ((), "yes/no questions needing implicit multi-step reasoning"),
    "elementary_math_qa": (("question_only",), "math word problems (MathQA), 5 numeric choices"),
    "arithmetic": ((), "1-5 digit +, -, x, / questions, numbers and distractor words as choices"),
    "misconceptions": ((), "true or false: common misconceptions"),
    "general_knowledge": ((), "simple world-knowledge questions, many choices"),
    "logical_deduction": (("three_objects",), "order three objects from clues (BIG-Bench Hard)"),
    "date_understanding": ((), "date arithmetic in MM/DD/YYYY (BIG-Bench Hard)"),
    "causal_judgment": ((), "how a typical person judges causation (BIG-Bench Hard)"),
    "sports_understanding": ((), "is a sentence about sport plausible? (BIG-Bench Hard)"),
    "navigate": ((), "do these steps return to the start? (BIG-Bench Hard)"),
    "snarks": ((), "which of two sentences is sarcastic (BIG-Bench Hard)"),
    "hyperbaton": ((), "which sentence has the right adjective order (BIG-Bench Hard)"),
}
# Kept out of training text although not evaluated: why, per task.
DECONTAMINATION_EXTRAS = {
    "hhh_alignment": "preference pairs (a better and a worse answer) for a later preference stage",
}
DECONTAMINATED = (*EVALUATED, *DECONTAMINATION_EXTRAS)


def tarball() -> Path | None:
    """The newest BIG-bench sdist in the sources cache, or None when it is not there."""
    found = sorted(SOURCES_CACHE.glob("bigbench-*.tar.gz"))
    return found[-1] if found else None


def task_files(path: Path, wanted: Container[str]) -> Iterator[tuple[str, str, dict]]:
    """(task, folder, task.json) for every task.json of the wanted tasks in the BIG-bench sdist,
    subtasks included (folder "task" or "task/subtask"), in one pass over the tarball."""
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                parts = m.name.split("/")
                # <sdist>/bigbench/benchmark_tasks/<task>/[<subtask>/]task.json
                if not (m.isfile() and parts[-1] == "task.json" and "benchmark_tasks" in parts):
                    continue
                at = parts.index("benchmark_tasks")
                if parts[at + 1] in wanted:
                    yield parts[at + 1], "/".join(parts[at + 1:-1]), json.loads(tar.extractfile(m).read())
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as e:
        raise PicochatError(f"{path} is unreadable or truncated ({e}); delete it and fetch it "
                            f"again with: {FETCH_HINT}") from e


def strings_in(obj) -> Iterator[str]:
    """Every text in a task.json value (inputs, targets, choices), without the task's metadata
    (canary string, keywords, metric names); also fine for other evaluation JSON."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("target_scores",):
                yield from (s for s in v if isinstance(s, str))
            elif k not in ("canary", "keywords", "metrics", "preferred_score", "name", "description"):
                yield from strings_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_in(v)


def example_texts(tasks: Iterable[str] = DECONTAMINATED) -> Iterator[str]:
    """The texts of the tasks' examples; nothing when the sdist is not cached."""
    path = tarball()
    if path is None:
        return
    for _, _, data in task_files(path, set(tasks)):
        yield from strings_in(data.get("examples", []))
