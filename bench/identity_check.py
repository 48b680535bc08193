"""Does the fine-tuned model know who it is, and does it use the calculator?

    python bench/identity_check.py --run runs/R [--stage sft] [--samples 5] [--temperature 0.7]

Identity: "who are you?" and 20 paraphrases never seen in training
(picochat.sft_data.generators.IDENTITY_EVAL_PROMPTS), each sampled `--samples` times; a sample
passes when the reply names picochat. Calculator: multi-digit products in phrasings partly
new to the model; a sample passes when the model's first move is a `calculator` tool call
whose expression is that product. The tool result is then appended (computed here) and the
model's final answer checked. Prints the rates (the issue's floor: identity >= 90%) and a
transcript.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picochat.chat import parse_tool_calls, render_prompt
from picochat.engine import SamplingParams, generate
from picochat.model import load_pretrained
from picochat.rundir import RunDir
from picochat.sft_data.generators import IDENTITY_EVAL_PROMPTS
from picochat.tokenizer import Tokenizer
from picochat.tools.calculator import CalculatorError, calculate

PRODUCT_PROMPTS = ["What is {a} * {b}?", "What's {a} times {b}?", "Could you multiply {a} by {b}?",
                   "{a} x {b}", "I need {a} times {b}.", "How much is {a}*{b}?"]


def complete(model, tok, prompts: list[list[int]], params: SamplingParams) -> list[list[int]]:
    """Each prompt's generated ids up to and including <|end|> (batched)."""
    outs: list[list[int]] = [[] for _ in prompts]
    for step in generate(model, prompts, params, stop_ids={tok.end_id}):
        for row, t in enumerate(step):
            if t is not None:
                outs[row].append(t)
    return outs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--stage", default="sft")
    p.add_argument("--samples", type=int, default=5, help="samples per prompt")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--products", type=int, default=20, help="multi-digit products to ask")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    run = RunDir(args.run, create=False)
    folder = run.model(args.stage)
    model = load_pretrained(folder).eval()
    tok = Tokenizer.load(folder)
    params = SamplingParams(temperature=args.temperature, max_tokens=80, seed=args.seed)
    started = time.time()

    # --- identity -------------------------------------------------------------------------------
    asks = [q for q in IDENTITY_EVAL_PROMPTS for _ in range(args.samples)]
    replies = complete(model, tok, [render_prompt(tok, [{"role": "user", "content": q}]) for q in asks], params)
    texts = [parse_tool_calls(tok, r)[0] for r in replies]
    passed = ["picochat" in t.lower() for t in texts]
    print(f"== identity: {len(IDENTITY_EVAL_PROMPTS)} prompts x {args.samples} samples at "
          f"T={args.temperature} ({args.stage} model of {run.path})")
    for i, q in enumerate(IDENTITY_EVAL_PROMPTS):
        mine = passed[i * args.samples:(i + 1) * args.samples]
        print(f"[{sum(mine)}/{len(mine)}] user: {q}\n      picochat: {texts[i * args.samples]}")
    first = [passed[i * args.samples] for i in range(len(IDENTITY_EVAL_PROMPTS))]
    print(f"identity: {sum(passed)}/{len(passed)} samples = {100 * sum(passed) / len(passed):.1f}% "
          f"(first sample per prompt: {sum(first)}/{len(first)}); floor 90%")

    # --- calculator --------------------------------------------------------------------------------
    rng = random.Random(args.seed)
    cases = []
    for i in range(args.products):
        a, b = rng.randint(12, 9999), rng.randint(11, 999)
        cases.append((a, b, PRODUCT_PROMPTS[i % len(PRODUCT_PROMPTS)].format(a=a, b=b)))
    convs = [[{"role": "user", "content": q}] for _, _, q in cases]
    first_moves = complete(model, tok, [render_prompt(tok, c) for c in convs], params)
    calls = right = 0
    follow, follow_convs = [], []
    for (a, b, q), conv, ids in zip(cases, convs, first_moves):
        text, found, errors = parse_tool_calls(tok, ids)
        call = next((c for c in found if c["function"]["name"] == "calculator"), None)
        expr = str(call["function"]["arguments"].get("expression", "")) if call else ""
        m = re.fullmatch(r"\s*(\d+)\s*[*x×]\s*(\d+)\s*", expr)
        ok = bool(m) and {int(m.group(1)), int(m.group(2))} == {a, b}
        calls += call is not None
        right += ok
        conv.append({"role": "assistant", "content": text, "tool_calls": found} if found else
                    {"role": "assistant", "content": text})
        if call is not None:
            try:
                result = calculate(expr)
            except CalculatorError as e:
                result = f"error: {e}"
            conv.append({"role": "tool", "content": result})
            follow.append(render_prompt(tok, conv))
            follow_convs.append((a, b, conv))
    finals = complete(model, tok, follow, params) if follow else []
    final_ok = 0
    print(f"\n== calculator: {len(cases)} multi-digit products at T={args.temperature}")
    final_by_conv = {id(c): parse_tool_calls(tok, f)[0] for (_, _, c), f in zip(follow_convs, finals)}
    for (a, b, q), conv in zip(cases, convs):
        print(f"user: {q}")
        msg = conv[1]
        if msg.get("tool_calls"):
            fn = msg["tool_calls"][0]["function"]
            print(f"      picochat: {msg['content']}[tool call {fn['name']} {fn['arguments']}]")
            print(f"      tool: {conv[2]['content']}")
            final = final_by_conv[id(conv)]
            final_ok += str(a * b) in final.replace(",", "")
            print(f"      picochat: {final}")
        else:
            print(f"      picochat: {msg['content']}  [no tool call]")
    print(f"calculator calls: {calls}/{len(cases)}; with the right expression: {right}/{len(cases)}; "
          f"final answer states the result: {final_ok}/{len(cases)}")
    print(f"({time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
