"""Sample from a trained model, streaming tokens to the terminal as they come.

    picochat sample --run R [--stage base] --prompt "ROMEO." --temperature 0.8 --seed 1

A base model continues the prompt as a document; a chat stage (sft, dpo, rl) answers it as a
user message rendered through the chat template.
"""

from __future__ import annotations

import sys

from picochat.engine import SamplingParams, TextStream, generate
from picochat.model import load_pretrained
from picochat.rundir import RunDir
from picochat.tokenizer import Tokenizer


def sample(run: RunDir, stage: str, prompt: str, out=sys.stdout, **sampling) -> str:
    folder = run.require(run.model(stage), f"the {stage} model", f"picochat pretrain --run {run.path}"
                         if stage == "base" else f"picochat {stage} --run {run.path}")
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
