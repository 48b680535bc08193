"""Scores: accuracy with a bootstrap 95% interval, chance, centered accuracy, the aggregates.

Centered accuracy rescales a task so that guessing is 0 and perfect is 1:
(value - chance) / (1 - chance). That makes tasks with 2 and with 5 choices comparable, and
their mean is the stage's aggregate: CORE for a base model (the multiple-choice tasks of the
core suite), ChatCORE for a chat model (multiple-choice and generative tasks of the chat suite),
after nanochat's CORE metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_ci(outcomes: Sequence[float], resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of the mean of per-example outcomes (0/1 or scores):
    resample the examples with replacement `resamples` times."""
    x = np.asarray(outcomes, dtype=np.float64)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)     # (resamples,)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return [round(float(lo), 4), round(float(hi), 4)]


def centered(value: float | None, chance: float | None) -> float | None:
    if value is None or chance is None or chance >= 1:
        return None
    return round((value - chance) / (1 - chance), 4)


def summarize(outcomes: Sequence[float], chance: float | None, seed: int = 0) -> dict:
    """value (mean outcome), n, ci95, chance, centered for one task."""
    value = float(np.mean(outcomes)) if len(outcomes) else None
    return {"n": len(outcomes), "value": None if value is None else round(value, 4),
            "ci95": bootstrap_ci(outcomes, seed=seed),
            "chance": None if chance is None else round(chance, 4),
            "centered": centered(value, chance)}


def aggregate(tasks: dict[str, dict], name: str, members: Sequence[str]) -> dict:
    """Mean centered score over the `members` present in `tasks` (null when none is)."""
    used = [t for t in members if t in tasks and tasks[t].get("centered") is not None]
    value = round(float(np.mean([tasks[t]["centered"] for t in used])), 4) if used else None
    return {"name": name, "value": value, "tasks": used}
