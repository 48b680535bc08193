"""GRPO on the tiny reciting chat model: rewards move the policy the right way, a resumed run is
exact, and bad input (an unknown task, a checker that raises, rewards that never come) gets a
clear error or a warning, never a crash or a NaN."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file
from serve_model import make_chat_run

from picochat.chat import user
from picochat.config import get_preset
from picochat.rundir import PicochatError, RunDir
from picochat.tasks import Problem, Task
from picochat.train.rl import Rollouts, rl, rl_tasks, thinking_tokens

PRESET = get_preset("micro")
WORDS = "river garden window morning castle letter silver night friend sword".split()


class Brief(Task):
    """Rewards an answer of at most `limit` characters: a skill the reciting model lacks (it
    answers at length or not at all) and can find by sampling."""
    name = "brief"
    splits = ("train", "eval")

    def __init__(self, limit: int = 12):
        self.limit = limit

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        words = WORDS[:7] if split == "train" else WORDS[7:]
        return [Problem([user(f"Say something about the {rng.choice(words)}.")], None) for _ in range(count)]

    def check(self, problem, answer) -> bool:
        return 0 < len(answer.text.strip()) <= self.limit


class Broken(Brief):
    name = "broken"

    def check(self, problem, answer) -> bool:
        raise KeyError("target")


@pytest.fixture
def chat_run(prepared_run, tmp_path):
    return RunDir(make_chat_run(prepared_run, tmp_path / "run"))


def settings(**extra):
    return {"max_steps": 4, "batch_size": 2, "grad_accum": 1, "lr": 3e-3, "warmup_steps": 1, "ckpt_every": 2,
            "dtype": "fp32", "progress": False, **extra}


def test_unknown_task_names_the_choices():
    with pytest.raises(PicochatError, match="no RL task 'nonsense'.*copying"):
        rl_tasks("copying,nonsense")
    with pytest.raises(PicochatError, match="no RL task 'spelling'"):     # a checker but no held-out split
        rl_tasks(["spelling"])


def test_a_checker_that_raises_is_a_clear_error(chat_run):
    with pytest.raises(PicochatError, match="task 'broken': its checker raised KeyError"):
        rl(chat_run, PRESET, tasks=[Broken()], rollouts=Rollouts(group=2, max_tokens=8), **settings())


def test_rewards_that_never_come_warn_and_stay_finite(chat_run, capsys):
    never = Brief(limit=0)
    metrics = rl(chat_run, PRESET, tasks=[never], rollouts=Rollouts(group=4, max_tokens=16, eval_problems=4),
                 **settings(max_steps=2))
    assert metrics["reward"] == 0 and metrics["signal"] == 0
    assert all(v == v for v in metrics.values() if isinstance(v, float))       # no NaN
    assert "earned no reward" in capsys.readouterr().err


def test_grpo_reinforces_what_the_checker_rewards(chat_run):
    """The share of brief answers, held out (prompts about words training never asked about,
    greedy), rises from where the reciting model starts."""
    metrics = rl(chat_run, PRESET, tasks=[Brief()], rollouts=Rollouts(group=8, max_tokens=24, eval_problems=32),
                 **settings(max_steps=30, batch_size=4, lr=1e-3))
    before = chat_run.read_meta()["stages"]["rl"]["before"]["heldout_brief_accuracy"]
    after = metrics["heldout_brief_accuracy"]
    rows = [json.loads(line) for line in (chat_run.metrics / "rl.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in rows if "reward" in r]
    assert after >= before + 0.3, (before, after)
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5
    assert all(0 <= r["clip_fraction"] <= 1 and r["entropy"] > 0 for r in rows if "reward" in r)


@pytest.mark.parametrize("loss_norm", ["sequence", "constant"])
def test_every_loss_normalisation_trains(chat_run, loss_norm):
    metrics = rl(chat_run, PRESET, tasks=[Brief()], rollouts=Rollouts(group=4, max_tokens=16, eval_problems=4,
                                                                       loss_norm=loss_norm, kl=0.1),
                 **settings(max_steps=2))
    assert metrics["kl"] >= 0 and metrics["loss"] == metrics["loss"]


def test_resume_is_exact(prepared_run, tmp_path):
    """Two steps, a stop, two more: the same weights as four steps at once (fp32, CPU)."""
    rollouts = Rollouts(group=4, max_tokens=16, eval_problems=4)
    whole = RunDir(make_chat_run(prepared_run, tmp_path / "whole"))
    rl(whole, PRESET, tasks=[Brief()], rollouts=rollouts, **settings())
    parts = RunDir(make_chat_run(prepared_run, tmp_path / "parts"))
    rl(parts, PRESET, tasks=[Brief()], rollouts=rollouts, **settings(max_steps=2))
    rl(parts, PRESET, tasks=[Brief()], rollouts=rollouts, resume=True, **settings())
    a, b = (load_file(r.model("rl") / "model.safetensors") for r in (whole, parts))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (parts.metrics / "rl.jsonl").read_text().splitlines()
             if "reward" in line]
    assert steps == [1, 2, 3, 4]


def test_thinking_tokens_count_what_was_sampled_inside():
    assert thinking_tokens([1, 9, 5, 6, 8, 7, 3], [1, 1, 1, 0, 1, 1, 1], 9, 8) == 1
    assert thinking_tokens([9, 5, 6], [1, 1, 1], 9, 8) == 2          # never closed: to the end
    assert thinking_tokens([5, 6], [1, 1], None, None) == 0
