"""Copying from the context: a number, a name, a quoted span, a value looked up in a list, a
whole sequence said back.

Every later skill rests on this one: a calculator call with exactly the user's operands, an
answer that states the tool's result, a citation of the user's file. A small model does not
get it from web text alone, so mid-training (picochat.train.midtrain) teaches it on fresh
values in many forms. An answer checks out when its text contains the copied value exactly.
The "eval" split asks in phrasings training never uses, about values drawn afresh.
"""

from __future__ import annotations

import random

from picochat.chat import assistant, user
from picochat.tasks.base import Problem, Task, normalize_prompt

SYLLABLES = ["ka", "lo", "mi", "ren", "to", "va", "shi", "bel", "dor", "an", "is", "el", "mar", "quin",
             "ta", "ro", "zu", "fen", "gal", "ix", "or", "pel", "sa", "tam", "wen", "yo", "ber", "cal"]
WORDS = ("river stone garden window morning silver orange quiet market yellow bridge winter candle "
         "forest ladder copper harbour engine pocket little seven purple ticket north evening paper "
         "kettle island mirror castle meadow lantern rabbit thunder velvet basket pencil sugar cloud "
         "old green tall slow bright warm soft heavy brave empty golden round narrow loud").split()
LABELS = ["order number", "ticket number", "code", "PIN", "account number", "room number",
          "invoice number", "tracking number", "flight number", "locker number", "ID"]

# phrasings per kind: training's, and the eval split's (never trained on). Training tells a value
# and asks for it back in every combination of a telling and a question (told()), so the model
# learns to find the value whatever the wording around it.
NUMBER_EVAL = [("Echo the number {v}.", ""), ("I was given the {label} {v}. Tell me my {label} again.", ""),
               ("Note the {label} {v} and tell me what it is.", ""), ("Type out {v} for me.", "")]
NUMBER_TELLS = ["My {label} is {v}.", "The {label} is {v}.", "Here is my {label}: {v}.", "I got {label} {v}.",
                "Remember this {label}: {v}.", "Your {label} will be {v}.", "They gave me {label} {v}.",
                "{label}: {v}.", "Please keep my {label}, {v}.", "I just got my {label}. It's {v}."]
NUMBER_QUESTIONS = ["What is my {label}?", "What was it?", "Can you read it back to me?", "What is the {label}?",
                    "Say it back.", "Tell me the {label}.", "Which {label} did I give you?",
                    "What did I just tell you?", "Could you repeat it?", "What's my {label} again?"]
NAME_EVAL = [("Call me {v}. So what's my name?", ""), ("People know me as {v}. Who am I?", "")]
NAME_TELLS = ["My name is {v}.", "I'm {v}.", "I am {v}.", "This is {v} speaking.", "Hi, I'm {v}.",
              "Hello, my name is {v}.", "Name's {v}.", "You can call me {v}.", "Everyone calls me {v}.",
              "{v} here.", "I go by {v}."]
NAME_QUESTIONS = ["What is my name?", "What's my name?", "Do you remember my name?", "Who am I?",
                  "What did I say my name was?", "Can you tell me my name?", "What do people call me?",
                  "So who am I?", "What should you call me?", "Who is speaking?"]


def told(tells: list[str], questions: list[str], answers: list[str], held_out: list[tuple[str, str]]) -> list:
    """(prompt, answer) for every telling followed by every question, less the held-out prompts."""
    banned = {normalize_prompt(prompt) for prompt, _ in held_out}
    pairs = [(f"{t} {q}", answers[(i + j) % len(answers)])
             for i, t in enumerate(tells) for j, q in enumerate(questions)]
    return [(prompt, answer) for prompt, answer in pairs if normalize_prompt(prompt) not in banned]


NUMBER_ASKS = {
    "train": [("Repeat this number exactly: {v}", "{v}"), ("Copy this number: {v}", "{v}"),
              ("Say {v} back to me.", "{v}"), ("Please repeat: {v}", "{v}"), ("Write down {v}.", "{v}"),
              ("Read this out: {v}", "{v}"), ("Can you say {v}?", "{v}")]
    + told(NUMBER_TELLS, NUMBER_QUESTIONS, ["The {label} is {v}.", "Your {label} is {v}.", "It is {v}."],
           NUMBER_EVAL),
    "eval": NUMBER_EVAL,
}
NAME_ASKS = {
    "train": [("My friend is called {v}. What is my friend called?", "Your friend is called {v}."),
              ("My sister's name is {v}. What is my sister's name?", "Your sister's name is {v}.")]
    + told(NAME_TELLS, NAME_QUESTIONS, ["Your name is {v}.", "You are {v}.", "You're {v}."], NAME_EVAL),
    "eval": NAME_EVAL,
}
QUOTE_ASKS = {
    "train": [('The note said "{v}". What did the note say?', 'The note said "{v}".'),
              ('Repeat the phrase "{v}" exactly.', '"{v}"'),
              ('My password hint is "{v}". What is my hint?', 'Your hint is "{v}".'),
              ('Quote this back to me: "{v}"', '"{v}"')],
    "eval": [('The sign read "{v}". What did the sign read?', ""), ('Say "{v}" word for word.', "")],
}
# a sequence of numbers, names and words said back whole: every token of the answer is copied,
# the densest signal for the attention that finds "what came after this, last time"
SEQUENCE_ASKS = {
    "train": [("Repeat after me: {v}", "{v}"), ("Say this back exactly: {v}", "{v}"),
              ("Copy this line: {v}", "{v}"), ("Write this down for me: {v}", "Here it is: {v}")],
    "eval": [("Echo back, word for word: {v}", ""), ("Please read this back to me: {v}", "")],
}
LOOKUP_ASKS = {
    "train": [("Here is a list: {table}. What is {key}'s number?", "{key}'s number is {v}."),
              ("{table}. Which number goes with {key}?", "{key} goes with {v}."),
              ("Look up {key} in this list: {table}.", "{key}: {v}.")],
    "eval": [("In this directory, {table}, find {key}.", ""), ("Given {table}, what does {key} have?", "")],
}


def _digits(rng: random.Random) -> str:
    n = rng.choice([1, 2, 3, 4, 4, 5, 5, 6, 6, 7, 8, 9, 10, 12])
    return str(rng.randint(10 ** (n - 1) if n > 1 else 0, 10 ** n - 1))


def _name(rng: random.Random) -> str:
    def word() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
    return word() if rng.random() < 0.3 else f"{word()} {word()}"


def _quote(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))


def _sequence(rng: random.Random) -> str:
    return " ".join(rng.choice([_digits, _name, _quote])(rng) for _ in range(rng.randint(2, 5)))


class Copying(Task):
    name = "copying"
    splits = ("train", "eval")

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        return [self._problem(rng, split) for _ in range(count)]

    def _problem(self, rng: random.Random, split: str) -> Problem:
        kind = rng.choices(["number", "name", "quote", "lookup", "sequence"], weights=[4, 2, 2, 2, 3])[0]
        label = rng.choice(LABELS)
        if kind == "lookup":
            keys = list(dict.fromkeys(_name(rng).split()[0] for _ in range(rng.randint(2, 5))))
            values = [_digits(rng) for _ in keys]
            key = rng.choice(keys)
            value = values[keys.index(key)]
            table = ", ".join(f"{k} {v}" for k, v in zip(keys, values))
            ask, answer = rng.choice(LOOKUP_ASKS[split])
            fill = {"table": table, "key": key, "v": value}
        else:
            value = {"number": _digits, "name": _name, "quote": _quote, "sequence": _sequence}[kind](rng)
            asks = {"number": NUMBER_ASKS, "name": NAME_ASKS, "quote": QUOTE_ASKS, "sequence": SEQUENCE_ASKS}
            ask, answer = rng.choice(asks[kind][split])
            fill = {"v": value, "label": label}
        solution = [assistant(answer.format(**fill))] if answer else []
        return Problem([user(ask.format(**fill))], value, solution, {"kind": kind})

    def check(self, problem: Problem, answer) -> bool:
        """The answer contains the value exactly (a number not as part of a longer one)."""
        text = answer.text
        at = text.find(problem.target)
        while at >= 0:
            before = text[at - 1] if at else " "
            after = text[at + len(problem.target)] if at + len(problem.target) < len(text) else " "
            if not (problem.meta["kind"] in ("number", "lookup") and (before.isdigit() or after.isdigit())):
                return True
            at = text.find(problem.target, at + 1)
        return False
