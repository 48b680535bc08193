"""Arithmetic through the calculator: when to call it, with exactly the user's numbers.

Every product with a multi-digit factor, and any sum, difference or quotient past what one can
do in one's head, goes to the calculator; single digits are answered directly. An answer checks
out when its text states the exact result; `operands_copied` says whether the calculator was
called with exactly the user's operands (the skill a small model lacks first: copying numbers
from its context). The "eval" split asks products of a 3-5-digit and a 3-4-digit number in
phrasings the training conversations never use.
"""

from __future__ import annotations

import random
import re

from picochat.chat import assistant, tool, tool_call, user
from picochat.tasks.base import Problem, Task, numbers_in, phrasings

CALCULATOR = "calculator"


def format_number(x: int | float) -> str:
    if isinstance(x, float):
        if x.is_integer():
            return str(int(x))
        return f"{x:.12g}"
    return str(x)


def calculate(a: int, op: str, b: int) -> str:
    """The calculator's answer for `a op b`, computed with Python numbers (no eval)."""
    if op == "*":
        return format_number(a * b)
    if op == "+":
        return format_number(a + b)
    if op == "-":
        return format_number(a - b)
    if op == "/":
        return format_number(a / b)
    raise ValueError(op)


# Held-out phrasings: the eval split asks only these, and training never does.
EVAL_PRODUCTS = ["Could you multiply {a} by {b}?", "I need {a} times {b}.", "How much is {a}*{b}?",
                 "Work out {a} x {b} for me.", "{a} multiplied by {b} equals what?",
                 "What number is {a} times {b}?", "Find the product {a} * {b}."]
# Training's: ways of writing the product, in ways of asking for it.
PRODUCTS = ["{a} * {b}", "{a}*{b}", "{a} times {b}", "{a} x {b}", "{a} X {b}", "{a} × {b}",
            "{a} multiplied by {b}", "the product of {a} and {b}", "{a} * {b} exactly"]
ASKING = ["What is {e}?", "What's {e}?", "what is {e}", "whats {e}", "Calculate {e}.", "Compute {e}.",
          "How much is {e}?", "how much is {e}", "{e} = ?", "{e} =", "{e}?", "{e}", "Can you compute {e}?",
          "Please calculate {e}.", "What do you get for {e}?", "Tell me {e}.", "Quick: {e}?",
          "I want to know {e}.", "Evaluate {e}.", "Give me {e}.", "What does {e} come to?",
          "Help me with {e}.", "{e}, please.", "Could you calculate {e}?", "What would {e} be?",
          "Do you know {e}?", "Figure out {e}.", "I'd like {e}.", "What is the result of {e}?",
          "Can you tell me {e}?", "{e} is what?", "Result of {e}?", "Work out {e}, please."]
PRODUCT_TEMPLATES = phrasings(ASKING, PRODUCTS, EVAL_PRODUCTS) + [
    "Multiply {a} by {b}.", "Multiply {a} and {b}.", "Please multiply {a} by {b}.",
    "Can you multiply {a} by {b}?", "What do you get if you multiply {a} and {b}?",
    "What do you get when you multiply {a} by {b}?", "Multiply these: {a} and {b}.",
    "{a} times {b}, how much is that?", "I have {a} and {b}; what is their product?"]
WORD_PRODUCTS = [
    ("A box holds {a} apples. How many apples are in {b} boxes?", "apples"),
    ("A ticket costs {a} dollars. How much do {b} tickets cost?", "dollars"),
    ("There are {b} rows of {a} chairs. How many chairs are there?", "chairs"),
    ("A train travels {a} km every day. How far does it go in {b} days?", "km"),
]
# Sums, differences and quotients are asked in the same ways as products, so the way of asking
# says nothing about the operation: the model must read the operator word to choose it.
OPERATIONS = {
    "+": ["{a} + {b}", "{a}+{b}", "{a} plus {b}", "the sum of {a} and {b}", "{a} and {b} added together"],
    "-": ["{a} - {b}", "{a}-{b}", "{a} minus {b}", "{a} take away {b}", "the difference {a} - {b}"],
    "/": ["{a} / {b}", "{a}/{b}", "{a} divided by {b}", "{a} over {b}"],
}
SUM_TEMPLATES = {
    "+": phrasings(ASKING, OPERATIONS["+"]) + ["Add {a} and {b}.", "Add {a} to {b}.", "Please add {a} and {b}."],
    "-": phrasings(ASKING, OPERATIONS["-"]) + ["Subtract {b} from {a}.", "Take {b} away from {a}."],
    "/": phrasings(ASKING, OPERATIONS["/"]) + ["Divide {a} by {b}.", "Please divide {a} by {b}."],
}
SYMBOL = {"*": "*", "+": "+", "-": "-", "/": "/"}
LEADS = ["", "", "", "Let me use the calculator.", "I'll calculate that.", "Let me compute that."]


def _number(rng: random.Random, lo_digits: int, hi_digits: int) -> int:
    d = rng.randint(lo_digits, hi_digits)
    return rng.randint(10 ** (d - 1), 10 ** d - 1)


def calculator_exchange(question: str, a: int, op: str, b: int, rng: random.Random,
                        unit: str = "") -> Problem:
    expression = f"{a}{SYMBOL[op]}{b}"
    result = calculate(a, op, b)
    final = rng.choice([f"{a} {op} {b} = {result}.", f"The answer is {result}.",
                        f"{a} {op} {b} is {result}."])
    if unit:
        final = f"{a} {op} {b} = {result}, so the answer is {result} {unit}."
    solution = [assistant(rng.choice(LEADS), [tool_call(CALCULATOR, {"expression": expression})]),
                tool(result), assistant(final)]
    return Problem([user(question)], result, solution, {"a": a, "op": op, "b": b})

EXPRESSION = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*([-+*/x×])\s*(-?\d+(?:\.\d+)?)\s*")


class Arithmetic(Task):
    name = "arithmetic"
    splits = ("train", "eval")

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        return [self._eval_product(rng) if split == "eval" else self._train_problem(rng) for _ in range(count)]

    def _train_problem(self, rng: random.Random) -> Problem:
        r = rng.random()
        if r < 0.55:    # a product with a multi-digit factor: always the calculator
            a, b = _number(rng, 2, 6), _number(rng, 1, 5)
            if rng.random() < 0.5:
                a, b = b, a
            return calculator_exchange(rng.choice(PRODUCT_TEMPLATES).format(a=a, b=b), a, "*", b, rng)
        if r < 0.65:    # a word problem that is a product
            a, b = _number(rng, 2, 3), _number(rng, 1, 2)
            template, unit = rng.choice(WORD_PRODUCTS)
            return calculator_exchange(template.format(a=a, b=b), a, "*", b, rng, unit)
        if r < 0.85:    # big sums, differences, quotients: the calculator too
            op = rng.choice("+-/")
            a, b = _number(rng, 3, 5), _number(rng, 2, 4)
            if op == "/":
                a = a * b if rng.random() < 0.5 else a
            return calculator_exchange(rng.choice(SUM_TEMPLATES[op]).format(a=a, b=b), a, op, b, rng)
        a, b = rng.randint(0, 9), rng.randint(0, 9)     # single digits: known by heart, answered directly
        op = rng.choice("*+")
        q = rng.choice(PRODUCT_TEMPLATES if op == "*" else SUM_TEMPLATES["+"]).format(a=a, b=b)
        result = calculate(a, op, b)
        return Problem([user(q)], result, [assistant(f"{a} {op} {b} = {result}.")], {"a": a, "op": op, "b": b})

    def _eval_product(self, rng: random.Random) -> Problem:
        a, b = _number(rng, 3, 5), _number(rng, 3, 4)
        q = rng.choice(EVAL_PRODUCTS).format(a=a, b=b)
        return Problem([user(q)], calculate(a, "*", b), [], {"a": a, "op": "*", "b": b})

    def check(self, problem: Problem, answer) -> bool:
        """The answer's text states the exact result."""
        return problem.target in numbers_in(answer.text)

    def operands_copied(self, problem: Problem, answer) -> bool:
        """The first calculator call computes exactly the user's expression (either order where
        the operation allows)."""
        call = next((c for c in answer.calls if c.name == CALCULATOR), None)
        m = EXPRESSION.fullmatch(str((call.arguments or {}).get("expression", ""))) if call else None
        if m is None:
            return False
        x, op, y = m.group(1), m.group(2), m.group(3)
        a, b, want = str(problem.meta["a"]), str(problem.meta["b"]), problem.meta["op"]
        same_op = op == want or (want == "*" and op in "x×")
        return same_op and ((x, y) == (a, b) or (want in "*+" and (x, y) == (b, a)))


# Sums of three or four numbers: the calculator takes the whole expression in one call, but SFT
# only ever shows two operands, so a model must find the longer call itself (an RL task).
CHAINS = ["{e}", "What is {e}?", "Calculate {e}.", "Add these up: {e}.", "What do you get for {e}?",
          "Compute {e}, please.", "How much is {e}?", "Tell me the total of {e}."]
EVAL_CHAINS = ["Work out {e} for me.", "{e} comes to what?", "I need the sum {e}.", "Find the total: {e}."]


class Chain(Task):
    """A sum of three or four 2-4 digit numbers (some subtracted); right when the answer states
    the exact total. The labeled answer is one calculator call with the whole expression."""
    name = "chain"
    splits = ("train", "eval")

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        return [self._problem(rng, split) for _ in range(count)]

    def _problem(self, rng: random.Random, split: str) -> Problem:
        terms = [_number(rng, 2, 4) for _ in range(rng.randint(3, 4))]
        ops = [rng.choice("++-") for _ in terms[1:]]
        expression = str(terms[0]) + "".join(f" {op} {t}" for op, t in zip(ops, terms[1:]))
        total = terms[0] + sum(t if op == "+" else -t for op, t in zip(ops, terms[1:]))
        question = rng.choice(EVAL_CHAINS if split == "eval" else CHAINS).format(e=expression)
        solution = [assistant("", [tool_call(CALCULATOR, {"expression": expression.replace(" ", "")})]),
                    tool(str(total)), assistant(f"{expression} = {total}.")]
        return Problem([user(question)], str(total), solution, {"terms": terms, "ops": ops})

    def check(self, problem: Problem, answer) -> bool:
        """The answer's text states the exact total."""
        return problem.target in numbers_in(answer.text)
