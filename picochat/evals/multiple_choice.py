"""Multiple-choice tasks, scored by log-likelihood: which choice does the model find likeliest
after the prompt?

    picochat eval --run R --stage base --tasks social_iqa,strategyqa --limit 200

Each choice is scored by the mean log-probability of its tokens after the prompt (the few-shot
examples, then the question), as nanochat's CORE does; the highest wins, ties broken at random.
Chance is the mean over questions of 1 / (number of choices). The plain sum (`normalize="sum"`)
makes a model that knows nothing prefer whichever choice has the fewest tokens, so its score is
"how often the answer is the shortest", not chance. `normalize="pmi"` subtracts each choice's
log-probability after a neutral prompt (the answer cue alone, e.g. "A:"; Holtzman et al. 2021),
which removes a model's standing preferences for some answers, but trusts the model to say
something sensible after that bare cue.

No rule makes every knowledge-free model score chance on every task: a random model has fixed
preferences (longer or shorter choices, some tokens over others) shared by all questions. On
tasks whose choices have one form (yes/no, a/b, sentences, numbers) random models average out
at chance (tests/test_evals.py); on arithmetic (numbers vs distractor words) and
date_understanding (distractors are edits of the answer) they land off chance either way,
measured from 0.0 to 0.2 on arithmetic (chance 0.144) across random initialisations.

The BIG-bench tasks are read from the `bigbench` sdist (pip download --no-deps bigbench==1.0.0;
never pip-installed, it needs TensorFlow), `bigbench/benchmark_tasks/<task>/[<subtask>/]task.json`,
each example {"input", "target_scores": {choice: 0|1}}. The tasks picochat uses are extracted
once into ~/.cache/picochat/bigbench/<task>.json so later runs never reopen the 342 MB tarball.
Prompts follow BIG-bench's own layout (task prefix, "\\nQ: " input, "\\nA: " answer, or the
task's prefixes), except that the choices are not listed in the question: the model's
context (256 tokens for cpu-tiny) is too short for that and for few-shot examples both.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from picochat import bigbench
from picochat.evals.subject import Format, Shot, Subject, TaskUnavailable
from picochat.paths import CACHE, SOURCES_CACHE
from picochat.rundir import PicochatError, atomic_write_json

BIGBENCH_CACHE = CACHE / "bigbench"
EXAMPLES_KEPT = 3
SCORING = {"pmi": "log p(choice | prompt) - log p(choice | neutral prompt)",
           "sum": "log p(choice | prompt)", "mean": "log p(choice | prompt) per token"}


@dataclass
class Question:
    question: str
    choices: list[str]
    gold: int                   # index of the right choice


# --- BIG-bench data ------------------------------------------------------------------------------
def fetch_bigbench() -> Path:
    """The BIG-bench sdist in the sources cache, downloaded with pip (342 MB) if missing."""
    path = bigbench.tarball()
    if path is not None:
        return path
    SOURCES_CACHE.mkdir(parents=True, exist_ok=True)
    print(f"downloading the BIG-bench sdist (342 MB): {bigbench.FETCH_HINT}", file=sys.stderr)
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", bigbench.SPEC,
                               "-d", str(SOURCES_CACHE)], check=False, capture_output=True, text=True,
                              timeout=3600)
    except (OSError, subprocess.SubprocessError) as e:
        raise TaskUnavailable(f"could not run pip to fetch BIG-bench ({e}); fetch it with: {bigbench.FETCH_HINT}") from e
    path = bigbench.tarball()
    if done.returncode != 0 or path is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TaskUnavailable(f"pip could not download BIG-bench ({tail[0]}); are PyPI and the network "
                            f"reachable? Fetch it by hand with: {bigbench.FETCH_HINT}")
    return path


def extract_bigbench(tasks: Sequence[str]) -> None:
    """One pass over the tarball: each wanted task's task.json files (subtasks included) into
    BIGBENCH_CACHE/<task>.json as [[relative folder, task.json], ...]."""
    path = fetch_bigbench()
    found: dict[str, list] = {t: [] for t in tasks}
    for task, folder, data in bigbench.task_files(path, found):
        found[task].append([folder, data])
    for task, files in found.items():
        if files:
            atomic_write_json(BIGBENCH_CACHE / f"{task}.json", sorted(files, key=lambda f: f[0]))


def load_bigbench(task: str, all_tasks: Sequence[str] = ()) -> list[tuple[str, dict]]:
    """[(folder, task.json)] of a BIG-bench task, from the cache (filled on first use with every
    task in `all_tasks`, so the tarball is read once)."""
    cached = BIGBENCH_CACHE / f"{task}.json"
    if not cached.exists():
        extract_bigbench(sorted({task, *all_tasks}))
        if not cached.exists():
            raise PicochatError(f"BIG-bench has no task {task!r}")
    try:
        return [(folder, data) for folder, data in json.loads(cached.read_text())]
    except (json.JSONDecodeError, ValueError) as e:
        raise PicochatError(f"{cached} is damaged ({e}); delete it and it will be extracted again") from e


def bigbench_questions(task: str, subtasks: Sequence[str] = (), all_tasks: Sequence[str] = ()
                       ) -> tuple[Format, list[Question]]:
    """A task's multiple-choice examples (from the named subtasks, or all) and its prompt layout."""
    files = [(f, d) for f, d in load_bigbench(task, all_tasks) if d.get("examples")]
    if subtasks:
        files = [(f, d) for f, d in files if f.split("/")[-1] in subtasks]
    if not files:
        raise PicochatError(f"BIG-bench task {task!r} has no examples in subtasks {list(subtasks)}")
    data = files[0][1]
    fmt = Format(prefix=str(data.get("task_prefix", "")).lstrip(),
                 q=data.get("example_input_prefix", "\nQ: "), a=data.get("example_output_prefix", "\nA: "),
                 sep=data.get("few_shot_example_separator", "\n"))
    if not fmt.prefix and fmt.q.startswith("\n"):
        fmt.q = fmt.q[1:]   # nothing before the first question: no leading blank line
    questions = []
    for _, d in files:
        for ex in d["examples"]:
            scores = ex.get("target_scores") or {}
            if len(scores) < 2 or not isinstance(ex.get("input"), str):
                continue
            choices = list(scores)
            best = max(scores.values())
            if sum(v == best for v in scores.values()) != 1:
                continue   # several right answers: not a single-answer question
            questions.append(Question(ex["input"].strip(), [str(c) for c in choices],
                                      choices.index(next(c for c in choices if scores[c] == best))))
    return fmt, questions


# --- scoring --------------------------------------------------------------------------------------
def score_questions(subject: Subject, questions: list[Question], fmt: Format, limit: int, seed: int,
                    shots: int = 3, normalize: str = "mean", pool: list[Question] | None = None) -> dict:
    """Score up to `limit` questions (a seeded sample), each after `shots` examples drawn from
    `pool` (default: the task's other questions). Shots are dropped while a prompt would not fit
    the context; a question that does not fit even alone is skipped (and counted)."""
    if normalize not in ("mean", "sum", "pmi"):
        raise PicochatError(f"normalize must be mean, sum or pmi, not {normalize!r}")
    rng = random.Random(seed)
    order = list(range(len(questions)))
    rng.shuffle(order)
    pool = questions if pool is None else pool
    chosen: list[tuple[Question, list[int], list[list[int]]]] = []
    skipped = used_shots = 0
    for i in order:
        if len(chosen) >= limit:
            break
        q = questions[i]
        shot_rng = random.Random(f"{seed}/{i}")
        others = [p for p in shot_rng.sample(pool, min(len(pool), shots + 1)) if p is not q][:shots]
        while True:
            demo = [Shot(p.question, p.choices[p.gold]) for p in others]
            ids, lead = subject.prompt(demo, q.question, fmt)
            conts = [subject.answer_ids(lead, c) for c in q.choices]
            if len(ids) + max(len(c) for c in conts) <= subject.context or not others:
                break
            others = others[:-1]
        if len(ids) + max(len(c) for c in conts) > subject.context:
            skipped += 1
            continue
        used_shots += len(others)
        chosen.append((q, ids, conts))
    if not chosen:
        raise TaskUnavailable(f"none of the questions fits the model's {subject.context}-token context")
    logprobs = subject.logprobs([ids for _, ids, _ in chosen], [conts for _, _, conts in chosen])
    prior: dict[tuple, float] = {}
    if normalize == "pmi":
        # log p(choice | neutral prompt) for every distinct choice, to subtract
        neutral, lead = subject.prompt([], "", Format(prefix="", q="", a=fmt.a, sep=""))
        distinct = sorted({tuple(c) for _, _, conts in chosen for c in conts})
        lps = subject.logprobs([neutral], [[list(c) for c in distinct]])[0]
        prior = {c: sum(lp) for c, lp in zip(distinct, lps)}
    outcomes, examples, picked = [], [], []
    tie_rng = random.Random(seed)
    for (q, ids, conts), lps in zip(chosen, logprobs):
        if normalize == "pmi":
            scores = [sum(lp) - prior[tuple(c)] for lp, c in zip(lps, conts)]
        else:
            scores = [sum(lp) / (len(lp) if normalize == "mean" else 1) for lp in lps]
        best = max(scores)
        pick = tie_rng.choice([j for j, s in enumerate(scores) if s == best])
        outcomes.append(float(pick == q.gold))
        picked.append(q.choices[pick])
        if len(examples) < EXAMPLES_KEPT:
            examples.append({"prompt": q.question[:500], "answer": q.choices[pick],
                             "target": q.choices[q.gold], "correct": pick == q.gold})
    chance = sum(1 / len(q.choices) for q, _, _ in chosen) / len(chosen)
    return {"outcomes": outcomes, "chance": chance, "examples": examples,
            "few_shot": round(used_shots / len(chosen), 2), "skipped_too_long": skipped,
            "scoring": SCORING[normalize],
            # how often the most frequent answer was given: 1.0 is a model that always says the
            # same thing (its accuracy is then that answer's share of the sample, not knowledge)
            "top_answer_share": round(Counter(picked).most_common(1)[0][1] / len(picked), 3)}


def run_bigbench(subject: Subject, run, limit: int, seed: int, task: str, subtasks: Sequence[str] = (),
                 shots: int = 3, all_tasks: Sequence[str] = (), normalize: str = "mean") -> dict:
    """A BIG-bench task (`run`, the RunDir, is not needed: the data comes from the cache)."""
    fmt, questions = bigbench_questions(task, subtasks, all_tasks)
    return score_questions(subject, questions, fmt, limit, seed, shots=shots, normalize=normalize)
