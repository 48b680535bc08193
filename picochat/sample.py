"""Sample from a trained model, streaming tokens to the terminal as they come.

    picochat sample --run R [--stage base] --prompt "ROMEO." --temperature 0.8 --seed 1 [--dtype auto]
    picochat sample --run R --stage sft --prompt "who are you?" --temperature 1 --best-of 8

A base model continues the prompt as a document; a chat stage (sft, dpo, rl) answers it as a
user message rendered through the chat template. With --best-of N a chat stage samples N
answers together and prints the one the run's reward model (runs/R/reward) scores highest,
after every candidate's score.

The speedrun stores each stage's samples at a fixed seed in runs/R/samples/<stage>.json
(`store_samples`), and the report card shows them (`samples_fresh`, else `make_samples`).
"""

from __future__ import annotations

import sys
import time

from picochat.engine import Engine, SamplingParams, TextStream, generate, load_engine
from picochat.rundir import PicochatError, RunDir, atomic_write_json
from picochat.tools import default_tools

SAMPLE_PROMPTS = ["The meaning of life is", "In the beginning", "Python is a programming language that"]
CHAT_PROMPTS = ["Who are you?", "How many r's are in strawberry?", "What is the capital of France?"]
# fixed seed, low temperature: samples that change only when the model does
SAMPLING = {"base": dict(temperature=0.6, top_k=50, top_p=0.95, max_tokens=60, seed=0),
            "chat": dict(temperature=0.6, top_k=50, top_p=0.95, max_tokens=80, seed=0)}


def sample(run: RunDir, stage: str, prompt: str, out=sys.stdout, dtype: str = "fp32", device: str = "cpu",
           best_of: int = 1, **sampling) -> str:
    """Stream a continuation (base) or an answer (chat stages) of `prompt` to `out`; returns it.
    dtype and device as `load_engine` takes them; the defaults (fp32 on the CPU) keep the
    speedrun's stored samples the same on every machine."""
    params = SamplingParams(**sampling)
    engine = load_engine(run.require_model(stage), dtype=dtype, device=device,
                         tools=None if stage == "base" else default_tools())
    if stage != "base" and best_of > 1:
        return _best_answer(run, engine, prompt, params, best_of, out)
    if stage != "base":
        return _answer(engine, prompt, params, out)
    if best_of > 1:
        raise PicochatError("--best-of ranks chat answers with the reward model; sample a chat stage (--stage sft)")
    tokenizer = engine.tokenizer
    ids, stop = tokenizer.encode(prompt, bos=True), {tokenizer.bos_id}
    out.write(prompt)
    stream, pieces = TextStream(tokenizer), []
    # plain generation: a base model's text ends only at the next document's <|bos|>
    for (token,) in generate(engine.net, [ids], params, stop_ids=stop):
        if token is None or token in stop:
            break
        piece = stream.push(token)
        pieces.append(piece)
        out.write(piece)
        out.flush()
    pieces.append(stream.flush())
    out.write(pieces[-1] + "\n")
    return "".join(pieces)


def _best_answer(run: RunDir, engine: Engine, prompt: str, params: SamplingParams, n: int, out) -> str:
    """N answers sampled together, ranked by the reward model; prints their scores, then the best."""
    from picochat.chat import render_prompt
    from picochat.train.reward import RewardScorer

    scorer = RewardScorer(run.require_model("reward"))
    messages = [{"role": "user", "content": prompt}]
    answers = engine.generate_batch([render_prompt(engine.tokenizer, messages)] * n, params)
    scores = scorer(messages, [a.messages if a.messages and a.messages[-1]["role"] == "assistant"
                               else [{"role": "assistant", "content": a.text}] for a in answers])
    for i in sorted(range(n), key=lambda i: -scores[i]):
        out.write(f"[{scores[i]:+.3f}] {a_line(answers[i].text)}\n")
    best = answers[max(range(n), key=lambda i: scores[i])].text
    out.write(f"best of {n}: {best}\n")
    return best


def a_line(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _answer(engine: Engine, prompt: str, params: SamplingParams, out) -> str:
    """A chat stage answers the prompt as a user message (rendered safely, tools available)."""
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
