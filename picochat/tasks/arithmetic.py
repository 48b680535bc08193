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
from picochat.tasks.base import Problem, Task, numbers_in

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


PRODUCT_TEMPLATES = [
    "What is {a} * {b}?", "What is {a}*{b}?", "What's {a} times {b}?", "Calculate {a}*{b}.",
    "{a} x {b} = ?", "How much is {a} multiplied by {b}?", "Multiply {a} by {b}.",
    "What is the product of {a} and {b}?", "{a}*{b}", "{a} * {b} = ?", "Can you compute {a} × {b}?",
    "what is {a} times {b}", "Compute {a} times {b}, please.", "What do you get if you multiply {a} and {b}?",
    "{a} times {b}?", "Please calculate {a} x {b}.",
]
WORD_PRODUCTS = [
    ("A box holds {a} apples. How many apples are in {b} boxes?", "apples"),
    ("A ticket costs {a} dollars. How much do {b} tickets cost?", "dollars"),
    ("There are {b} rows of {a} chairs. How many chairs are there?", "chairs"),
    ("A train travels {a} km every day. How far does it go in {b} days?", "km"),
]
SUM_TEMPLATES = {
    "+": ["What is {a} + {b}?", "Add {a} and {b}.", "What's {a} plus {b}?", "{a}+{b}",
          "What is the sum of {a} and {b}?"],
    "-": ["What is {a} - {b}?", "Subtract {b} from {a}.", "What's {a} minus {b}?", "{a}-{b}"],
    "/": ["What is {a} / {b}?", "Divide {a} by {b}.", "What's {a} divided by {b}?", "{a}/{b}"],
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


EVAL_PRODUCTS = ["Could you multiply {a} by {b}?", "I need {a} times {b}.", "How much is {a}*{b}?",
                 "Work out {a} x {b} for me.", "{a} multiplied by {b} equals what?",
                 "What number is {a} times {b}?", "Find the product {a} * {b}."]
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
