"""Spelling and letter counting: the model sees tokens, not letters, so it spells the word out
first and counts on what it wrote.

Kinds: how many times a letter appears, spell a word, how many letters, spell it backwards. The
check reads the answer's last number (counts) or its spelled-out form (spellings).
"""

from __future__ import annotations

import random

from picochat.chat import assistant, user
from picochat.tasks.base import Problem, Task, numbers_in

WORDS = ("strawberry banana apple orange cherry grape lemon melon peach pear plum mango papaya "
         "raspberry blueberry coconut pineapple tomato potato carrot onion garlic pepper "
         "elephant giraffe kangaroo dolphin penguin crocodile butterfly squirrel rabbit turtle "
         "mississippi tennessee california australia argentina switzerland madagascar "
         "computer keyboard language tokenizer transformer picochat assistant calculator "
         "necessary separate definitely embarrass occurrence accommodate rhythm committee "
         "bookkeeper balloon coffee letter bottle little happiness success address "
         "parallel possession tomorrow occasion beginning believe receive weird library "
         "February Wednesday restaurant chocolate vegetable hamburger spaghetti broccoli "
         "mountain river ocean island desert forest volcano thunder lightning rainbow "
         "school teacher student pencil notebook history science mathematics geography "
         "bicycle airplane helicopter submarine motorcycle umbrella refrigerator telephone "
         "friend family brother sister mother father garden window kitchen bedroom "
         "queue onomatopoeia cappuccino assessment programming sheep bubble").split()

LETTER_TEMPLATES = [
    'How many "{c}"s are in the word "{w}"?', "How many {c}'s are in {w}?",
    "How many times does the letter {c} appear in {w}?", "Count the letter {c} in \"{w}\".",
    "how many {c} in {w}", "How many letters {c} does the word {w} have?",
]
SPELL_TEMPLATES = ["Spell {w}.", "How do you spell {w}?", "Spell the word \"{w}\" letter by letter.",
                   "spell {w}", "Can you spell {w} for me?"]


def _spelled(word: str) -> str:
    return "-".join(word)


class Spelling(Task):
    name = "spelling"

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        out = []
        for _ in range(count):
            w = rng.choice(WORDS)
            r = rng.random()
            if r < 0.45:
                letters = sorted(set(w.lower()))
                c = rng.choice(letters) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
                n = w.lower().count(c)
                times = "once" if n == 1 else "twice" if n == 2 else f"{n} times"
                answer = (f"Let me spell it out: {_spelled(w)}. The letter \"{c}\" appears {times} in \"{w}\"."
                          if n else f"Let me spell it out: {_spelled(w)}. There is no \"{c}\" in \"{w}\".")
                out.append(Problem([user(rng.choice(LETTER_TEMPLATES).format(c=c, w=w))], n, [assistant(answer)],
                                   {"kind": "count", "word": w, "letter": c}))
            elif r < 0.75:
                out.append(Problem([user(rng.choice(SPELL_TEMPLATES).format(w=w))], _spelled(w),
                                   [assistant(f"{w} is spelled {_spelled(w)}.")], {"kind": "spell", "word": w}))
            elif r < 0.9:
                q = rng.choice(["How many letters are in {w}?", "How long is the word {w}?",
                                "Count the letters in \"{w}\"."]).format(w=w)
                out.append(Problem([user(q)], len(w), [assistant(f"{_spelled(w)}: \"{w}\" has {len(w)} letters.")],
                                   {"kind": "length", "word": w}))
            else:
                q = rng.choice(["Spell {w} backwards.", "Write {w} in reverse."]).format(w=w)
                out.append(Problem([user(q)], _spelled(w[::-1]),
                                   [assistant(f"Forwards it is {_spelled(w)}; backwards: {_spelled(w[::-1])}, "
                                              f"that is \"{w[::-1]}\".")], {"kind": "reverse", "word": w}))
        return out

    def check(self, problem: Problem, answer) -> bool:
        if isinstance(problem.target, int):         # counts: the last number stated, or "once"/"twice"/"no"
            words = {"no": 0, "once": 1, "twice": 2}
            said = [int(float(n)) for n in numbers_in(answer.text)] or \
                [words[w] for w in answer.text.lower().replace(".", " ").split() if w in words]
            return bool(said) and said[-1] == problem.target
        return problem.target.lower() in answer.text.lower()
