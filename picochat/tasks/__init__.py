"""Tasks: one type per task owns its problems, renders them as conversations (SFT data), checks an
answer (evals) and turns a checked answer into a reward (RL). See picochat.tasks.base.

    identity     who the assistant is (20 held-out paraphrases and "who are you?" for the check)
    arithmetic   when and how to call the calculator (held-out: fresh 3-5 x 3-4 digit products)
    chain        sums of three or four numbers in one calculator call (not in SFT: an RL task)
    copying      copy a number, a name, a quoted span or a looked-up value from the context
    unknowable   "I don't know" to questions nobody could answer (live data, private facts, the future)
    spelling     spelling and letter counting, by spelling the word out first
    reasoning    reasoning-gym's generated problems with their own checkers (gsm_symbolic, ...)
    humaneval    HumanEval functions, checked by running their tests in the sandbox
"""

from picochat.tasks.arithmetic import Arithmetic, Chain
from picochat.tasks.base import Problem, Task, TaskUnavailable
from picochat.tasks.copying import Copying
from picochat.tasks.humaneval import HumanEval
from picochat.tasks.identity import Identity
from picochat.tasks.reasoning import ReasoningGym
from picochat.tasks.spelling import Spelling
from picochat.tasks.unknowable import Unknowable

# the tasks picochat writes its own conversations for (SFT data; their "train" split)
GENERATED: dict[str, Task] = {t.name: t for t in (Identity(), Arithmetic(), Spelling(), Copying(), Unknowable())}
TASKS: dict[str, Task] = {
    **GENERATED,
    "chain": Chain(),
    "gsm_symbolic": ReasoningGym("gsm_symbolic"),
    # two terms of up to two digits: within reach of a small model with a calculator
    "basic_arithmetic": ReasoningGym("basic_arithmetic", {"min_terms": 2, "max_terms": 2, "max_digits": 2}),
    "humaneval": HumanEval(),
}

__all__ = ["GENERATED", "TASKS", "Arithmetic", "Chain", "Copying", "HumanEval", "Identity", "Problem", "ReasoningGym",
           "Spelling", "Task", "TaskUnavailable", "Unknowable"]
