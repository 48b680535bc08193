"""Factuality: does the model know what the words of its own corpus mean, and does it say
"I don't know" where it does not? The Llama 3 factuality recipe, at picochat's scale.

The default corpus holds a dictionary; `Factuality.from_run` reads its entries from the run's
*training* documents (picochat.evals.probes.dictionary_entries), so every answer is in the data
the model was trained on. A problem asks what a word means; an answer is right when it states
the entry's definition (`matches`: most of the definition's content words, in the answer).
Entries are split by word into "train" (the recipe's probe) and "eval" (never trained on).

The recipe (`label`): sample the model's answer to each train question; where it was right,
keep its answer as the labeled one, where it was wrong, label "I don't know" (with where to
look). SFT on those teaches the model to answer what it knows and abstain on what it does not.
`tradeoff` shows the result as answered accuracy against answer rate: each answer's confidence
is its mean token log-probability, and abstaining below a threshold trades answers for accuracy.

    picochat factuality --run R [--stage mid] [--limit N]     (probe, curve and labeled data)
"""

from __future__ import annotations

import hashlib
import random
import re

from picochat.chat import assistant, user
from picochat.tasks.base import Problem, Task
from picochat.tasks.unknowable import abstains

ASKS = {"train": ['What does the word "{w}" mean?', 'What is the meaning of "{w}"?', 'Define "{w}".',
                  'What is a definition of the word "{w}"?'],
        "eval": ['Could you tell me what "{w}" means?', 'Give me the meaning of the word "{w}".']}
DONT_KNOW = ['I don\'t know what "{w}" means. A dictionary will have its definition.',
             'I don\'t know the word "{w}", so I would rather not guess. Please check a dictionary.']
STOPWORDS = set("the and that with from which this into upon their them they have been being such "
                "other than more most some what when where whose also used make made like very "
                "something anything one any kind thing state act".split())
MATCH = 0.5                       # share of the definition's content words an answer must state


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4 and w not in STOPWORDS}


def matches(definition: str, answer: str) -> bool:
    """The answer states the definition: at least MATCH of its content words (and it does not
    abstain). A definition with no content words cannot be checked and never matches."""
    wanted = content_words(definition)
    if not wanted or abstains(answer):
        return False
    return len(wanted & content_words(answer)) / len(wanted) >= MATCH


def split_of(word: str) -> str:
    """A word's split, fixed by its hash: a fifth of the entries are held out."""
    return "eval" if int(hashlib.sha256(word.lower().encode()).hexdigest(), 16) % 5 == 0 else "train"


class Factuality(Task):
    name = "factuality"
    splits = ("train", "eval")

    def __init__(self, entries: list):
        self.entries = {s: [e for e in entries if split_of(e.word) == s] for s in self.splits}

    @classmethod
    def from_run(cls, run) -> Factuality:
        from picochat.evals.probes import dictionary_entries

        return cls(dictionary_entries(run, limit_docs=2000))

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        pool = self.entries[split]
        chosen = rng.sample(pool, min(count, len(pool)))
        out = []
        for e in chosen:
            w = e.word.lower()
            answer = f'"{w}" ({e.pos}): {e.definition}'
            out.append(Problem([user(rng.choice(ASKS[split]).format(w=w))], e.definition, [assistant(answer)],
                               {"word": w}))
        return out

    def check(self, problem: Problem, answer) -> bool:
        return matches(problem.target, answer.text)


def label(problem: Problem, answer, rng: random.Random) -> list[dict]:
    """The recipe's labeled conversation for a probed question: the model's own answer where it
    was right, "I don't know" where it was wrong."""
    if matches(problem.target, answer.text):
        return problem.prompt + [assistant(answer.text.strip())]
    return problem.prompt + [assistant(rng.choice(DONT_KNOW).format(w=problem.meta["word"]))]


def confidence(answer) -> float | None:
    """Mean log-probability of the answer's sampled tokens (None: it sampled none)."""
    logprobs = [x for x in answer.logprobs if x is not None]
    return sum(logprobs) / len(logprobs) if logprobs else None


def tradeoff(rows: list[dict], points: int = 5) -> list[dict]:
    """Answered accuracy against answer rate. rows: {"correct", "abstained", "confidence"}. The
    model keeps an answer when it did not abstain and its confidence is at least the threshold;
    thresholds at the quantiles of the answered rows' confidences, from none (None) to the highest."""
    def score(r: dict) -> float:
        return float("-inf") if r["confidence"] is None else r["confidence"]

    answered = sorted(score(r) for r in rows if not r["abstained"])
    quantiles = {answered[min(len(answered) - 1, int(len(answered) * q / points))] for q in range(1, points)
                 if answered}         # a model that abstained on everything has only the "none" point
    thresholds = [None, *sorted(quantiles)]       # a threshold once, however many answers share it
    curve = []
    for t in thresholds:
        kept = [r for r in rows if not r["abstained"] and (t is None or score(r) >= t)]
        curve.append({"threshold": t, "answer_rate": len(kept) / max(1, len(rows)),
                      "answered_accuracy": sum(r["correct"] for r in kept) / len(kept) if kept else None,
                      "answered": len(kept)})
    return curve
