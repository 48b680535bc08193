"""Probes of plain language modelling on the run's held-out documents.

    picochat eval --run R --stage base --tasks continuation,word_order

What a small model learns first is local: which words follow which, and what a passage is
about. These two probes measure that in the multiple-choice form of the other tasks, on the
validation documents (never trained on), so they have signal long before a model can answer
BIG-bench questions. Both read the text as text, for chat models too: they probe the weights'
language modelling, not instruction following.

- continuation (HellaSwag-style): 40 words of a held-out document, then which of four 12-word
  spans comes next: the document's own, or spans from three other held-out documents. Scored by
  mean log-probability per token. Chance 1/4.
- word_order (BLiMP-style minimal pairs): a held-out sentence and the same sentence with two
  neighbouring words swapped; which is the real one? Scored by total log-probability (the two
  have the same words). Chance 1/2.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from picochat.evals.subject import Subject, TaskUnavailable
from picochat.rundir import PicochatError, RunDir

CONTEXT_WORDS, SPAN_WORDS = 40, 12
EXAMPLES_KEPT = 3
WORD = re.compile(r"^[^\W_][\w'-]*[,;:]?$")     # words and numbers, maybe with a comma: not markup


def heldout_texts(run: RunDir, max_docs: int = 2000) -> list[str]:
    """Text of the run's validation documents (the same split pretraining validates on)."""
    import pyarrow.parquet as pq

    from picochat.data.corpus import clean_files, id_hash, val_threshold

    try:
        files = clean_files(run)
    except PicochatError as e:
        raise TaskUnavailable(f"the held-out probes need the run's clean documents: {e}") from e
    threshold = val_threshold(run)
    texts = []
    for path in files:   # ids first: only the ~2% of texts that are held out are read
        held_out = [i for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()
                    if id_hash(i) <= threshold]
        if held_out:
            table = pq.read_table(path, columns=["text"], filters=[("id", "in", held_out)])
            texts += table.column("text").to_pylist()
    if not texts:
        raise TaskUnavailable(f"no validation documents in {run.clean}")
    texts.sort()
    return texts[:max_docs]


def continuation(subject: Subject, run: RunDir, limit: int, seed: int) -> dict:
    # each probe's scoring is fixed by what it compares (so `--scoring` does not apply)
    return score_text(subject, continuation_items(run, limit, seed), per_token=True, chance=1 / 4)


def word_order(subject: Subject, run: RunDir, limit: int, seed: int) -> dict:
    return score_text(subject, word_order_items(run, limit, seed), per_token=False, chance=1 / 2)


def continuation_items(run: RunDir, limit: int, seed: int) -> list[tuple[str, list[str], int]]:
    """(context, four candidate continuations, index of the document's own)."""
    rng = random.Random(seed)
    docs = [d.split() for d in heldout_texts(run)]
    docs = [d for d in docs if len(d) >= CONTEXT_WORDS + 4 * SPAN_WORDS]
    if not docs:
        raise TaskUnavailable(f"no held-out document has {CONTEXT_WORDS + 4 * SPAN_WORDS}+ words")
    items = []
    for _ in range(limit):
        i = rng.randrange(len(docs))
        start = rng.randrange(len(docs[i]) - CONTEXT_WORDS - SPAN_WORDS + 1)
        context = " ".join(docs[i][start:start + CONTEXT_WORDS])
        answer = start + CONTEXT_WORDS
        spans = [docs[i][answer:answer + SPAN_WORDS]]
        others = [k for k in range(len(docs)) if k != i]
        if len(others) >= 3:   # distractors from other documents, as HellaSwag's come from elsewhere
            for j in rng.sample(others, 3):
                s = rng.randrange(len(docs[j]) - SPAN_WORDS + 1)
                spans.append(docs[j][s:s + SPAN_WORDS])
        else:                  # a tiny corpus: other places of the same document, not overlapping
            far = [s for s in range(len(docs[i]) - SPAN_WORDS + 1) if abs(s - answer) >= SPAN_WORDS]
            spans += [docs[i][s:s + SPAN_WORDS] for s in rng.sample(far, 3)]
        order = list(range(4))
        rng.shuffle(order)
        items.append((context, [" " + " ".join(spans[k]) for k in order], order.index(0)))
    return items


def word_order_items(run: RunDir, limit: int, seed: int) -> list[tuple[str, list[str], int]]:
    """("", [sentence, swapped] in random order, index of the real sentence)."""
    rng = random.Random(seed)
    sentences = []
    for text in heldout_texts(run):
        for s in re.split(r"(?<=[.!?])\s+", text):
            words = s.split()
            if 8 <= len(words) <= 30 and all(WORD.match(w) for w in words[:-1]):
                sentences.append(words)
    if len(sentences) < 10:
        raise TaskUnavailable(f"only {len(sentences)} plain held-out sentences of 8-30 words")
    items = []
    for words in rng.sample(sentences, min(limit, len(sentences))):
        i = rng.randrange(len(words) - 2)             # never the last word (it holds the full stop)
        if words[i].lower() == words[i + 1].lower():
            continue
        swapped = words[:i] + [words[i + 1], words[i]] + words[i + 2:]
        pair = [" ".join(words), " ".join(swapped)]
        gold = rng.randrange(2)
        items.append(("", pair if gold == 0 else pair[::-1], gold))
    return items


def score_text(subject: Subject, items: list[tuple[str, list[str], int]], per_token: bool, chance: float) -> dict:
    """items: (context, choices, gold). Each choice is scored as plain text after the context."""
    tok = subject.tokenizer
    prompts, conts, kept = [], [], []
    for item in items:
        context, choices, _ = item
        ids = [tok.encode(c) for c in choices]
        room = subject.context - 1 - max(map(len, ids))   # the context keeps its last words
        if room < 0:
            continue
        prompts.append([tok.bos_id] + (tok.encode(context)[-room:] if room else []))
        conts.append(ids)
        kept.append(item)
    if not kept:
        raise TaskUnavailable(f"no item fits the model's {subject.context}-token context")
    logprobs = subject.logprobs(prompts, conts)
    outcomes, examples, picked = [], [], []
    for (context, choices, gold), lps in zip(kept, logprobs):
        scores = [sum(lp) / (len(lp) if per_token else 1) for lp in lps]
        pick = max(range(len(scores)), key=scores.__getitem__)
        outcomes.append(float(pick == gold))
        picked.append(pick)
        if len(examples) < EXAMPLES_KEPT:
            examples.append({"prompt": context[-300:], "answer": choices[pick], "target": choices[gold],
                             "correct": pick == gold})
    return {"outcomes": outcomes, "chance": chance, "examples": examples,
            "scoring": "mean log-prob per token" if per_token else "total log-prob",
            "skipped_too_long": len(items) - len(kept),
            "top_answer_share": round(Counter(picked).most_common(1)[0][1] / len(picked), 3)}
