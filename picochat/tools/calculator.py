"""A safe calculator: arithmetic parsed from Python's AST and evaluated node by node.

Never `eval`: only numbers, + - * / // % **, unary signs, parentheses, the constants pi/e/tau
and a few math functions are accepted; anything else (names, attributes, calls to other
functions, strings, comprehensions...) is refused with a message. Sizes are bounded so no
input can hang the process or eat its memory: the expression's length and nesting, integer
results' size, and exponents (checked before computing a power).

    calculate("12*34")        -> "408"
    calculate("2**0.5")       -> "1.41421356237"
    calculate("__import__('os')") -> raises CalculatorError
"""

from __future__ import annotations

import ast
import math
import operator

from picochat.tools.errors import ToolError

MAX_CHARS = 500          # expression length
MAX_DEPTH = 60           # AST nesting (parentheses, chained operators)
MAX_INT_BITS = 4000      # about 1200 decimal digits

BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
          ast.Pow: operator.pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10,
             "log2": math.log2, "sin": math.sin, "cos": math.cos, "tan": math.tan,
             "asin": math.asin, "acos": math.acos, "atan": math.atan, "abs": abs,
             "round": round, "floor": math.floor, "ceil": math.ceil, "min": min, "max": max,
             "factorial": math.factorial}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}

DESCRIPTION = ("Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses, "
               "constants pi e tau, functions " + " ".join(sorted(FUNCTIONS)) + ".")
PARAMETERS = {"type": "object", "properties": {"expression": {"type": "string"}},
              "required": ["expression"]}


class CalculatorError(ToolError, ValueError):
    """The expression is not allowed or cannot be computed; the message says why. (Still a
    ValueError, as it was before ToolError, for callers that catch that.)"""


def calculate(expression: str) -> str:
    """Evaluate `expression` and return the result as text (ints exact, floats to 12 digits)."""
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be a string")
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_CHARS:
        raise CalculatorError(f"expression longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise CalculatorError(f"not an arithmetic expression ({type(e).__name__})") from None
    try:
        value = _eval(tree.body, 0)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("result too large") from None
    except (ValueError, TypeError) as e:
        if isinstance(e, CalculatorError):
            raise
        raise CalculatorError(f"math error: {e}") from None
    return format_number(value)


def format_number(value: int | float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError("the result is not a number")
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise CalculatorError("the result is not a finite number")
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


def _check_int(value):
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"result has more than {MAX_INT_BITS} bits")
    return value


def _eval(node: ast.AST, depth: int):
    if depth > MAX_DEPTH:
        raise CalculatorError("expression nested too deeply")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculatorError(f"only numbers are allowed, not {node.value!r:.40}")
        return _check_int(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _check_int(BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_eval(node.operand, depth + 1))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise CalculatorError(f"unknown name {node.id!r:.40}")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS \
            and not node.keywords and 0 < len(node.args) <= 4:
        args = [_eval(a, depth + 1) for a in node.args]
        if node.func.id == "factorial" and (not isinstance(args[0], int) or args[0] > 500):
            raise CalculatorError("factorial takes an integer up to 500")
        return _check_int(FUNCTIONS[node.func.id](*args))
    raise CalculatorError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def _check_power(base, exponent) -> None:
    """Refuse powers whose result would be too large before computing them."""
    if isinstance(exponent, (int, float)) and abs(exponent) > 1e6:
        if abs(base) not in (0, 1):
            raise CalculatorError("exponent too large")
        return
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise CalculatorError(f"result would have more than {MAX_INT_BITS} bits")
