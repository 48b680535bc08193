"""Does the fine-tuned model know who it is, and does it use the calculator with the right numbers?

    python bench/identity_check.py --run runs/R [--stage sft] [--samples 5] [--temperature 0.7]

Identity: "who are you?" and 20 paraphrases never seen in training (the identity task's "eval"
split; the first is trained on), each sampled `--samples` times; a sample passes when the reply
names picochat.
Calculator: the arithmetic task's "eval" split, products of a 3-5-digit and a 3-4-digit number
in phrasings the training conversations never use, with fresh numbers per seed; the answer runs
through picochat's tools as in chat (Engine.generate_batch), and is scored twice: was the
calculator called with exactly the user's operands, and does the final answer state the right
product. Prints each rate with its 95% interval and a transcript.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picochat.chat import render_prompt
from picochat.engine import SamplingParams, load_engine
from picochat.rundir import RunDir
from picochat.tasks import TASKS
from picochat.tools import default_tools


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a proportion k/n (Wilson's, sound at 0 and n)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def rate(name: str, passed: list[bool]) -> str:
    k, n = sum(passed), len(passed)
    lo, hi = wilson(k, n)
    return f"{name}: {k}/{n} = {100 * k / max(n, 1):.1f}% [95% {100 * lo:.1f}, {100 * hi:.1f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--stage", default="sft")
    p.add_argument("--samples", type=int, default=5, help="samples per identity prompt")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--products", type=int, default=40, help="multi-digit products to ask")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="fp32")
    args = p.parse_args(argv)

    run = RunDir(args.run, create=False)
    engine = load_engine(run.require_model(args.stage), dtype=args.dtype, tools=default_tools())
    tok = engine.tokenizer
    params = SamplingParams(temperature=args.temperature, max_tokens=80, seed=args.seed)
    started = time.time()

    identity = TASKS["identity"]
    asks = identity.problems(random.Random(args.seed), 21 * args.samples, split="eval")
    answers = engine.generate_batch([render_prompt(tok, q.prompt) for q in asks], params)
    passed = [identity.check(q, a) for q, a in zip(asks, answers)]
    print(f"== identity: 21 held-out prompts x {args.samples} samples at T={args.temperature} "
          f"({args.stage} model of {run.path})")
    for q, a, ok in list(zip(asks, answers, passed))[:21]:
        print(f"[{'ok' if ok else '--'}] user: {q.prompt[-1]['content']}\n      picochat: {a.text}")
    print(rate("identity", passed))

    arithmetic = TASKS["arithmetic"]
    cases = arithmetic.problems(random.Random(args.seed), args.products, split="eval")
    answers = engine.generate_batch([render_prompt(tok, c.prompt) for c in cases], params)
    copied = [arithmetic.operands_copied(c, a) for c, a in zip(cases, answers)]
    right = [arithmetic.check(c, a) for c, a in zip(cases, answers)]
    print(f"\n== calculator: {len(cases)} products of 3-5 x 3-4 digits, held-out phrasings, T={args.temperature}")
    for c, a in list(zip(cases, answers))[:10]:
        calls = "; ".join(f"{x.name} {x.arguments} -> {x.result}" for x in a.calls) or "no tool call"
        print(f"user: {c.prompt[-1]['content']}\n      [{calls}]\n      picochat: {a.text}")
    print(rate("calculator called with exactly the user's operands", copied))
    print(rate("final answer states the right product", right))
    print(f"({time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
