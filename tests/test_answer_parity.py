"""One answer protocol everywhere: the chat CLI's `Engine.stream`, `Engine.generate_batch` (evals,
RL) and the server's scheduler give the same tokens, events and finish reason for answers that
think, call tools, hit the tool-call cap and hit a stop string.

A real tiny model will not do those things on cue, so the model here is a lookup table with the
decoder's interface (`ScriptedNet`): it writes each input id into its KV cache (the values of its
one head), and its next token is a function of the row's whole history read back from the cache.
The drivers do their real work around it: prefill, left-padded batches, the scheduler's row moves
and re-admissions, tool runs and result injection."""

from __future__ import annotations

import pytest
import torch
from token_ids import spell

from picochat.chat import render_prompt
from picochat.engine import MAX_TOOL_CALLS, Engine, FastLlama, SamplingParams
from picochat.model import KVCache, ModelConfig
from picochat.serve.scheduler import GenRequest, Scheduler
from picochat.tools import default_tools


class ScriptedNet(FastLlama):
    """Greedy decoding of this net spells `segments[k]` for the answer's k-th assistant turn (a
    new one starts after each tool result), then <|end|>."""

    def __init__(self, tokenizer, segments: list[list[int]], context: int = 2048,
                 by_prompt: dict[int, list[list[int]]] | None = None, runner_up: int | None = None):
        """by_prompt: other segments for the prompt of that many tokens (rows that differ).
        runner_up: a token always scored just below the script's, so penalties decide (a penalised
        script token loses to it)."""
        self.runner_up = runner_up
        self.config = ModelConfig(vocab_size=tokenizer.vocab_size, dim=4, n_layers=1, n_heads=1, n_kv_heads=1,
                                  max_seq_len=context)
        self.device = torch.device("cpu")
        self.segments, self.by_prompt = segments, by_prompt or {}
        sp = tokenizer.special_tokens
        self.assistant, self.result, self.end = sp["<|assistant|>"], sp["<|tool_result|>"], sp["<|end|>"]

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        return KVCache(self.config, batch_size, max_len, device=self.device)

    def __call__(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        B, T = ids.shape
        t0, t1 = cache.length, cache.length + T
        cache.v[0, :, 0, t0:t1, 0] = ids.float()
        cache.length = t1
        logits = torch.zeros(B, self.config.vocab_size)
        for b in range(B):
            history = cache.v[0, b, 0, int(cache.start[b]):t1, 0].long().tolist()
            if self.runner_up is not None:
                logits[b, self.runner_up] = 9.0
            logits[b, self.next_id(history)] = 10.0
        return logits

    def next_id(self, history: list[int]) -> int:
        opened = max(i for i, t in enumerate(history) if t == self.assistant)
        first = history.index(self.assistant) if self.assistant in history else opened
        turn = history[first:].count(self.result)            # tool results so far in this answer
        segments = self.by_prompt.get(first + 1, self.segments)
        segment = segments[turn] if turn < len(segments) else []
        at = len(history) - opened - 1
        return segment[at] if at < len(segment) else self.end


@pytest.fixture(scope="module")
def tok(run_tokenizer):
    return run_tokenizer


def calc(tok, expression: str) -> list[int]:
    return spell(tok, "<|tool_call|>", '{"name": "calculator", "arguments": {"expression": "' + expression + '"}}',
                 "<|/tool_call|>")


def scenarios(tok) -> dict[str, tuple[list[list[int]], SamplingParams]]:
    greedy = SamplingParams(temperature=0, max_tokens=2000)
    return {
        "thinks_and_calls_a_tool": ([spell(tok, "<|think|>", "times it", "<|/think|>", "Let me compute.")
                                     + calc(tok, "12*34"), spell(tok, "It is 408.")], greedy),
        "hits_the_cap": ([calc(tok, f"{k}+{k}") for k in range(MAX_TOOL_CALLS + 2)] + [spell(tok, "done")], greedy),
        "hits_a_stop_string": ([spell(tok, "alpha beta STOP gamma")],
                               SamplingParams(temperature=0, max_tokens=200, stop=("STOP",))),
        "runs_out_of_tokens": ([spell(tok, "one two three four five six seven")],
                               SamplingParams(temperature=0, max_tokens=5)),
        "calls_after_text_twice": ([spell(tok, "First ") + calc(tok, "2**10"), spell(tok, "then ") + calc(tok, "7-9"),
                                    spell(tok, "and that is all.")], greedy),
    }


def stream_events(engine, prompt, params) -> tuple[list[tuple], str]:
    events, finish = [], None
    for e in engine.stream(prompt, params):
        if e.kind == "tool_call":
            events.append(("tool", e.call.name, e.call.arguments, e.call.result))
        elif e.kind == "done":
            finish = e.finish_reason
        else:
            events.append((e.kind, e.text))
    return merge(events), finish


def scheduler_events(engine, prompt, params) -> tuple[list[tuple], dict]:
    sched = Scheduler(engine.net, engine.tokenizer, engine.tools, max_batch=2, threaded=False)
    got, done = [], []

    def emit(ev):
        if ev["type"] == "tool":
            got.append(("tool", ev["name"], ev["arguments"], ev["result"]))
        elif ev["type"] in ("done", "error"):
            done.append(ev)
        else:
            got.append((ev["type"], ev["text"]))

    # two copies of the request share the batch, the second joining later: rows move and re-admit
    sched.submit([GenRequest(prompt=prompt, params=params, emit=emit)])
    sched.tick()
    sched.submit([GenRequest(prompt=prompt, params=params, emit=lambda ev: None)])
    for _ in range(10_000):
        if done:
            break
        sched.tick()
    sched.close()
    assert done and done[0]["type"] == "done", done
    return merge(got), done[0]


def merge(events: list[tuple]) -> list[tuple]:
    """Consecutive text (or thinking) pieces as one: how they are cut is each driver's business."""
    out: list[tuple] = []
    for e in events:
        if e[0] in ("text", "thinking") and out and out[-1][0] == e[0]:
            out[-1] = (e[0], out[-1][1] + e[1])
        elif e[0] not in ("text", "thinking") or e[1]:
            out.append(e)
    return out


@pytest.mark.parametrize("name", ["thinks_and_calls_a_tool", "hits_the_cap", "hits_a_stop_string",
                                  "runs_out_of_tokens", "calls_after_text_twice"])
def test_engine_batch_and_scheduler_agree(tok, name):
    segments, params = scenarios(tok)[name]
    engine = Engine(ScriptedNet(tok, segments), tok, tools=default_tools())
    prompt = render_prompt(tok, [{"role": "user", "content": "go"}])
    streamed, stream_finish = stream_events(engine, prompt, params)
    served, done = scheduler_events(engine, prompt, params)
    other = render_prompt(tok, [{"role": "user", "content": "go on, a longer prompt"}])   # padded beside it
    batch = engine.generate_batch([prompt, other], params)
    assert streamed == served
    assert stream_finish == done["finish_reason"] == batch[0].finish_reason
    assert done["ids"] == batch[0].ids == batch[1].ids and done["mask"] == batch[0].mask
    expected = {"thinks_and_calls_a_tool": "stop", "hits_the_cap": "length", "hits_a_stop_string": "stop",
                "runs_out_of_tokens": "length", "calls_after_text_twice": "stop"}[name]
    assert stream_finish == expected
    n_calls = sum(e[0] == "tool" for e in streamed)
    assert n_calls == {"thinks_and_calls_a_tool": 1, "hits_the_cap": MAX_TOOL_CALLS,
                       "calls_after_text_twice": 2}.get(name, 0)
    assert [c.result for c in batch[0].calls] == [e[3] for e in streamed if e[0] == "tool"]


def test_a_batch_of_different_answers_keeps_each_rows_injections_apart(tok):
    """Rows of one generate_batch call differ: one calls a tool while another is still writing,
    another is fed its tool result while its neighbour samples, one finishes first and leaves
    the batch; each row's tokens equal its answer alone, with a penalty too (the discarded
    samples' part in it is tested on the Sampler itself, in test_engine.py)."""
    short = render_prompt(tok, [{"role": "user", "content": "x"}])
    middle = render_prompt(tok, [{"role": "user", "content": "a longer question"}])
    long = render_prompt(tok, [{"role": "user", "content": "a longer question, padded on the left of the batch"}])
    scripts = {len(short): [spell(tok, "a much longer preamble before the call, ") + calc(tok, "3*3"),
                            spell(tok, "nine")],
               len(middle): [spell(tok, "quick")],
               len(long): [calc(tok, "2+2"), spell(tok, "four, and more words after it")]}
    engine = Engine(ScriptedNet(tok, [], by_prompt=scripts, runner_up=tok.encode("~")[0]), tok, tools=default_tools())
    for params in (SamplingParams(temperature=0, max_tokens=300),
                   SamplingParams(temperature=0, max_tokens=300, frequency_penalty=0.1)):
        prompts = [short, middle, long]
        alone = [engine.generate_batch([p], params)[0] for p in prompts]
        together = engine.generate_batch(prompts, params)
        for a, t in zip(alone, together):
            assert (a.ids, a.mask, a.text, a.finish_reason) == (t.ids, t.mask, t.text, t.finish_reason)
        assert together[0].calls[0].result == "9" and together[2].calls[0].result == "4"
        assert together[0].text.endswith("nine") and together[1].text == "quick"
        assert all(t.finish_reason == "stop" for t in together)
