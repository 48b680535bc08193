"""Did preference tuning help? Held-out checks that were not its training signal.

    picochat eval --run R --stage dpo --tasks hhh_heldout    (also in every chat stage's suite)
    picochat compare --run R [--new dpo] [--old sft]         (runs/R/evals/compare-dpo-sft.json)

- hhh_heldout: BIG-bench hhh_alignment's held-out third (picochat.prefs.sources.hhh_split;
  never a training pair): does the model give the better answer a higher mean log-probability
  per token than the worse one? Chance is 50%.
- compare: two stages answer the same fresh held-out problems (the verified tasks' held-out
  phrasings, new numbers and names) at temperature 0 and 1, and each pair of answers is judged
  blind, by whoever can: the task's checker (right beats wrong), and the reward model when the
  run has one (it scores each answer alone, not knowing which stage wrote it). The win rate
  counts a tie as half a win; the decisive rate leaves ties out.
"""

from __future__ import annotations

import random

from picochat.chat import render_prompt
from picochat.evals.scoring import bootstrap_ci
from picochat.evals.subject import Subject, TaskUnavailable
from picochat.rundir import PicochatError, RunDir, atomic_write_json

EXAMPLES_KEPT = 3


# --- hhh_alignment, held-out part ------------------------------------------------------------------
def hhh_heldout(subject: Subject, run: RunDir, limit: int, seed: int) -> dict:
    from picochat.prefs.sources import hhh_examples, hhh_split

    if not subject.chat:
        raise TaskUnavailable("hhh_heldout asks a chat model: its prompts are conversations")
    try:
        examples = [e for e in hhh_examples() if hhh_split(e["messages"]) == "heldout"][:limit]
    except PicochatError as e:
        raise TaskUnavailable(str(e)) from e
    prompts, conts, kept, skipped = [], [], [], 0
    for ex in examples:
        ids = render_prompt(subject.tokenizer, ex["messages"])
        answers = [subject.answer_ids("", ex["better"]), subject.answer_ids("", ex["worse"])]
        if len(ids) + max(map(len, answers)) > subject.context:
            skipped += 1
            continue
        prompts.append(ids)
        conts.append(answers)
        kept.append(ex)
    if not prompts:
        raise TaskUnavailable(f"no held-out hhh_alignment prompt fits the {subject.context}-token context")
    scores = subject.logprobs(prompts, conts)
    outcomes = [float(sum(b) / len(b) > sum(w) / len(w)) for b, w in scores]
    examples_out = [{"prompt": ex["messages"][-1]["content"][:300], "better": ex["better"][:200],
                     "worse": ex["worse"][:200], "correct": bool(o)} for ex, o in zip(kept, outcomes)][:EXAMPLES_KEPT]
    return {"outcomes": outcomes, "chance": 0.5, "examples": examples_out, "skipped_too_long": skipped}


# --- blind comparisons of two stages --------------------------------------------------------------
TEMPERATURES = (0.0, 1.0)


def verdict_counts(verdicts: list[float]) -> dict:
    """verdicts: 1 win, 0.5 tie, 0 loss for the new stage -> rates with 95% intervals."""
    n = len(verdicts)
    wins, ties = sum(v == 1 for v in verdicts), sum(v == 0.5 for v in verdicts)
    losses = n - wins - ties
    decisive = wins + losses
    return {"n": n, "wins": wins, "ties": ties, "losses": losses, "win_rate": sum(verdicts) / n if n else None,
            "ci95": bootstrap_ci(verdicts), "decisive_win_rate": wins / decisive if decisive else None}


def compare_stages(run: RunDir, new: str = "dpo", old: str = "sft", per_task: int = 40, seed: int = 20261202,
                   progress=print) -> dict:
    """Both stages answer the same held-out problems; judged by the checkers and the reward model."""
    from picochat.engine import SamplingParams, load_engine
    from picochat.prefs.sources import VERIFIED_TASKS
    from picochat.tasks import TASKS
    from picochat.tools import default_tools

    engines = {s: load_engine(run.require_model(s), tools=default_tools()) for s in (new, old)}
    scorer = None
    if (run.model("reward") / "config.json").exists():
        from picochat.train.reward import RewardScorer

        scorer = RewardScorer(run.model("reward"))
    tokenizer = engines[new].tokenizer
    problems = [(name, p) for name in VERIFIED_TASKS
                for p in TASKS[name].problems(random.Random(f"compare-{name}-{seed}"), per_task, split="eval")]
    prompts = [render_prompt(tokenizer, p.prompt) for _, p in problems]
    result = {"new": new, "old": old, "problems": len(problems), "tasks": list(VERIFIED_TASKS), "temperatures": {}}
    for t in TEMPERATURES:
        answers = {s: _answers(e, prompts, SamplingParams(temperature=t, max_tokens=96, seed=seed))
                   for s, e in engines.items()}
        checker, by_reward, examples = [], [], []
        by_task: dict[str, list[float]] = {}
        for i, (name, p) in enumerate(problems):
            a, b = answers[new][i], answers[old][i]
            ok_new, ok_old = TASKS[name].check(p, a), TASKS[name].check(p, b)
            v = 0.5 if ok_new == ok_old else float(ok_new)
            checker.append(v)
            by_task.setdefault(name, []).append(v)
            if scorer is not None:
                if a.messages == b.messages:
                    by_reward.append(0.5)
                else:
                    r_new, r_old = scorer(p.prompt, [judged(a), judged(b)])
                    by_reward.append(0.5 if abs(r_new - r_old) < 1e-6 else float(r_new > r_old))
            if v != 0.5 and len(examples) < EXAMPLES_KEPT:
                examples.append({"task": name, "prompt": p.prompt[-1]["content"][:200], new: a.text[:200],
                                 old: b.text[:200], "winner": new if v == 1 else old})
        entry = {"checker": verdict_counts(checker),
                 "checker_by_task": {k: verdict_counts(v) for k, v in by_task.items()},
                 "examples": examples}
        if scorer is not None:
            entry["reward_model"] = verdict_counts(by_reward)
        result["temperatures"][str(t)] = entry
        c = entry["checker"]
        progress(f"compare {new} vs {old} at temperature {t}: checker win rate {c['win_rate']:.3f} "
                 f"({c['wins']} wins, {c['ties']} ties, {c['losses']} losses)"
                 + (f"; reward model {entry['reward_model']['win_rate']:.3f}" if scorer is not None else ""))
    atomic_write_json(comparison_path(run, new, old), result)
    return result


def judged(answer) -> list[dict]:
    """What the reward model reads of an answer: its messages, or its text alone where they do
    not parse (a tool call with no name, an answer cut off after a call)."""
    from picochat.chat import assistant
    from picochat.prefs.sources import storable

    return answer.messages if storable(answer.messages) else [assistant(answer.text)]


def comparison_path(run: RunDir, new: str, old: str):
    return run.path / "evals" / f"compare-{new}-{old}.json"


def _answers(engine, prompts: list[list[int]], params, batch_size: int = 32):
    out = []
    for start in range(0, len(prompts), batch_size):
        out += engine.generate_batch(prompts[start:start + batch_size], params)
    return out
