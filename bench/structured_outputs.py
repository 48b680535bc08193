"""What a structured output costs per token: picochat's grammar (llguidance) against outlines-core.

    python bench/structured_outputs.py [--run runs/demo] [--reps 5]     # pip install outlines-core for the baseline

Both libraries compile the same JSON schema against the run's tokenizer and then, for every
token of one valid answer, compute the set of allowed next tokens (as the server does before
sampling each constrained token) and advance. Prints compile time and the median time per
token of each, and the ratio against outlines-core (the baseline). Each request brings its own
schema, so the figure that decides is the cost per token of one request, compile included. Without a run, the bench
trains nothing: it needs runs/R/tokenizer (e.g. from `bash scripts/run.sh`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from picochat.engine.grammar import Grammar, json_answer
from picochat.rundir import RunDir
from picochat.tokenizer import Tokenizer

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 40},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
    "city": {"type": "string", "enum": ["Paris", "Berlin", "Tokyo"]}},
    "required": ["name", "age", "tags", "city"], "additionalProperties": False}
ANSWER = {"name": "Ada Lovelace", "age": 36, "tags": ["math", "engines"], "city": "Paris"}


def time_llguidance(tok: Tokenizer, ids: list[int]) -> tuple[float, list[float]]:
    started = time.perf_counter()
    grammar = Grammar(tok, json_answer(SCHEMA))
    compiled = time.perf_counter() - started
    logits, per_token = torch.zeros(1, tok.vocab_size), []
    for t in ids:
        started = time.perf_counter()
        allowed = grammar.constrain(logits)
        per_token.append(time.perf_counter() - started)
        assert allowed[0, t] > float("-inf"), "the answer left the grammar"
        grammar.advance(t)
    return compiled, per_token


def time_outlines(tok: Tokenizer, ids: list[int]) -> tuple[float, list[float]] | None:
    try:
        from outlines_core import Guide, Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema
    except ImportError:
        return None
    special = set(tok.special_tokens.values())
    table: dict[bytes, list[int]] = {}
    for i in range(tok.vocab_size):
        if i not in special and i != tok.end_id:
            table.setdefault(tok.token_bytes(i), []).append(i)
    started = time.perf_counter()
    regex = build_regex_from_schema(json.dumps(SCHEMA), r"( )?")   # the template's single spaces
    guide = Guide(Index(regex, Vocabulary(tok.end_id, table)))
    compiled = time.perf_counter() - started
    logits, per_token = torch.zeros(1, tok.vocab_size), []
    for t in ids:
        started = time.perf_counter()
        allowed = torch.tensor(guide.get_tokens())       # the same work as llguidance's: masked logits
        masked = torch.full_like(logits, float("-inf"))
        masked[0, allowed] = logits[0, allowed]
        per_token.append(time.perf_counter() - started)
        assert masked[0, t] > float("-inf"), "the answer left the grammar"
        guide.advance(t)
    return compiled, per_token


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    tok = Tokenizer.load(RunDir(args.run, create=False).tokenizer)
    ids = tok.encode(json.dumps(ANSWER))
    print(f"schema of {len(SCHEMA['properties'])} fields; answer of {len(ids)} tokens; vocabulary {tok.vocab_size}")
    results = {}
    for name, run in (("llguidance (picochat)", time_llguidance), ("outlines-core (baseline)", time_outlines)):
        reps = [run(tok, ids) for _ in range(args.reps)]
        if reps[0] is None:
            print(f"{name}: not installed")
            continue
        compiled = statistics.median(r[0] for r in reps)
        per_token = statistics.median(t for r in reps for t in r[1])
        request = (compiled + per_token * len(ids)) / len(ids)   # a request compiles its own schema
        results[name] = (per_token, request)
        print(f"{name:26s} compile {1e3 * compiled:8.1f} ms   per token {1e3 * per_token:7.3f} ms   "
              f"per token of one request, compile included {1e3 * request:7.3f} ms (median of {args.reps} reps)")
    if len(results) == 2:
        ll, oc = results["llguidance (picochat)"], results["outlines-core (baseline)"]
        print(f"llguidance / outlines-core: {ll[0] / oc[0]:.2f}x per token, "
              f"{ll[1] / oc[1]:.2f}x per token of a {len(ids)}-token request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
