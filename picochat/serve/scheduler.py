"""Continuous batching: one thread owns the model and a batch KV cache; every decoding step
advances every active request by one token.

The batch cache is `KVCache` (left-padded rows, one shared `length`, per-row `start`), allocated
once for `max_batch` rows and twice the context in time. Active requests occupy rows
0..n-1, so a step runs the model on a contiguous view of the first n rows (no copies):

- admit: the new prompt is prefilled alone into a small cache and its keys/values copied into
  row n at positions [length - len(prompt), length), `start[n] = length - len(prompt)`; when the
  prompt is longer than `length`, every row first moves right (their padding grows).
- finish / cancel: the last row's keys/values move into the freed row (one row copy).
- full: when `length` reaches the cache's end, all rows shift left by min(start) (no row is
  longer than the context, so that frees at least the slack).
- built-in tool call: the tool runs, its result is appended to the row's tokens, and the row is
  re-admitted (prefilled again) at the head of the queue.

Each request has its own `Sampler` (penalties, seed, logprobs) and `Turn` (the answer protocol
that every generation loop shares: text, thinking, tool calls, stops, finish reasons; see
picochat.engine.turn); the scheduler only maps the Turn's events to the request's. An exception while handling one request fails only that request, and one in
the batched forward fails the requests of that step, never the thread.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from picochat.engine import (
    FastLlama,
    Sampler,
    SamplingParams,
    Token,
    Turn,
    sample_filtered,
)
from picochat.engine.turn import Event
from picochat.model import KVCache
from picochat.rundir import PicochatError


class Busy(Exception):
    """Every batch row and queue place is taken (HTTP 429)."""


@dataclass
class GenRequest:
    """One sequence to generate. `emit` receives event dicts, from the scheduler thread:

    {"type": "text", "text", "logprobs": [entry, ...]}   answer text (entries when logprobs asked)
    {"type": "thinking", "text"}                          text inside <|think|>
    {"type": "tool", "name", "arguments", "result"}       a built-in tool call run server-side
    {"type": "tool_call", "id", "name", "arguments"}      a call of a client-declared function
    {"type": "notice", "text"}
    {"type": "done", "finish_reason", "prompt_tokens", "completion_tokens", "ids", "mask"}
                                                          (ids: the answer's tokens, sampled and
                                                          injected; mask: 1 where sampled)
    {"type": "error", "message"}                          (terminal, like done)
    """
    prompt: list[int]
    params: SamplingParams
    emit: Callable[[dict], None]
    chat: bool = True                       # parse tool calls and thinking (False: plain completion)
    client_tools: frozenset[str] = frozenset()  # functions the client runs
    grammar: object | None = None           # a picochat.engine.grammar.Grammar the answer follows
    call_grammar: str | None = None         # Lark text every tool call's JSON follows
    cancelled: bool = False
    id: int = field(default_factory=itertools.count().__next__)


class Row:
    """A request's place in the batch: its answer's `Turn`, sampler and sequence."""

    def __init__(self, req: GenRequest, tokenizer, tools, context: int, vocab: int, device):
        self.req = req
        self.seq = list(req.prompt)             # every token so far (prompt, answer, tool results)
        self.sampler = Sampler(req.params, [req.prompt], vocab, device)
        self.turn = Turn(tokenizer, req.params, req.prompt, context, tools, req.client_tools, req.chat,
                         req.grammar, req.call_grammar)
        self.next_input: int | None = None      # sampled, not yet in the cache
        self.readmit = False                    # a tool result was appended: prefill again
        self.finished = False
        self.t_submit = time.perf_counter()


class Scheduler:
    def __init__(self, net: FastLlama, tokenizer, tools=None, max_batch: int = 32, max_queue: int = 64,
                 cache_len: int | None = None, threaded: bool = True):
        self.net, self.tokenizer, self.tools = net, tokenizer, tools
        self.context = net.config.max_seq_len
        self.max_batch, self.max_queue = max(1, max_batch), max(0, max_queue)
        self.cache_len = max(cache_len or 2 * self.context, self.context + 1)
        self.vocab = net.config.vocab_size
        self.cache = KVCache(net.config, self.max_batch, self.cache_len, device=net.device, dtype=torch.float32)
        self.rows: list[Row] = []               # scheduler thread only
        self.waiting: deque[Row] = deque()      # under self.cond
        self.inflight = 0                       # submitted and not finished, under self.cond
        self.cond = threading.Condition()
        self.stopped = False
        self.stats = {"steps": 0, "tokens": 0, "requests": 0, "errors": 0, "moves_right": 0, "shifts_left": 0,
                      "forward_s": 0.0, "sample_s": 0.0, "step_s": 0.0, "admit_s": 0.0}
        self.thread = threading.Thread(target=self._loop, name="picochat-scheduler", daemon=True)
        if threaded:
            self.thread.start()

    # -- public, any thread -----------------------------------------------------------------
    def submit(self, reqs: list[GenRequest]) -> None:
        """Queue requests (all or none); raises Busy when they do not fit."""
        rows = [Row(r, self.tokenizer, self.tools, self.context, self.vocab, self.net.device) for r in reqs]
        with self.cond:
            if self.stopped:
                raise Busy("the server is shutting down")
            if self.inflight + len(rows) > self.max_batch + self.max_queue:
                raise Busy(f"{self.inflight} requests in flight; the limit is "
                           f"{self.max_batch} generating + {self.max_queue} waiting")
            self.inflight += len(rows)
            self.waiting.extend(rows)
            self.cond.notify()

    def cancel(self, req: GenRequest) -> None:
        req.cancelled = True
        with self.cond:
            self.cond.notify()

    def load(self) -> dict:
        with self.cond:
            return {"active": len(self.rows), "waiting": len(self.waiting), "inflight": self.inflight,
                    "max_batch": self.max_batch, "max_queue": self.max_queue, **self.stats}

    def close(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.stopped and not self.rows and not self.waiting:
                    self.cond.wait()
                if self.stopped:
                    break
            self.tick()
        for row in list(self.rows) + list(self.waiting):
            self._fail(row, PicochatError("the server is shutting down"), remove=False)

    def tick(self) -> None:
        """One round: admit waiting requests while rows are free, then one decoding step of
        every row. The thread calls it in a loop; a Scheduler made with threaded=False is driven
        by calling it (tests do, so that joins, leaves and cache moves happen at set steps)."""
        try:
            with self.cond:
                gone = [r for r in self.waiting if r.req.cancelled]
                if gone:        # clients that left while queued give their place back now
                    self.waiting = deque(r for r in self.waiting if not r.req.cancelled)
                new = []
                while self.waiting and len(self.rows) + len(new) < self.max_batch:
                    new.append(self.waiting.popleft())
            for row in gone:
                self._end(row, None)
            self._drop([i for i, r in enumerate(self.rows) if r.req.cancelled])
            for row in new:
                if row.req.cancelled:
                    self._end(row, None)
                    continue
                try:
                    t = time.perf_counter()
                    self._admit(row)
                    self.stats["admit_s"] += time.perf_counter() - t
                except Exception as e:  # noqa: BLE001 - this request fails, the server goes on
                    self._fail(row, e)
            if self.rows:
                self._step()
        except Exception as e:  # noqa: BLE001 - a bug in the batch: fail its rows, keep serving
            for row in self.rows:
                self._fail(row, e, remove=False)
            self.rows.clear()
            self.cache.length = 0

    def _admit(self, row: Row) -> None:
        if len(row.req.prompt) >= self.context:
            raise PicochatError(f"prompt of {len(row.req.prompt)} tokens does not fit the {self.context}-token context")
        if row.next_input is None:              # first admission: a call the prompt ends with runs first
            step = row.turn.start()
            row.seq += step.inject
            row.sampler.extend(0, step.inject)
            self._events(row, step.events)
            if row.finished:
                return
        seq, c = row.seq, self.cache
        n = len(seq)
        tmp = KVCache(self.net.config, 1, n, device=self.net.device, dtype=torch.float32)
        logits = self.net(torch.tensor([seq], device=self.net.device), tmp)      # (1, V)
        m = len(self.rows)
        if m == 0:
            c.length = n
        elif n > c.length:                      # move every row right to make room
            d = n - c.length
            L = c.length
            for kv in (c.k, c.v):
                kv[:, :m, :, d:d + L] = kv[:, :m, :, :L].clone()
            c.start[:m] += d
            c.length = n
            self.stats["moves_right"] += 1
        L = c.length
        c.k[:, m, :, L - n:L] = tmp.k[:, 0, :, :n]
        c.v[:, m, :, L - n:L] = tmp.v[:, 0, :, :n]
        c.start[m] = L - n
        self.rows.append(row)
        row.readmit = False
        self._consume(row, logits)
        if row.finished or row.readmit:
            self._drop([len(self.rows) - 1])

    def _step(self) -> None:
        c, m = self.cache, len(self.rows)
        if c.length >= self.cache_len:          # full: shift every row left by the shared padding
            s = int(c.start[:m].min())
            if s == 0:
                raise PicochatError("KV cache full with no padding to reclaim")
            L = c.length
            for kv in (c.k, c.v):
                kv[:, :m, :, :L - s] = kv[:, :m, :, s:L].clone()
            c.start[:m] -= s
            c.length = L - s
            self.stats["shifts_left"] += 1
        view = object.__new__(KVCache)          # rows 0..m-1 of the batch cache, no copy
        view.k, view.v, view.start = c.k[:, :m], c.v[:, :m], c.start[:m]
        view.length, view.max_len = c.length, c.max_len
        ids = torch.tensor([[r.next_input] for r in self.rows], device=self.net.device)
        t0 = time.perf_counter()
        logits = self.net(ids, view)                                              # (m, V)
        c.length = view.length
        self.stats["steps"] += 1
        t1 = time.perf_counter()
        batched = self._sample_batched(logits)
        t2 = time.perf_counter()
        self.stats["forward_s"] += t1 - t0
        self.stats["sample_s"] += t2 - t1
        done = []
        for i, row in enumerate(self.rows):
            try:
                if i in batched:
                    self._consume(row, None, batched[i])
                else:
                    self._consume(row, logits[i:i + 1])
            except Exception as e:  # noqa: BLE001
                self._fail(row, e, remove=False)
            if row.finished or row.readmit:
                done.append(i)
        self._drop(done)
        self.stats["step_s"] += time.perf_counter() - t0

    def _sample_batched(self, logits: torch.Tensor) -> dict[int, int]:
        """Next tokens of the rows whose sampling needs no per-request state (no seed, penalties
        or logprobs), sampled together per setting: one top-k instead of a full sort per row.
        The rule is `Sampler`'s (top-k, then min-p, then top-p on what is left)."""
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(self.rows):
            p = row.req.params
            if p.seed is None and not p.penalized and p.logprobs is None and not row.turn.constrained:
                groups.setdefault((p.temperature, p.top_k, p.top_p, p.min_p), []).append(i)
        out: dict[int, int] = {}
        for (temperature, top_k, top_p, min_p), idx in groups.items():
            x = logits[idx].float()
            if temperature == 0:
                chosen = x.argmax(dim=-1)
            else:
                chosen = sample_filtered(x / temperature, top_k, top_p, min_p)
            out.update(zip(idx, chosen.tolist()))
        return out

    def _drop(self, indices: list[int]) -> None:
        """Free rows (finished, cancelled or leaving to be re-admitted); the last rows fill the gaps."""
        c = self.cache
        for j in sorted(set(indices), reverse=True):
            row = self.rows[j]
            last = len(self.rows) - 1
            if j != last:
                L = c.length
                c.k[:, j, :, :L] = c.k[:, last, :, :L]
                c.v[:, j, :, :L] = c.v[:, last, :, :L]
                c.start[j] = c.start[last]
                self.rows[j] = self.rows[last]
            self.rows.pop()
            if row.readmit and not row.finished and not row.req.cancelled:
                with self.cond:
                    self.waiting.appendleft(row)
            elif not row.finished:
                self._end(row, None)            # cancelled: no events, the client is gone
        if not self.rows:
            c.length = 0

    # -- one request's tokens ----------------------------------------------------------------------
    def _consume(self, row: Row, logits: torch.Tensor | None, token: int | None = None) -> None:
        """Sample the row's next token from its logits (1, V), or take `token` sampled in a
        batch, and hand it to the row's Turn."""
        if token is None:
            next_ids, logprob, top_ids, top_lp = row.sampler(row.turn.constrain(logits))
            sampled = Token(int(next_ids[0]), float(logprob[0]) if logprob is not None else None,
                            list(zip(top_ids[0].tolist(), top_lp[0].tolist())) if top_ids is not None else None)
        else:
            sampled = Token(token)
        row.seq.append(sampled.id)
        row.next_input = sampled.id
        self.stats["tokens"] += 1
        step = row.turn.feed(sampled)
        if not row.req.chat and sampled.logprob is not None and any(e.kind == "done" for e in step.events) \
                and not any(e.kind == "text" for e in step.events):
            # a completion that ended on a stop token still reports that token's logprob, as
            # OpenAI-compatible servers do: clients that score prompts (echo + max_tokens=1, as
            # lm-evaluation-harness does) drop the last entry as the generated one
            self._emit(row, {"type": "text", "text": "", "logprobs": [self._logprobs(sampled)]})
        if step.inject:                         # a tool result: the row is prefilled again with it
            row.seq += step.inject
            row.sampler.extend(0, step.inject)
            row.readmit = True
        self._events(row, step.events)

    def _events(self, row: Row, events: list[Event]) -> None:
        """A Turn's events as the request's event dicts (see GenRequest)."""
        for ev in events:
            if ev.kind == "text":
                self._emit(row, {"type": "text", "text": ev.text,
                                 "logprobs": [self._logprobs(ev.token)] if ev.token and ev.token.logprob is not None
                                 else []})
            elif ev.kind in ("thinking", "notice"):
                self._emit(row, {"type": ev.kind, "text": ev.text})
            elif ev.kind == "tool_call":
                c = ev.call
                self._emit(row, {"type": "tool", "name": c.name, "arguments": c.arguments, "text": c.text,
                                 "result": c.result})
            elif ev.kind == "function_call":
                self._emit(row, {"type": "tool_call", "id": f"call_{row.req.id}_{len(row.turn.calls) - 1}",
                                 "name": ev.call.name, "arguments": json.dumps(ev.call.arguments, ensure_ascii=False)})
            elif ev.kind == "done":
                self._end(row, ev.finish_reason)

    def _logprobs(self, token: Token) -> dict:
        """A token's OpenAI logprobs entry."""
        tok = self.tokenizer

        def entry(t: int, lp: float) -> dict:
            return {"token": tok.decode([t]), "logprob": lp, "bytes": list(tok.token_bytes(t))}

        return {**entry(token.id, token.logprob),
                "top_logprobs": [entry(t, lp) for t, lp in token.top_logprobs or []]}

    # -- endings ---------------------------------------------------------------------------------
    def _emit(self, row: Row, event: dict) -> None:
        if row.req.cancelled:
            return
        try:
            row.req.emit(event)
        except Exception:  # noqa: BLE001 - a closed client loop must not stop the others
            row.req.cancelled = True

    def _end(self, row: Row, finish: str | None) -> None:
        if row.finished:
            return
        row.finished = True
        self.stats["requests"] += 1
        if finish is not None:
            self._emit(row, {"type": "done", "finish_reason": finish, "prompt_tokens": len(row.req.prompt),
                             "completion_tokens": len(row.turn.tokens), "ids": row.turn.ids, "mask": row.turn.mask})
        with self.cond:
            self.inflight -= 1

    def _fail(self, row: Row, error: Exception, remove: bool = True) -> None:
        self.stats["errors"] += 1
        if not isinstance(error, PicochatError):
            traceback.print_exception(error)
        if not row.finished:
            self._emit(row, {"type": "error", "message": str(error) or type(error).__name__})
            row.finished = True
            self.stats["requests"] += 1
            with self.cond:
                self.inflight -= 1
        if remove and row in self.rows:
            self._drop([self.rows.index(row)])
