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

Each request has its own `Sampler` (penalties, seed, logprobs), text stream, stop strings and
tool-call state; an exception while handling one request fails only that request, and one in
the batched forward fails the requests of that step, never the thread.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from picochat.engine import FastLlama, Sampler, SamplingParams, StopStrings, TextStream
from picochat.model import KVCache
from picochat.rundir import PicochatError

MAX_TOOL_CALLS = 8          # server-side tool calls per answer


def draw(p: torch.Tensor) -> torch.Tensor:
    """One index per row of unnormalised probabilities p (B, N), by inverting the cumulative
    sum at a uniform point: B random numbers instead of B x N (torch.multinomial and
    exponential noise both cost ~10 ms for 32 x 8192 on one CPU core; this ~1 ms)."""
    c = p.cumsum(dim=-1)
    u = (1 - torch.rand(p.shape[0], 1, device=p.device, dtype=c.dtype)) * c[:, -1:]   # in (0, total]
    return torch.searchsorted(c, u).clamp_(max=p.shape[1] - 1).squeeze(-1)


def sample_filtered(x: torch.Tensor, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0) -> torch.Tensor:
    """Sample one id per row of logits x (B, V) after top-k, min-p and top-p filtering (the
    rule of engine.Sampler, batched, without sorting the vocabulary).

    Top-p keeps the likeliest tokens while those ranked above cover less than p: a top-256
    usually reaches p; rows where it does not (flat distributions) go through
    `nucleus_binned`. Both keep exactly the sorted rule's set (up to float rounding)."""
    B, V = x.shape
    if top_k and top_k < V:
        kth = torch.topk(x, top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = x.softmax(dim=-1)
    if min_p > 0:
        probs = probs.masked_fill(probs < min_p * probs.max(dim=-1, keepdim=True).values, 0)
    if top_p >= 1.0:
        return draw(probs)
    t = top_p * probs.sum(dim=-1, keepdim=True)             # top_p of the mass min-p left
    K = min(V, 256)
    pv, pi = probs.topk(K, dim=-1)                          # sorted, descending
    cum = pv.cumsum(dim=-1)
    covered = (cum[:, -1:] >= t)[:, 0]
    if bool(covered.all()) or K == V:
        pv = pv.masked_fill((cum - pv) > t, 0)             # drop a token once those above cover p
        return pi.gather(-1, draw(pv)[:, None]).squeeze(-1)
    out = torch.empty(B, dtype=torch.long, device=x.device)
    if bool(covered.any()):
        v, c = pv[covered], cum[covered]
        v = v.masked_fill((c - v) > t[covered], 0)
        out[covered] = pi[covered].gather(-1, draw(v)[:, None]).squeeze(-1)
    flat = ~covered
    out[flat] = draw(nucleus_binned(probs[flat], t[flat]))
    return out


def nucleus_binned(probs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The top-p nucleus of flat rows without a sort: bin the tokens by log-probability (128
    bins from the likeliest down to the least likely nonzero); bins above the one where the
    running mass reaches t are in, bins below are out, and only that bin's tokens are ranked.
    Returns probs with the tokens outside the nucleus zeroed."""
    B = probs.shape[0]
    lp = probs.clamp_min(1e-38).log()
    top = lp.max(dim=-1, keepdim=True).values + 1e-6
    bottom = lp.masked_fill(probs <= 0, float("inf")).min(dim=-1, keepdim=True).values
    bins = 128
    idx = ((top - lp) * (bins / (top - bottom + 1e-6))).long().clamp_(0, bins - 1)
    mass = torch.zeros(B, bins, device=probs.device).scatter_add_(1, idx, probs)
    cut = (mass.cumsum(dim=-1) >= t).float().argmax(dim=-1, keepdim=True)   # first bin reaching t
    keep = torch.where(idx < cut, probs, 0)
    band = idx == cut
    n = max(int(band.sum(dim=-1).max()), 1)
    bv, bi = torch.where(band, probs, -1.0).topk(n, dim=-1)  # the cut bin's tokens, descending
    bv = bv.clamp(min=0)
    before = keep.sum(dim=-1, keepdim=True) + bv.cumsum(dim=-1) - bv
    return keep.scatter_add_(-1, bi, torch.where(before <= t, bv, 0))


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
    {"type": "done", "finish_reason", "prompt_tokens", "completion_tokens"}
    {"type": "error", "message"}                          (terminal, like done)
    """
    prompt: list[int]
    params: SamplingParams
    emit: Callable[[dict], None]
    chat: bool = True                       # parse tool calls and thinking (False: plain completion)
    client_tools: frozenset[str] = frozenset()
    prefix_call: list[int] | None = None    # the prompt ends inside a tool call (tool_choice forced)
    cancelled: bool = False
    id: int = field(default_factory=itertools.count().__next__)


class Row:
    """A request's generation state."""

    def __init__(self, req: GenRequest, tokenizer, vocab: int, device):
        self.req = req
        self.seq = list(req.prompt)             # every token so far (prompt, answer, tool results)
        self.sampler = Sampler(req.params, [req.prompt], vocab, device)
        self.text = TextStream(tokenizer)
        self.stops = StopStrings(req.params.stop)
        self.mode = "call" if req.prefix_call is not None else "text"
        self.call_ids: list[int] = list(req.prefix_call or [])
        self.generated = 0
        self.n_calls = 0
        self.next_input: int | None = None      # sampled, not yet in the cache
        self.readmit = False
        self.finished = False
        self.t_submit = time.perf_counter()


class Scheduler:
    def __init__(self, net: FastLlama, tokenizer, tools=None, max_batch: int = 32, max_queue: int = 64,
                 cache_len: int | None = None):
        self.net, self.tokenizer, self.tools = net, tokenizer, tools
        self.context = net.config.max_seq_len
        self.max_batch, self.max_queue = max(1, max_batch), max(0, max_queue)
        self.cache_len = max(cache_len or 2 * self.context, self.context + 1)
        self.vocab = net.config.vocab_size
        self.cache = KVCache(net.config, self.max_batch, self.cache_len, device=net.device, dtype=torch.float32)
        sp = tokenizer.special_tokens
        self.sp = sp
        self.special_ids = set(sp.values())
        self.stop_ids = {sp[t] for t in ("<|end|>", "<|bos|>", "<|pad|>", "<|system|>", "<|user|>",
                                         "<|assistant|>", "<|tool|>", "<|tool_result|>") if t in sp}
        self.rows: list[Row] = []               # scheduler thread only
        self.waiting: deque[Row] = deque()      # under self.cond
        self.inflight = 0                       # submitted and not finished, under self.cond
        self.cond = threading.Condition()
        self.stopped = False
        self.stats = {"steps": 0, "tokens": 0, "requests": 0, "errors": 0, "moves_right": 0, "shifts_left": 0,
                      "forward_s": 0.0, "sample_s": 0.0, "step_s": 0.0, "admit_s": 0.0}
        self.thread = threading.Thread(target=self._loop, name="picochat-scheduler", daemon=True)
        self.thread.start()

    # -- public, any thread -----------------------------------------------------------------
    def submit(self, reqs: list[GenRequest]) -> None:
        """Queue requests (all or none); raises Busy when they do not fit."""
        rows = [Row(r, self.tokenizer, self.vocab, self.net.device) for r in reqs]
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
        self.thread.join(timeout=10)

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                with self.cond:
                    while not self.stopped and not self.rows and not self.waiting:
                        self.cond.wait()
                    if self.stopped:
                        break
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
        for row in list(self.rows) + list(self.waiting):
            self._fail(row, PicochatError("the server is shutting down"), remove=False)

    def _admit(self, row: Row) -> None:
        seq, c = row.seq, self.cache
        n = len(seq)
        if n >= self.context:
            raise PicochatError(f"prompt of {n} tokens does not fit the {self.context}-token context")
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
            if p.seed is None and not p.penalized and p.logprobs is None:
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
        """Sample the row's next token from its logits (1, V), or take `token` sampled in a batch."""
        if token is None:
            next_ids, logprob, top_ids, top_lp = row.sampler(logits)
            t = int(next_ids[0])
        else:
            t, logprob, top_ids, top_lp = token, None, None, None
        row.seq.append(t)
        row.generated += 1
        row.next_input = t
        self.stats["tokens"] += 1
        req, sp = row.req, self.sp
        stop_ids = self.stop_ids | set(req.params.stop_token_ids)
        finish = None
        if row.mode == "call":
            if t == sp["<|/tool_call|>"]:
                finish = self._tool_call(row)
            elif t in stop_ids:
                self._emit(row, {"type": "notice", "text": "the model ended its turn inside a tool call; "
                                                           "the call was not run"})
                finish = "stop"
            else:
                row.call_ids.append(t)
        elif t in stop_ids:
            finish = "stop"
        elif req.chat and t == sp["<|tool_call|>"]:
            self._text(row, row.text.flush(), None)
            row.mode, row.call_ids = "call", []
        elif req.chat and t == sp.get("<|think|>"):
            row.mode = "think"
        elif req.chat and t == sp.get("<|/think|>"):
            row.mode = "text"
        elif t in self.special_ids:
            pass                                # other markers are not text
        else:
            piece = row.text.push(t)
            if row.mode == "think":
                if piece:
                    self._emit(row, {"type": "thinking", "text": piece})
            else:
                entry = None
                if logprob is not None:
                    entry = {"token": self.tokenizer.decode([t]), "logprob": float(logprob[0]),
                             "bytes": list(self.tokenizer.token_bytes(t)),
                             "top_logprobs": [{"token": self.tokenizer.decode([i]), "logprob": lp,
                                               "bytes": list(self.tokenizer.token_bytes(i))}
                                              for i, lp in zip(top_ids[0].tolist(), top_lp[0].tolist())]
                             if top_ids is not None else []}
                self._text(row, piece, entry)
                if row.stops.hit is not None:
                    finish = "stop"
        if finish is None and not row.readmit:
            if row.generated >= req.params.max_tokens or len(row.seq) >= self.context:
                finish = "length"
        if finish is not None:
            if finish != "stop" or row.stops.hit is None:
                self._text(row, row.stops.push(row.text.flush()) + row.stops.flush(), None)
            self._end(row, finish)

    def _text(self, row: Row, text: str, entry: dict | None) -> None:
        shown = row.stops.push(text) if text else ""
        if shown or entry is not None:
            self._emit(row, {"type": "text", "text": shown, "logprobs": [entry] if entry else []})

    def _tool_call(self, row: Row) -> str | None:
        from picochat.tools import ToolCall, ToolRegistry

        text = self.tokenizer.decode(row.call_ids)
        row.call_ids = []
        row.mode = "text"
        registry = self.tools if self.tools is not None else ToolRegistry()
        call = registry.parse(text)
        if call.name is not None and call.name in row.req.client_tools and call.arguments is not None:
            import json
            self._emit(row, {"type": "tool_call", "id": f"call_{row.req.id}_{row.n_calls}",
                             "name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)})
            return "tool_calls"
        if call.arguments is not None:
            call = registry.run(text) if self.tools is not None else \
                ToolCall(text=text, name=call.name, arguments=call.arguments,
                         result="error: no tools are available")
        row.n_calls += 1
        self._emit(row, {"type": "tool", "name": call.name, "arguments": call.arguments, "text": text,
                         "result": call.result})
        if row.n_calls >= MAX_TOOL_CALLS:
            self._emit(row, {"type": "notice", "text": f"stopped after {MAX_TOOL_CALLS} tool calls"})
            return "stop"
        sp = self.sp
        extra = [sp["<|end|>"], sp["<|tool|>"], sp["<|tool_result|>"], *self.tokenizer.encode(call.result),
                 sp["<|/tool_result|>"], sp["<|end|>"], sp["<|assistant|>"]]
        if len(row.seq) + len(extra) + 1 >= self.context:
            self._emit(row, {"type": "notice", "text": "the tool result does not fit the context"})
            return "length"
        row.seq += extra
        row.sampler.extend(0, extra)
        row.readmit = True
        return None

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
                             "completion_tokens": row.generated})
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
