"""`Engine`: conversations in, answers out, through one decoding loop.

    engine = load_engine("runs/demo/sft", tools=default_tools())
    for event in engine.chat([{"role": "user", "content": "What is 12*34?"}], SamplingParams()):
        print(event.kind, event.text)                      # streamed, for the chat CLI
    done = engine.generate_batch(prompts, SamplingParams(temperature=1.0, max_tokens=64))
    done[0].ids, done[0].mask, done[0].text, done[0].finish_reason   # for evals, RL, the arena

Rendering never lets message text become special tokens (picochat.chat.render_ids); `fit`
makes a long conversation fit the context (oldest turns dropped, the system prompt kept, the
caller told). Both `stream` and `generate_batch` run `_decode`: prefill the prompts into one
KV cache, then sample every row, give each sampled token to its row's `Turn` (the answer
protocol: text, thinking, tool calls, stops; picochat.engine.turn), and feed the model what the
`Turn` says: the token, then any injected tool result. With one row, an injected result goes in
as one chunk; in a batch, each row takes its injected ids one per step (a forced-token queue),
so the batch stays rectangular.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from picochat.chat import render_ids, render_prompt
from picochat.engine.fast import as_fast
from picochat.engine.sampling import Sampler, SamplingParams, Token
from picochat.engine.turn import Event, Step, Turn
from picochat.hardware import pick_device, pick_dtype
from picochat.model import Llama, load_pretrained
from picochat.rundir import PicochatError
from picochat.tokenizer import Tokenizer


@dataclass
class Completion:
    """One answer of `Engine.generate_batch`."""
    ids: list[int]                  # every token after the prompt: sampled, and injected tool results
    mask: list[int]                 # per id: 1 sampled by the model, 0 injected
    logprobs: list[float | None]    # per id: the sampled token's log-probability (params.logprobs set), else None
    text: str                       # the answer's text (thinking and tool calls excluded)
    messages: list[dict]            # the answer as chat messages (assistant, tool, assistant, ...)
    calls: list                     # the ToolCalls made, in order
    finish_reason: str              # "stop" | "length" | "tool_calls"
    notices: list[str]


class Engine:
    """A model + tokenizer (+ tools) that turns conversations into answers."""

    def __init__(self, model: Llama, tokenizer, dtype: "torch.dtype | str | None" = None, tools=None):
        self.net = as_fast(model, dtype)            # the weights are converted once, here
        self.tokenizer = tokenizer
        self.tools = tools
        self.context = self.net.config.max_seq_len
        self.special_ids = set(tokenizer.special_tokens.values())

    # -- rendering ------------------------------------------------------------------------------
    def render(self, messages: list[dict], add_generation_prompt: bool = True,
               memo: dict | None = None) -> list[int]:
        """Messages -> prompt ids (picochat.chat.render_ids: message text is encoded as plain
        text, so typed "<|end|>" never becomes a turn boundary). `memo` caches each text's ids
        across the re-renders of `fit`."""
        encode = self.tokenizer.encode
        if memo is not None:
            def encode(text: str) -> list[int]:
                if text not in memo:
                    memo[text] = self.tokenizer.encode(text)
                return memo[text]
        if add_generation_prompt:
            return render_prompt(self.tokenizer, messages, encode)
        return render_ids(self.tokenizer, messages, encode).ids

    def fit(self, messages: list[dict], reserve: int) -> tuple[list[dict], list[int], list[str]]:
        """Make the rendered conversation leave `reserve` tokens of the context for the answer:
        drop the oldest turns (a turn: a user message and everything up to the next), keeping
        system messages; if the last turn alone is too long, cut its message text.
        Returns the kept messages, their prompt ids and notices for the user."""
        budget = max(self.context - reserve, 8)
        notices = []
        system = [m for m in messages if m.get("role") == "system"]
        rest = [m for m in messages if m.get("role") != "system"]
        turns: list[list[dict]] = []
        for m in rest:
            if m.get("role") == "user" or not turns:
                turns.append([])
            turns[-1].append(m)
        memo: dict[str, list[int]] = {}
        ids = self.render(system + [m for t in turns for m in t], memo=memo)
        dropped = 0
        while len(ids) > budget and len(turns) > 1:
            turns.pop(0)
            dropped += 1
            ids = self.render(system + [m for t in turns for m in t], memo=memo)
        if dropped:
            notices.append(f"the conversation is longer than the {self.context}-token context: "
                           f"dropped the {dropped} oldest turn{'s' * (dropped > 1)} (the system prompt is kept)")
        kept = system + [m for t in turns for m in t]
        if len(ids) > budget:
            # one turn too long: shorten the longest message texts, newest last
            over = len(ids) - budget
            for m in sorted(kept, key=lambda m: -len(str(m.get("content") or ""))):
                content = str(m.get("content") or "")
                if not content or over <= 0:
                    continue
                toks = memo.get(content) or self.tokenizer.encode(content)
                keep = max(len(toks) - over - 2, 0)
                new = dict(m, content=self.tokenizer.decode(toks[:keep]))
                kept = [new if k is m else k for k in kept]
                notices.append(f"a {m['role']} message of {len(toks):,} tokens does not fit the "
                               f"{self.context}-token context: cut to its first {keep:,} tokens")
                ids = self.render(kept, memo=memo)
                over = len(ids) - budget
            if len(ids) > budget:   # template overhead alone (many system messages): keep the tail
                ids = ids[-budget:]
                notices.append("the prompt was cut to the context")
        return kept, ids, notices

    # -- generation -----------------------------------------------------------------------------
    def chat(self, messages: list[dict], params: SamplingParams, reserve: int | None = None) -> Iterator[Event]:
        """Answer a conversation: fit it to the context, then `stream` the answer."""
        reserve = reserve if reserve is not None else min(params.max_tokens, self.context // 4)
        _, ids, notices = self.fit(messages, reserve)
        for n in notices:
            yield Event("notice", n)
        yield from self.stream(ids, params)

    def stream(self, prompt: list[int], params: SamplingParams) -> Iterator[Event]:
        """Generate one answer for prompt ids that end where the assistant speaks, event by
        event (the last is "done"). Never raises for the model's or the tools' output."""
        prompt = list(prompt)[-(self.context - 1):]
        turn = self.turn(prompt, params)
        for _, step in self._decode([prompt], [turn], params):
            yield from step.events

    def generate_batch(self, prompts: list[list[int]], params: SamplingParams, chat: bool = True,
                       client_tools: frozenset[str] = frozenset(), grammars: list | None = None) -> list[Completion]:
        """One answer per prompt, decoded together. chat=False: plain completions (no tool
        calls or thinking). grammars: per prompt, a Grammar its answer must follow, or None."""
        if not prompts or any(not p for p in prompts):
            raise PicochatError("every prompt needs at least one token")
        longest = max(len(p) for p in prompts)
        if longest >= self.context:
            raise PicochatError(f"prompt of {longest} tokens does not fit the {self.context}-token context")
        grammars = grammars or [None] * len(prompts)
        turns = [self.turn(p, params, chat, client_tools, g) for p, g in zip(prompts, grammars)]
        notices: list[list[str]] = [[] for _ in prompts]
        for b, step in self._decode(prompts, turns, params):
            notices[b] += [e.text for e in step.events if e.kind == "notice"]
        return [self._completion(turn, params, n) for turn, n in zip(turns, notices)]

    def turn(self, prompt: list[int], params: SamplingParams, chat: bool = True,
             client_tools: frozenset[str] = frozenset(), grammar=None, call_grammar: str | None = None) -> Turn:
        return Turn(self.tokenizer, params, prompt, self.context, self.tools, client_tools, chat, grammar,
                    call_grammar)

    @staticmethod
    def _completion(turn: Turn, params: SamplingParams, notices: list[str]) -> Completion:
        sampled = iter(turn.tokens)
        logprobs = [next(sampled).logprob if s else None for s in turn.sampled]
        return Completion(ids=list(turn.ids), mask=turn.mask, logprobs=logprobs, text=turn.answer,
                          messages=turn.messages, calls=list(turn.calls),
                          finish_reason=turn.finish_reason or "length", notices=notices)

    # -- the decoding loop -----------------------------------------------------------------------
    def _decode(self, prompts: list[list[int]], turns: list[Turn],
                params: SamplingParams) -> Iterator[tuple[int, Step]]:
        """Run every row's Turn to its end; yields (row, step) as they happen. A finished row
        leaves the batch at once (its keys and values dropped), so the rest decode faster."""
        net = self.net
        feeds: dict[int, list[int]] = {}
        for b, turn in enumerate(turns):
            step = turn.start()
            yield b, step
            if not turn.done:
                feeds[b] = prompts[b] + step.inject
        rows = list(feeds)                          # the batch's rows, as indices into `turns`
        if not rows:
            return
        sampler = Sampler(params, [prompts[b] for b in rows], net.config.vocab_size, net.device)
        for i, b in enumerate(rows):
            sampler.extend(i, feeds[b][len(prompts[b]):])
        longest = max(len(f) for f in feeds.values())
        # rows share one left-padded timeline; a row grows by at most max_tokens, or with tool
        # results injected up to the context from its own start
        growth = max(self.context - len(feeds[b]) if turns[b].chat else params.max_tokens for b in rows)
        cache = net.new_cache(len(rows), longest + growth)
        cache.start = torch.tensor([longest - len(feeds[b]) for b in rows], device=net.device)
        forced: dict[int, list[int]] = {b: [] for b in rows}    # injected ids still to feed, per row
        padded = [[0] * (longest - len(feeds[b])) + feeds[b] for b in rows]
        with torch.inference_mode():
            logits = net(torch.tensor(padded, device=net.device), cache)
            while rows:
                for i, b in enumerate(rows):
                    if turns[b].constrained and not forced[b]:
                        logits[i:i + 1] = turns[b].constrain(logits[i:i + 1])
                next_ids, logprob, top_ids, top_lp = sampler(logits, [not forced[b] for b in rows])
                inputs = next_ids.tolist()
                for i, b in enumerate(rows):
                    if forced[b]:
                        inputs[i] = forced[b].pop(0)    # this position is the tool result's
                        continue
                    step = turns[b].feed(_token(i, inputs[i], logprob, top_ids, top_lp))
                    yield b, step
                    forced[b] = list(step.inject)
                    sampler.extend(i, step.inject)
                keep = [i for i, b in enumerate(rows) if not turns[b].done]
                if len(keep) < len(rows):
                    rows, inputs = [rows[i] for i in keep], [inputs[i] for i in keep]
                    cache.keep_rows(keep)
                    sampler.keep_rows(keep)
                if len(rows) == 1:                  # alone, a row takes its injected ids in one go
                    chunk, forced[rows[0]] = [[inputs[0], *forced[rows[0]]]], []
                else:
                    chunk = [[t] for t in inputs]
                if rows:
                    logits = net(torch.tensor(chunk, device=net.device), cache)


def _token(b: int, t: int, logprob, top_ids, top_lp) -> Token:
    return Token(t, float(logprob[b]) if logprob is not None else None,
                 list(zip(top_ids[b].tolist(), top_lp[b].tolist())) if top_ids is not None else None)


def load_engine(folder, dtype: str = "auto", tools=None, device: str = "cpu") -> Engine:
    """An Engine for a model directory (weights + tokenizer).

    dtype: fp32 | bf16 | int8 (weight-only, per-row scales) | auto: bf16 where the hardware
    has it (CUDA; CPUs with AMX or AVX-512 BF16), else fp32 (bench/generate_throughput.py
    compares them). device: auto (CUDA when there is one) or a torch device name."""
    dev = pick_device(device)
    compute = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": "int8"}.get(dtype)
    if dtype == "auto":
        compute = pick_dtype("auto", dev)
    elif compute is None:
        raise PicochatError(f"dtype must be auto, fp32, bf16 or int8, not {dtype!r}")
    model = load_pretrained(folder, device=dev).eval()
    tokenizer = Tokenizer.load(folder)
    return Engine(model, tokenizer, dtype=compute, tools=tools)
