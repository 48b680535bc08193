"""picochat's own probes: what a small model did and did not learn from its corpus.

    picochat eval --run R --stage base --tasks dictionary,reversal,spelling,letter_count

- dictionary: knowledge compressed into the weights. The default corpus holds a dictionary
  (GCIDE / WordNet entries: "Word \\pron\\, pos. [etymology]" then the definition). Shown an
  entry's head line from the run's *training* documents, which of four definitions comes next:
  its own, or those of three other words of the same part of speech? Chance 1/4.
- reversal: the same facts asked the other way round. Training text only ever says "word ->
  definition"; given the definition, which of the four words is it? A gap between dictionary
  and reversal is the "reversal curse" (a model trained on "A is B" does not learn "B is A").
  Chance 1/4.
- spelling: letters vs tokens. Words that are single tokens of the run's tokenizer (the model
  never sees their letters as such), spelled letter by letter: the right spelling or one of
  three of the same length with two letters swapped or one changed. Chance 1/4.
- letter_count: "how many times does the letter c appear in w?", 0 to 3, with the right count
  equally often each of 0, 1, 2 and 3, so a model that always gives the same number scores
  exactly chance, 1/4 (0 to 2 and 1/3 for a vocabulary with no letter thrice in a word).

Chat models get the same questions as a user turn, answers in the form picochat's SFT
conversations use (picochat.tasks.spelling). Words taught there are left out of the
letter probes, so they measure what generalised rather than what was memorised.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from picochat.evals.multiple_choice import Question, score_questions
from picochat.evals.subject import Format, Subject, TaskUnavailable
from picochat.rundir import PicochatError, RunDir

DICTIONARY_SOURCES = ("gcide", "wordnet")
HEAD = re.compile(r"^([A-Za-z]{4,20}) \\[^\\\n]+\\,?\s*(?:\([^)\n]*\)\s*,?\s*)?"
                  r"(n\.|v\. t\.|v\. i\.|a\.|adj\.|adv\.|prep\.|interj\.)")
PLAIN = Format(prefix="", q="", a="\n", sep="\n\n")


# --- dictionary entries from the run's training text --------------------------------------------
@dataclass
class Entry:
    word: str
    pos: str
    head: str                 # the entry's first line, as in the training text
    definition: str


def gives_away(word: str, definition: str) -> bool:
    """The definition contains the word, or a word of 4+ letters inside it ("tall" in Tallness)."""
    w = word.lower()
    return any(len(t) >= 4 and (t in w or w in t) for t in re.findall(r"[a-z]+", definition.lower()))


def parse_entries(text: str) -> list[Entry]:
    """GCIDE-style entries: a head line "Word \\pron\\, pos. [etymology]", possibly continued
    while its brackets are open, then the first definition (up to its first full stop)."""
    lines = text.splitlines()
    entries = []
    for i, line in enumerate(lines):
        m = HEAD.match(line)
        if not m:
            continue
        j, depth = i, line.count("[") - line.count("]")
        while depth > 0 and j + 1 < len(lines):
            j += 1
            depth += lines[j].count("[") - lines[j].count("]")
        definition = []
        for k in range(j + 1, min(j + 4, len(lines))):
            if HEAD.match(lines[k]):
                break
            definition.append(lines[k].strip())
            if lines[k].rstrip().endswith("."):
                break
        text_def = re.sub(r"^\d+\.\s*", "", " ".join(definition)).replace("{", "").replace("}", "")
        text_def = re.sub(r"\s*\[[^\]]*\]", "", text_def.split(" --")[0]).strip()
        first = re.match(r"(.+?\.)(?:\s|$)", text_def)        # its first sentence
        text_def = first.group(1) if first else text_def
        word = m.group(1)
        if not (15 <= len(text_def) <= 140 and text_def.endswith(".")) or "?" in text_def \
                or gives_away(word, text_def) or text_def.startswith(("See", "Same as", "[")):
            continue
        entries.append(Entry(word, m.group(2), line.strip(), text_def))
    return entries


def dictionary_entries(run: RunDir, limit_docs: int = 400, seed: int = 0) -> list[Entry]:
    """Entries from the run's training documents of a dictionary source (never validation
    documents: the point is what training put into the weights)."""
    import pyarrow.parquet as pq

    from picochat.data.corpus import clean_files, id_hash, val_threshold

    try:
        files = clean_files(run)
    except PicochatError:
        files = []
    docs = []
    for path in files:
        table = pq.read_table(path, columns=["id", "source", "text"],
                              filters=[("source", "in", list(DICTIONARY_SOURCES))])
        docs += list(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    if not docs:
        raise TaskUnavailable(f"the run's corpus ({run.clean}) has no dictionary text (sources "
                            f"{', '.join(DICTIONARY_SOURCES)}); the dictionary probes need it")
    threshold = val_threshold(run)
    train = sorted(text for doc_id, text in docs if id_hash(doc_id) > threshold)
    random.Random(seed).shuffle(train)
    entries, seen = [], set()
    for text in train[:limit_docs]:
        for e in parse_entries(text):
            if e.word.lower() not in seen:
                seen.add(e.word.lower())
                entries.append(e)
    if len(entries) < 8:
        raise TaskUnavailable(f"only {len(entries)} dictionary entries could be read from {run.clean}")
    return entries


def _with_distractors(entries: list[Entry], limit: int, seed: int) -> list[tuple[Entry, list[Entry]]]:
    """(entry, [entry + 3 others of the same part of speech, shuffled]) for up to `limit` entries."""
    rng = random.Random(seed)
    by_pos: dict[str, list[Entry]] = {}
    for e in entries:
        by_pos.setdefault(e.pos, []).append(e)
    picked = rng.sample(entries, len(entries))
    out = []
    for e in picked:
        same = [o for o in by_pos[e.pos] if o is not e and o.definition != e.definition]
        if len(same) < 3:
            continue
        group = rng.sample(same, 3) + [e]
        rng.shuffle(group)
        out.append((e, group))
        if len(out) >= limit:
            break
    return out


def dictionary(subject: Subject, run: RunDir, limit: int, seed: int, normalize: str = "mean") -> dict:
    items = _with_distractors(dictionary_entries(run, seed=seed), limit, seed)
    if subject.chat:
        qs = [Question(f'What does the word "{e.word.lower()}" mean?', [g.definition for g in group],
                       group.index(e)) for e, group in items]
        return score_questions(subject, qs, Format(), len(qs), seed, shots=0, normalize=normalize)
    qs = [Question(e.head, [g.definition for g in group], group.index(e)) for e, group in items]
    return score_questions(subject, qs, PLAIN, len(qs), seed, shots=0, normalize=normalize)


def reversal(subject: Subject, run: RunDir, limit: int, seed: int, normalize: str = "mean") -> dict:
    items = _with_distractors(dictionary_entries(run, seed=seed), limit, seed)
    if subject.chat:
        qs = [Question(f'Which word means: "{e.definition}"?', [g.word.lower() for g in group], group.index(e))
              for e, group in items]
        return score_questions(subject, qs, Format(), len(qs), seed, shots=0, normalize=normalize)
    qs = [Question(e.definition, [g.word for g in group], group.index(e)) for e, group in items]
    return score_questions(subject, qs, Format(q="", a="\nThe word defined above is "), len(qs), seed, shots=0, normalize=normalize)


# --- letters vs tokens ------------------------------------------------------------------------------
def single_token_words(subject: Subject, min_len: int = 4, max_len: int = 9) -> list[str]:
    """Lower-case words the tokenizer holds as one token (with their leading space), minus the
    words picochat's SFT conversations spell out."""
    from picochat.tasks.spelling import WORDS

    taught = {w.lower() for w in WORDS}
    tok = subject.tokenizer
    words = set()
    for token in tok.ranks:
        if token[:1] == b" " and min_len < len(token) <= max_len + 1:
            w = token[1:].decode("ascii", errors="replace")
            if w.isascii() and w.isalpha() and w.islower() and w not in taught:
                words.add(w)
    if len(words) < 20:
        raise TaskUnavailable(f"the tokenizer has only {len(words)} whole-word tokens of {min_len}-{max_len} "
                            "letters; the letter probes need more")
    return sorted(words)


def spelled(word: str) -> str:
    return "-".join(word)


def misspellings(word: str, rng: random.Random, n: int = 3) -> list[str]:
    """n different same-length misspellings: two neighbouring letters swapped, or one changed."""
    out: set[str] = set()
    for _ in range(200):
        if len(out) >= n:
            break
        i = rng.randrange(len(word) - 1)
        if rng.random() < 0.5 and word[i] != word[i + 1]:
            w = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        else:
            i = rng.randrange(len(word))
            w = word[:i] + rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[i]]) + word[i + 1:]
        if w != word:
            out.add(w)
    return sorted(out)


def spelling(subject: Subject, run: RunDir, limit: int, seed: int, normalize: str = "mean") -> dict:
    rng = random.Random(seed)
    words = single_token_words(subject)
    qs = []
    for w in rng.sample(words, min(limit, len(words))):
        group = misspellings(w, rng) + [w]
        rng.shuffle(group)
        if subject.chat:
            qs.append(Question(f'Spell the word "{w}" letter by letter.',
                               [f"{w} is spelled {spelled(g)}." for g in group], group.index(w)))
        else:
            qs.append(Question(f'How do you spell "{w}" letter by letter?', [spelled(g) for g in group],
                               group.index(w)))
    return score_questions(subject, qs, Format(), len(qs), seed, shots=0, normalize=normalize)


def times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def count_answer(word: str, letter: str, k: int) -> str:
    """A chat answer in the form of picochat's SFT letter-counting conversations."""
    said = f'The letter "{letter}" appears {times(k)} in "{word}".' if k else f'There is no "{letter}" in "{word}".'
    return f"Let me spell it out: {spelled(word)}. {said}"


def letter_count_questions(words: list[str], limit: int, seed: int, chat: bool) -> list[Question]:
    """`limit` questions whose right answers cycle through the counts 0..3 (0..2 if no word has a
    letter three times), so a model that always gives the same count scores exactly chance."""
    rng = random.Random(seed)
    by_count: dict[int, list[tuple[str, str]]] = {0: [], 1: [], 2: [], 3: []}
    for w in words:
        for c in sorted(set(w)):
            if w.count(c) in by_count:
                by_count[w.count(c)].append((w, c))
        absent = [c for c in "etaoinshrdlucmfwypvbgk" if c not in w]
        if absent:
            by_count[0].append((w, rng.choice(absent)))
    counts = [n for n in by_count if by_count[n]]
    if counts != list(range(len(counts))) or len(counts) < 3:
        raise TaskUnavailable("the tokenizer's words do not give letter counts 0, 1 and 2")
    qs = []
    for i in range(limit):
        n = counts[i % len(counts)]
        w, c = rng.choice(by_count[n])
        question = f'How many times does the letter "{c}" appear in "{w}"?'
        choices = [count_answer(w, c, k) for k in counts] if chat else [str(k) for k in counts]
        qs.append(Question(question, choices, n))
    return qs


def letter_count(subject: Subject, run: RunDir, limit: int, seed: int, normalize: str = "mean") -> dict:
    qs = letter_count_questions(single_token_words(subject), limit, seed, subject.chat)
    return score_questions(subject, qs, Format(), len(qs), seed, shots=0, normalize=normalize)
