"""Sample from a trained model, streaming tokens to the terminal as they come.

    picochat sample --run R [--stage base] --prompt "ROMEO." --temperature 0.8 --seed 1

A base model continues the prompt as a document; a chat stage (sft, dpo, rl) answers it as a
user message rendered through the chat template.

The speedrun stores each stage's samples at a fixed seed in runs/R/samples/<stage>.json
(`store_samples`), and the report card shows them (`samples_fresh`, else `make_samples`).
"""

from __future__ import annotations

import sys
import time

from picochat.engine import SamplingParams, TextStream, generate
from picochat.model import load_pretrained
from picochat.rundir import RunDir, atomic_write_json
from picochat.tokenizer import Tokenizer

SAMPLE_PROMPTS = ["The meaning of life is", "In the beginning", "Python is a programming language that"]
CHAT_PROMPTS = ["Who are you?", "How many r's are in strawberry?", "What is the capital of France?"]
# fixed seed, low temperature: samples that change only when the model does
SAMPLING = {"base": dict(temperature=0.6, top_k=50, top_p=0.95, max_tokens=60, seed=0),
            "chat": dict(temperature=0.6, top_k=50, top_p=0.95, max_tokens=80, seed=0)}


def sample(run: RunDir, stage: str, prompt: str, out=sys.stdout, **sampling) -> str:
    folder = run.require_model(stage)
    model = load_pretrained(folder).eval()
    tokenizer = Tokenizer.load(folder)
    params = SamplingParams(**sampling)
    if stage != "base":
        return _answer(model, tokenizer, prompt, params, out)
    ids, stop = tokenizer.encode(prompt, bos=True), {tokenizer.bos_id}
    out.write(prompt)
    stream, pieces = TextStream(tokenizer), []
    for (token,) in generate(model, [ids], params, stop_ids=stop):
        if token is None or token in stop:
            break
        piece = stream.push(token)
        pieces.append(piece)
        out.write(piece)
        out.flush()
    pieces.append(stream.flush())
    out.write(pieces[-1] + "\n")
    return "".join(pieces)


def _answer(model, tokenizer, prompt: str, params: SamplingParams, out) -> str:
    """A chat stage answers the prompt as a user message (rendered safely, tools available)."""
    from picochat.engine import Engine
    from picochat.tools import default_tools

    engine = Engine(model, tokenizer, tools=default_tools())
    pieces = []
    for event in engine.chat([{"role": "user", "content": prompt}], params):
        if event.kind == "text":
            pieces.append(event.text)
            out.write(event.text)
        elif event.kind == "tool_call":
            out.write(f"[{event.call.name or 'tool'}: {event.call.result}]")
        elif event.kind == "notice":
            out.write(f"[{event.text}]\n")
        out.flush()
    out.write("\n")
    return "".join(pieces)


# --- the stored samples of a run ------------------------------------------------------------------
def samples_fresh(run: RunDir, stage: str) -> bool:
    """Stored samples exist and are newer than the model they came from."""
    path, weights = run.samples(stage), run.model(stage) / "model.safetensors"
    return path.exists() and weights.exists() and path.stat().st_mtime >= weights.stat().st_mtime


def make_samples(run: RunDir, stage: str, out=sys.stdout) -> tuple[dict, list[dict]]:
    """Generate from a stage's model at a fixed seed: the base model continues document starts,
    a chat model answers user messages. Streams to `out`; returns (sampling, samples)."""
    params = SAMPLING["base" if stage == "base" else "chat"]
    results = []
    for prompt in SAMPLE_PROMPTS if stage == "base" else CHAT_PROMPTS:
        if stage != "base":
            out.write(f"> {prompt}\n")
        results.append({"prompt": prompt, "output": sample(run, stage, prompt, out=out, **params)})
        out.write("\n")
    return params, results


def store_samples(run: RunDir, stage: str) -> list[dict]:
    params, samples = make_samples(run, stage)
    atomic_write_json(run.samples(stage), {"stage": stage, "model": str(run.model(stage)),
                                           "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                           "sampling": params, "samples": samples})
    return samples
