"""The calculator (AST arithmetic, never eval) and the tool registry (parse, run, time out)."""

import time

import pytest

from picochat.tools import Tool, ToolRegistry, default_tools
from picochat.tools.calculator import CalculatorError, calculate


@pytest.mark.parametrize("expr, want", [
    ("12*34", "408"), ("1 + 2 * 3", "7"), ("(1 + 2) * 3", "9"), ("7 / 2", "3.5"), ("7 // 2", "3"),
    ("-7 % 3", "2"), ("2 ** 10", "1024"), ("-(3)", "-3"), ("+4", "4"), ("10 / 4 * 2", "5"),
    ("2 ^ 3", "8"), ("3 × 4", "12"), ("sqrt(16)", "4"), ("2 ** 0.5", "1.41421356237"),
    ("123456789 * 987654321", "121932631112635269"), ("round(pi, 2)", "3.14"), ("1.5e3 + 1", "1501"),
    ("max(3, 9, 2)", "9"), ("factorial(10)", "3628800"), ("  5  ", "5"),
])
def test_calculator_arithmetic(expr, want):
    assert calculate(expr) == want


@pytest.mark.parametrize("expr, why", [
    ("__import__('os').system('echo hi')", "not allowed"),
    ("().__class__.__bases__[0].__subclasses__()", "not allowed"),
    ("open('/etc/passwd').read()", "not allowed"),
    ("x", "unknown name"),
    ("lambda: 1", "not allowed"),
    ("[1, 2]", "not allowed"),
    ("'a' * 10", "only numbers"),
    ("True + 1", "only numbers"),
    ("9 ** 9 ** 9", "too large|bits"),
    ("10 ** 100000", "bits"),
    ("2.0 ** 100000", "too large"),
    ("(10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000)", "bits"),
    ("factorial(100000)", "factorial"),
    ("1 / 0", "division by zero"),
    ("sqrt(-1)", "math error"),
    ("", "empty"),
    ("1 +", "not an arithmetic expression"),
    ("(" * 5000 + "1" + ")" * 5000, "longer than"),
    ("-" * 400 + "1", "nested too deeply"),
    ("1e308 * 10", "finite"),
])
def test_calculator_refuses_and_bounds(expr, why):
    start = time.perf_counter()
    with pytest.raises(CalculatorError, match=why):
        calculate(expr)
    assert time.perf_counter() - start < 1.0


def test_registry_parses_runs_and_reports_errors():
    reg = default_tools()
    ok = reg.run('{"name": "calculator", "arguments": {"expression": "12*34"}}')
    assert ok.ok and ok.result == "408" and ok.message_call()["function"]["arguments"] == {"expression": "12*34"}
    assert reg.run('{"name": "calculator", "arguments": "{\\"expression\\": \\"2+2\\"}"}').result == "4"
    for text, why in [('{"name": "calculator", "arguments": {"expression": "1/0"', "not valid JSON"),
                      ("not json at all", "not valid JSON"), ("[1, 2]", "must be"),
                      ('{"name": "calculator", "arguments": 5}', "arguments must be"),
                      ('{"name": "search", "arguments": {}}', "unknown tool"),
                      ('{"name": "calculator", "arguments": {"expr": "1"}}', "bad arguments"),
                      ('{"name": "calculator", "arguments": {"expression": "__import__(\'os\')"}}', "not allowed"),
                      ("[" * 100000 + "]" * 100000, "")]:
        call = reg.run(text)
        assert not call.ok and call.result.startswith("error:") and why in call.result


def test_registry_survives_raising_and_hanging_tools():
    def boom(**_):
        raise RuntimeError("boom")

    reg = ToolRegistry().register(Tool("boom", "raises", {}, boom))
    reg.register(Tool("hang", "sleeps", {}, lambda: time.sleep(30), timeout=0.2))
    assert reg.run('{"name": "boom", "arguments": {}}').result == "error: RuntimeError: boom"
    start = time.perf_counter()
    assert "timed out" in reg.run('{"name": "hang", "arguments": {}}').result
    assert time.perf_counter() - start < 2
