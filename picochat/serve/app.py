"""The FastAPI app: an OpenAI-compatible /v1 API and the web UI's static files.

    POST /v1/chat/completions   messages -> answer (JSON, or server-sent events with stream=true);
                                tools / tool_choice: the client's functions come back as
                                tool_calls; built-in tools (the calculator) run here
    POST /v1/completions        raw text continuation (prompts as texts or token ids; echo with
                                logprobs scores the prompt)
    POST /v1/embeddings         one vector per input: the model's own mean-pooled hidden states
    POST /v1/feedback           a thumbs up/down on an answer, or which of two answers was better:
                                stored in runs/R/prefs for the reward model and DPO (picochat.prefs)
    GET  /v1/models             the one model this server holds
    GET  /health                liveness and load
    GET  /                      the chat page (static files in picochat/serve/static/)
    GET  /openapi.json, /docs   the schema

Errors are OpenAI-shaped, {"error": {"message", "type", "param", "code"}}, with the status a
client expects: 400 bad values / malformed JSON / prompt longer than the context, 401 wrong or
missing API key (when one is set), 404, 413 body too large, 422 wrong types, 429 every batch row
and queue place taken.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from picochat.engine import SamplingParams
from picochat.rundir import PicochatError
from picochat.serve.scheduler import Busy, GenRequest, Scheduler
from picochat.serve.schemas import (MAX_INPUTS, ChatCompletion, ChatCompletionRequest, Completion,
                                    CompletionRequest, EmbeddingList, EmbeddingRequest, ErrorResponse,
                                    FeedbackRequest, ModelList)

STATIC = Path(__file__).parent / "static"
DEFAULT_TEMPERATURE, DEFAULT_TOP_P = 0.8, 0.95     # as generation_config.json


@dataclass
class ServeConfig:
    model_name: str = "picochat"
    api_key: str | None = None
    max_concurrency: int = 32       # requests decoded together (batch rows)
    max_queue: int = 64             # more wait; beyond both: 429
    max_body: int = 4_000_000       # bytes
    max_tokens: int | None = None   # largest max_tokens accepted (default: the context)


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def error_json(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                        status_code=status, headers=headers)


ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in (
    (400, "bad request"), (401, "missing or wrong API key"), (413, "body too large"),
    (422, "wrong types"), (429, "too many requests"))}


# --- middleware (plain ASGI, so it runs before FastAPI reads the body) ----------------------------
class Guard:
    """API key check on /v1, and the body size limit (413) for every request: the body is read
    here, up to the limit, then replayed to the app."""

    def __init__(self, app, api_key: str | None, max_body: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key and scope.get("path", "").startswith("/v1"):
            auth = headers.get("authorization", "")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                msg = "Incorrect API key provided." if given else \
                    "Missing API key: send it as 'Authorization: Bearer KEY'."
                return await error_json(401, msg, code="invalid_api_key",
                                        headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
        length = headers.get("content-length")
        too_big = error_json(413, f"request body larger than {self.max_body:,} bytes", code="body_too_large")
        try:
            if length is not None and int(length) > self.max_body:
                return await too_big(scope, receive, send)
        except ValueError:
            return await error_json(400, "bad Content-Length header")(scope, receive, send)
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


# --- requests -> generation ----------------------------------------------------------------------
class Server:
    """What the handlers share: the tokenizer, the scheduler and the limits."""

    def __init__(self, net, tokenizer, tools, config: ServeConfig, model=None, store=None):
        self.tokenizer, self.config, self.store = tokenizer, config, store
        self.context = net.config.max_seq_len
        self.vocab = net.config.vocab_size
        self.dim = net.config.dim
        self.whole = WholeSequences(model, tokenizer) if model is not None else None
        self.max_tokens = config.max_tokens or self.context
        self.scheduler = Scheduler(net, tokenizer, tools, max_batch=config.max_concurrency,
                                   max_queue=config.max_queue)
        self.created = int(time.time())
        sp = tokenizer.special_tokens
        self.completion_stops = {sp[t] for t in ("<|bos|>", "<|end|>") if t in sp}

    def sampling(self, req, prompt_len: int, logprobs: int | None, seed_offset: int) -> SamplingParams:
        mt = getattr(req, "max_completion_tokens", None) or req.max_tokens
        if mt is not None and mt > self.max_tokens:
            raise APIError(400, f"max_tokens is {mt}; this server allows at most {self.max_tokens}",
                           param="max_tokens")
        room = self.context - prompt_len
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stop) > 4 or any(not s or len(s) > 1000 for s in stop):
            raise APIError(400, "stop takes up to 4 non-empty strings of at most 1000 characters", param="stop")
        temperature = DEFAULT_TEMPERATURE if req.temperature is None else req.temperature
        if temperature < 1e-3:      # dividing logits by less overflows; the result is greedy anyway
            temperature = 0.0
        try:
            return SamplingParams(
                temperature=temperature,
                top_p=DEFAULT_TOP_P if req.top_p is None else req.top_p,
                top_k=req.top_k or 0, min_p=req.min_p or 0.0,
                repetition_penalty=req.repetition_penalty or 1.0,
                frequency_penalty=req.frequency_penalty or 0.0, presence_penalty=req.presence_penalty or 0.0,
                max_tokens=max(1, min(mt or room, room)), stop=tuple(stop),
                seed=None if req.seed is None else (req.seed + seed_offset) % 2**63, logprobs=logprobs)
        except PicochatError as e:
            raise APIError(400, str(e)) from e

    def check_prompt(self, ids: list[int]) -> None:
        if len(ids) >= self.context:
            raise APIError(400, f"the prompt is {len(ids)} tokens; this model's context is {self.context} "
                                "tokens, and the answer needs room too: shorten the messages",
                           param="messages", code="context_length_exceeded")

    def chat_prompt(self, req: ChatCompletionRequest) -> tuple[list[int], frozenset[str], str | None, str | None]:
        """The prompt ids, the client's function names, the grammar (Lark) the answer must follow
        if any (a forced tool choice, or a response format), and the one its tool calls follow
        (with tools declared, a call the model chooses to make is held to their schemas)."""
        from picochat.chat import normalize, render_prompt

        reject_unsupported(req)
        messages = chat_messages(req.messages)
        client_tools: frozenset[str] = frozenset()
        if req.tools and req.tool_choice != "none":
            client_tools = frozenset(t.function.name for t in req.tools)
            note = tools_note([t.function.model_dump(exclude_none=True) for t in req.tools])
            if messages and messages[0]["role"] == "system":
                messages[0] = {**messages[0], "content": (messages[0]["content"] + "\n\n" + note).strip()}
            else:
                messages.insert(0, {"role": "system", "content": note})
        try:
            ids = render_prompt(self.tokenizer, normalize(messages))
        except PicochatError as e:
            raise APIError(400, str(e), param="messages") from e
        self.check_prompt(ids)
        return ids, client_tools, forced_call(req) or answer_format(req.response_format), self.calls_grammar(req)

    def calls_grammar(self, req: ChatCompletionRequest) -> str | None:
        """The shapes a chosen call may take: the client's functions and the built-in tools (a
        client function of a built-in's name wins, as when calls run)."""
        from picochat.engine.grammar import call_arguments

        if not req.tools or req.tool_choice == "none":
            return None
        functions = {t.function.name: t.function.model_dump(exclude_none=True) for t in req.tools}
        registry = self.scheduler.tools
        for tool in (registry.tools.values() if registry is not None else []):
            functions.setdefault(tool.name, {"name": tool.name, "parameters": tool.parameters})
        return call_arguments(list(functions.values()))

    def grammar(self, lark: str | None):
        """A fresh Grammar for one answer (each choice keeps its own position)."""
        if lark is None:
            return None
        from picochat.engine.grammar import Grammar

        try:
            return Grammar(self.tokenizer, lark)
        except PicochatError as e:
            raise APIError(400, str(e), param="response_format") from e

    def inputs(self, value, param: str) -> list[tuple[list[int], bool]]:
        """A prompt or an embedding input in any of OpenAI's four forms (a text, texts, token ids,
        lists of token ids) as token lists, each with whether it came as text (then without
        <|bos|>; text is encoded as plain text, never as special tokens)."""
        if isinstance(value, str) or (value and all(isinstance(x, int) for x in value)):
            value = [value]
        if not value:
            raise APIError(400, f"{param} is empty", param=param)
        if len(value) > MAX_INPUTS:
            raise APIError(400, f"{param} has {len(value)} items; at most {MAX_INPUTS} per request", param=param)
        out = []
        for n, item in enumerate(value):
            if isinstance(item, str):
                out.append((self.tokenizer.encode(item), True))
            elif not item:
                raise APIError(400, f"{param} {n} is an empty list of token ids", param=param)
            elif not all(0 <= x < self.vocab for x in item):
                raise APIError(400, f"token ids must be in [0, {self.vocab})", param=param)
            else:
                out.append((list(item), False))
        return out

    def completion_prompts(self, req: CompletionRequest) -> list[Prompt]:
        """Token ids are read as sent (a harness that scores them counts positions in them); a
        text gets <|bos|> first, as the model saw every document in training."""
        prompts = [Prompt([self.tokenizer.bos_id, *ids], own=1) if text else Prompt(ids)
                   for ids, text in self.inputs(req.prompt, "prompt")]
        if len(prompts) * req.n > MAX_CHOICES:
            raise APIError(400, f"at most {MAX_CHOICES} choices (prompts x n) per request", param="n")
        room = 0 if req.max_tokens == 0 else 1          # an answer needs at least one free position
        for p in prompts:
            if len(p.ids) + room > self.context:
                raise APIError(400, f"a prompt is {len(p.ids)} tokens; this model's context is {self.context} "
                                    "tokens" + (", and the answer needs room too" if room else ""),
                               param="prompt", code="context_length_exceeded")
        return prompts

    async def echo(self, prompt: Prompt, req: CompletionRequest) -> Echo:
        """The prompt as `echo` returns it, with each token's logprobs when they are asked for."""
        if not req.echo:
            return Echo("", [])
        text = self.tokenizer.decode(prompt.ids[prompt.own:])
        if req.logprobs is None:
            return Echo(text, [])
        entries = await asyncio.to_thread(self.whole_sequences().prompt_logprobs, prompt.ids, req.logprobs)
        return Echo(text, entries[prompt.own:])

    def embedding_inputs(self, req: EmbeddingRequest) -> list[list[int]]:
        """Each input as the model reads it: <|bos|> first (also before token ids that lack it,
        so a text and its ids embed alike), at least one token after it, within the context."""
        if req.dimensions is not None and req.dimensions != self.dim:
            raise APIError(400, f"dimensions must be {self.dim}, this model's hidden size: its vectors "
                                "are not trained to keep their meaning when shortened", param="dimensions")
        bos, seqs = self.tokenizer.bos_id, []
        for n, (ids, _) in enumerate(self.inputs(req.input, "input")):
            ids = ids if ids[:1] == [bos] else [bos, *ids]
            if len(ids) < 2:
                raise APIError(400, f"input {n} is empty: there is nothing to embed", param="input")
            if len(ids) > self.context:
                raise APIError(400, f"input {n} is {len(ids)} tokens; this model's context is {self.context}",
                               param="input", code="context_length_exceeded")
            seqs.append(ids)
        return seqs

    def whole_sequences(self) -> WholeSequences:
        if self.whole is None:
            raise APIError(501, "this server was started without the full model that embeddings and "
                                "prompt logprobs need", type="server_error")
        return self.whole


MAX_CHOICES = 16                # completion choices (prompts x n) per request
EMBED_BATCH_TOKENS = 16_384     # padded tokens per embedding forward: bounds what one request holds


@dataclass
class Prompt:
    """A completion prompt: the ids the model reads and where the client's own part starts (the
    <|bos|> the server puts before a text is not echoed)."""
    ids: list[int]
    own: int = 0


@dataclass
class Echo:
    text: str
    logprobs: list[dict]        # one entry per echoed token (empty when logprobs are not asked)


def chat_messages(messages) -> list[dict]:
    """A request's messages in picochat's schema (developer -> system; tool calls kept)."""
    out: list[dict] = []
    for m in messages:
        role = "system" if m.role == "developer" else m.role
        msg: dict[str, Any] = {"role": role, "content": m.text()}
        if role == "assistant" and m.tool_calls:
            msg["tool_calls"] = [{"type": "function", "function": {"name": c.function.name,
                                                                   "arguments": c.function.arguments}}
                                 for c in m.tool_calls]
        out.append(msg)
    return out


def store_feedback(store, body: FeedbackRequest) -> dict:
    """A rating or a comparison from a user, into the run's comparisons store."""
    if store is None:
        raise APIError(503, "this server keeps no feedback (it was started without a run)", code="no_store")
    messages, user = chat_messages(body.messages), body.user or "user"
    try:
        if body.rating is not None and body.answer is not None and body.answers is None:
            made = store.add_rating(messages, body.answer, body.rating, labeler=user)
            return {"stored": "rating", "id": made.id}
        if body.answers is not None and body.preferred is not None and body.answer is None:
            pair = store.add_pair(messages, body.answers[0], body.answers[1], "feedback")
            label = store.add_label(pair, body.preferred, labeler=user, source="feedback", known={pair.id: pair})
            return {"stored": "comparison", "id": pair.id, "label_id": label.id}
    except PicochatError as e:
        raise APIError(400, str(e), param="messages") from e
    raise APIError(400, "send either answer and rating (up or down), or two answers and preferred "
                        "(a, b, tie or both_bad)", param="rating")


def logprob_entry(tokenizer, token: int, logprob: float | None, alternatives: list[tuple[int, float]]) -> dict:
    """A token's logprobs entry, in the scheduler's shape (see GenRequest)."""
    def one(t: int, lp: float | None) -> dict:
        return {"token": tokenizer.decode([t]), "logprob": lp, "bytes": list(tokenizer.token_bytes(t))}

    return {**one(token, logprob), "top_logprobs": [one(t, lp) for t, lp in alternatives]}


class WholeSequences:
    """Whole sequences through the plain `Llama` of the served weights, which gives every
    position's output (the decoding FastLlama gives the last position's logits only): embeddings
    pool its hidden states, echoed prompts are scored with its logits. Calls run one at a time,
    beside the scheduler's thread, so concurrent requests queue here instead of adding memory."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.lock = threading.Lock()

    def embed(self, seqs: list[list[int]]) -> torch.Tensor:
        """(N, D) unit vectors: each sequence's mean final-norm hidden state over its tokens after
        <|bos|> (whose state is the same for every input and would pull all vectors together)."""
        out: list[torch.Tensor | None] = [None] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))    # alike lengths pad little
        with self.lock, torch.inference_mode():
            for batch in padded_batches(order, seqs, EMBED_BATCH_TOKENS):
                states = self.states([seqs[i] for i in batch])
                for row, i in enumerate(batch):
                    out[i] = F.normalize(states[row, 1:len(seqs[i])].mean(0), dim=0)
        return torch.stack(out).cpu()

    def states(self, seqs: list[list[int]]) -> torch.Tensor:
        """(B, T, D) final-norm hidden states, fp32. Padding goes on the right, where causal
        attention keeps it out of every real token's state: a batch gives what each alone would."""
        ids = torch.full((len(seqs), max(map(len, seqs))), self.tokenizer.pad_id, dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s)
        return self.model(ids.to(self.device), head=False).float()

    def prompt_logprobs(self, ids: list[int], top: int) -> list[dict]:
        """Each token's logprobs entry given the tokens before it, with the `top` likeliest
        alternatives; the first token has nothing before it (logprob None)."""
        with self.lock, torch.inference_mode():
            logp = self.model(torch.tensor([ids], device=self.device))[0, :-1].float().log_softmax(-1)
        nxt = torch.tensor(ids[1:], device=logp.device)
        chosen = logp.gather(1, nxt[:, None])[:, 0].tolist()
        best = logp.topk(min(top, logp.shape[-1]), dim=-1) if top else None
        entries = [logprob_entry(self.tokenizer, ids[0], None, [])]
        for i, t in enumerate(ids[1:]):
            alternatives = list(zip(best.indices[i].tolist(), best.values[i].tolist())) if best else []
            entries.append(logprob_entry(self.tokenizer, t, chosen[i], alternatives))
        return entries


def padded_batches(order: list[int], seqs: list[list[int]], budget: int):
    """Indices in `order` (by increasing length) grouped so rows x longest stays within budget."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1) * len(seqs[i]) > budget:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def encoded(vector: torch.Tensor, encoding_format: str):
    """A vector as OpenAI sends it: floats, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


# OpenAI parameters picochat accepts in their default form only
DEFAULT_ONLY = {"suffix": None, "logit_bias": None, "audio": None, "modalities": None, "prediction": None}


def reject_unsupported(req) -> None:
    """A request option the server does not serve is a 400 naming it, never silently dropped."""
    unknown = sorted(k for k, v in (req.model_extra or {}).items() if v is not None)   # null: not asked for
    unknown += [k for k, default in DEFAULT_ONLY.items() if k in type(req).model_fields and getattr(req, k) != default]
    if unknown:
        raise APIError(400, f"unsupported parameter{'s' * (len(unknown) > 1)}: {', '.join(unknown)}",
                       param=unknown[0], code="unsupported_parameter")


def forced_call(req: ChatCompletionRequest) -> str | None:
    """tool_choice "required" or a named function: the answer is a call of a declared function
    with arguments valid for its schema (grammar-constrained)."""
    from picochat.engine.grammar import function_call

    forced = req.tool_choice
    if forced in (None, "none", "auto"):
        return None
    if not req.tools:
        raise APIError(400, "tool_choice needs tools", param="tool_choice")
    functions = [t.function.model_dump(exclude_none=True) for t in req.tools]
    if not isinstance(forced, str):
        functions = [f for f in functions if f["name"] == forced.function.name]
        if not functions:
            raise APIError(400, f"tool_choice names {forced.function.name!r}, which is not in tools",
                           param="tool_choice")
    return function_call(functions)


def answer_format(fmt) -> str | None:
    """response_format as a grammar: json_object, json_schema, or None for free text."""
    from picochat.engine.grammar import json_answer

    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return json_answer({"type": "object"})
    if fmt.json_schema is None or not fmt.json_schema.schema_:
        raise APIError(400, "response_format json_schema needs json_schema.schema", param="response_format")
    return json_answer(fmt.json_schema.schema_)


def tools_note(functions: list[dict]) -> str:
    """How the client's functions are declared to the model: appended to the system message
    (the chat template has no slot of its own for them)."""
    return "You can call these tools:\n" + "\n".join(json.dumps(f, ensure_ascii=False) for f in functions)


class Dispatcher:
    """Carries events from the scheduler thread into the event loop: they are buffered and one
    wake-up of the loop delivers all that arrived meanwhile (one per decoding step for every
    stream together, rather than one per token per stream)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.lock = threading.Lock()
        self.buffer: list[tuple[asyncio.Queue, tuple]] = []
        self.scheduled = False

    def put(self, queue: asyncio.Queue, item: tuple) -> None:
        with self.lock:
            self.buffer.append((queue, item))
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self.flush)

    def flush(self) -> None:
        with self.lock:
            items, self.buffer, self.scheduled = self.buffer, [], False
        for queue, item in items:
            queue.put_nowait(item)


_dispatchers: dict[int, Dispatcher] = {}


def dispatcher() -> Dispatcher:
    loop = asyncio.get_running_loop()
    d = _dispatchers.get(id(loop))
    if d is None or d.loop is not loop:
        d = _dispatchers[id(loop)] = Dispatcher(loop)
    return d


class Stream:
    """Events from the scheduler thread into this request's event loop, tagged by choice."""

    def __init__(self, server: Server):
        self.server = server
        self.dispatcher = dispatcher()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.reqs: list[GenRequest] = []
        self.behind = False     # the last chunk took longer than BACKPRESSURE_S to write

    def add(self, index: int, **kw) -> None:
        put, queue = self.dispatcher.put, self.queue

        def emit(event: dict, i=index):
            put(queue, (i, event))

        self.reqs.append(GenRequest(emit=emit, **kw))

    def submit(self) -> None:
        try:
            self.server.scheduler.submit(self.reqs)
        except Busy as e:
            raise APIError(429, f"the server is busy: {e}; retry shortly", type="rate_limit_error",
                           code="rate_limit_exceeded") from e

    def cancel(self) -> None:
        for r in self.reqs:
            self.server.scheduler.cancel(r)

    async def events(self, request: Request | None = None):
        """(index, event) until every choice is done. With `request` (non-streaming answers),
        checks every 0.25 s whether the client is gone; a streaming response learns that from
        its failed send and cancels in its `finally`."""
        remaining = len(self.reqs)
        checked = time.monotonic()
        queue = self.queue
        while remaining:
            if request is None:
                i, ev = await queue.get()
            else:
                if time.monotonic() - checked > 0.25:
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        self.cancel()
                        return
                try:
                    i, ev = queue.get_nowait() if not queue.empty() else \
                        await asyncio.wait_for(queue.get(), timeout=0.25)
                except asyncio.TimeoutError:
                    continue
            # a client that keeps reading gets a chunk per token; while its writes are held up
            # (see `written`), the text that piled up meanwhile goes out as one chunk
            while self.behind and ev["type"] == "text" and not queue.empty():
                j, nxt = queue.get_nowait()
                if j == i and nxt["type"] == "text":
                    ev = {"type": "text", "text": ev["text"] + nxt["text"], "logprobs": ev["logprobs"] + nxt["logprobs"]}
                    continue
                yield i, ev
                i, ev = j, nxt
            if ev["type"] in ("done", "error"):
                remaining -= 1
            yield i, ev


BACKPRESSURE_S = 0.05      # a chunk this slow to write means the client (or the server) is behind


async def written(chunks, stream: Stream):
    """Pass a streamed response's chunks on, timing each write: the response is suspended at
    `yield` while the chunk is sent, so a long suspension is backpressure (a client that stopped
    reading, or an event loop too loaded to write every token apart)."""
    async for chunk in chunks:
        started = time.monotonic()
        yield chunk
        stream.behind = time.monotonic() - started > BACKPRESSURE_S


def sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(server: Server) -> FastAPI:
    app = FastAPI(title="picochat", version="0.1.0",
                  description="An OpenAI-compatible API for a picochat model, and its web chat UI.")
    cfg = server.config
    app.add_middleware(Guard, api_key=cfg.api_key, max_body=cfg.max_body)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return error_json(e.status, e.message, e.type, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, e: RequestValidationError):
        errors = e.errors()
        if any(err.get("type") in ("json_invalid", "json_type") for err in errors):
            return error_json(400, "the body is not valid JSON", code="invalid_json")
        first = errors[0] if errors else {}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        return error_json(422, f"{loc or 'body'}: {first.get('msg', 'invalid')}{more}", param=loc or None,
                          code="invalid_type")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        return error_json(e.status_code, str(e.detail), code=None if e.status_code != 404 else "not_found")

    @app.exception_handler(Exception)
    async def _crash(request, e: Exception):
        return error_json(500, f"internal error: {type(e).__name__}", type="server_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": cfg.model_name, "context": server.context, **server.scheduler.load()}

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS)
    async def models():
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model", "created": server.created,
                                            "owned_by": "picochat"}]}

    @app.get("/v1/models/{model_id}", responses={**ERRORS, 404: {"model": ErrorResponse}})
    async def model(model_id: str):
        if model_id != cfg.model_name:
            raise APIError(404, f"no model {model_id!r}; this server has {cfg.model_name!r}", code="model_not_found")
        return {"id": cfg.model_name, "object": "model", "created": server.created, "owned_by": "picochat"}

    @app.post("/v1/chat/completions", response_model=None, responses={
        200: {"model": ChatCompletion, "description": "the answer (text/event-stream chunks when stream=true)"},
        **ERRORS})
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        ids, client_tools, lark, call_lark = server.chat_prompt(body)
        top = body.top_logprobs or 0 if body.logprobs else None
        stream = Stream(server)
        for i in range(body.n):
            stream.add(i, prompt=ids, params=server.sampling(body, len(ids), top, i), chat=True,
                       client_tools=client_tools, grammar=server.grammar(lark), call_grammar=call_lark)
        stream.submit()
        cid, created, model_name = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), cfg.model_name
        if body.stream:
            return StreamingResponse(written(chat_chunks(stream, body, cid, created, model_name), stream),
                                     headers=SSE_HEADERS, media_type="text/event-stream")
        return await chat_whole(stream, body, request, cid, created, model_name)

    @app.post("/v1/completions", response_model=None, responses={
        200: {"model": Completion, "description": "the continuation (text/event-stream when stream=true)"},
        **ERRORS})
    async def completions(body: CompletionRequest, request: Request):
        reject_unsupported(body)
        prompts = server.completion_prompts(body)
        lark = answer_format(body.response_format)
        stream = Stream(server)
        for p, prompt in enumerate(prompts):
            for i in range(body.n):
                # checked even when nothing is generated, so a bad request is a 400 either way
                params = server.sampling(body, len(prompt.ids), body.logprobs, i)
                if body.max_tokens != 0:    # max_tokens=0: no answer, only the prompt (echo)
                    stream.add(p * body.n + i, prompt=prompt.ids, params=params, chat=False,
                               grammar=server.grammar(lark))
        echoes = [await server.echo(prompt, body) for prompt in prompts]
        echoes = [e for e in echoes for _ in range(body.n)]                 # prompt-major, then n
        if stream.reqs:
            stream.submit()
        cid, created, model_name = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time()), cfg.model_name
        head = {"id": cid, "object": "text_completion", "created": created, "model": model_name}
        prompt_tokens = sum(len(p.ids) for p in prompts)
        if body.stream:
            return StreamingResponse(written(completion_chunks(stream, body, head, echoes), stream),
                                     headers=SSE_HEADERS, media_type="text/event-stream")
        return await completion_whole(stream, body, request, head, echoes, prompt_tokens)

    @app.post("/v1/embeddings", response_model=None, responses={
        200: {"model": EmbeddingList, "description": "one vector per input, in order"}, **ERRORS})
    async def embeddings(body: EmbeddingRequest):
        seqs = server.embedding_inputs(body)
        vectors = await asyncio.to_thread(server.whole_sequences().embed, seqs)
        tokens = sum(len(s) for s in seqs)
        return {"object": "list", "model": cfg.model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "index": i, "embedding": encoded(v, body.encoding_format)}
                         for i, v in enumerate(vectors)]}

    @app.post("/v1/feedback", responses=ERRORS)
    async def feedback(body: FeedbackRequest):
        return await asyncio.to_thread(store_feedback, server.store, body)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# --- response builders ---------------------------------------------------------------------------
def error_payload(ev: dict) -> dict:
    return {"error": {"message": ev["message"], "type": "server_error", "param": None, "code": "generation_failed"}}


async def chat_whole(stream: Stream, body, request, cid, created, model_name):
    n = len(stream.reqs)
    choices = [{"content": [], "thinking": [], "tool_calls": [], "tools": [], "logprobs": [], "finish": None}
               for _ in range(n)]
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    try:
        async for i, ev in stream.events(request):
            c, kind = choices[i], ev["type"]
            if kind == "text":
                c["content"].append(ev["text"])
                c["logprobs"] += ev["logprobs"]
            elif kind == "thinking":
                c["thinking"].append(ev["text"])
            elif kind == "tool":
                c["tools"].append({k: ev[k] for k in ("name", "arguments", "result")})
            elif kind == "tool_call":
                c["tool_calls"].append({"id": ev["id"], "type": "function",
                                        "function": {"name": ev["name"], "arguments": ev["arguments"]}})
            elif kind == "done":
                c["finish"] = ev["finish_reason"]
                usage["prompt_tokens"] = ev["prompt_tokens"]
                usage["completion_tokens"] += ev["completion_tokens"]
            elif kind == "error":
                raise APIError(500, f"generation failed: {ev['message']}", type="server_error")
    finally:
        stream.cancel()
    out = []
    for i, c in enumerate(choices):
        message: dict[str, Any] = {"role": "assistant", "content": "".join(c["content"]) if not c["tool_calls"]
                                   or c["content"] else None}
        if c["thinking"]:
            message["reasoning_content"] = "".join(c["thinking"])
        if c["tool_calls"]:
            message["tool_calls"] = c["tool_calls"]
        if c["tools"]:
            message["picochat_tools"] = c["tools"]
        out.append({"index": i, "message": message, "finish_reason": c["finish"],
                    "logprobs": {"content": c["logprobs"]} if body.logprobs else None})
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {"id": cid, "object": "chat.completion", "created": created, "model": model_name,
            "choices": out, "usage": usage, "system_fingerprint": "picochat"}


async def chat_chunks(stream: Stream, body, cid, created, model_name):
    def chunk(i, delta, finish=None, logprobs=None):
        choice = {"index": i, "delta": delta, "finish_reason": finish}
        if logprobs is not None:
            choice["logprobs"] = {"content": logprobs}
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_name,
                    "system_fingerprint": "picochat", "choices": [choice]})

    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    n_calls = [0] * len(stream.reqs)
    try:
        for i in range(len(stream.reqs)):
            yield chunk(i, {"role": "assistant", "content": ""})
        async for i, ev in stream.events():
            kind = ev["type"]
            if kind == "text":
                yield chunk(i, {"content": ev["text"]}, logprobs=ev["logprobs"] if body.logprobs else None)
            elif kind == "thinking":
                yield chunk(i, {"reasoning_content": ev["text"]})
            elif kind == "tool":
                yield chunk(i, {"picochat_tool": {k: ev[k] for k in ("name", "arguments", "result")}})
            elif kind == "notice":
                yield chunk(i, {"picochat_notice": ev["text"]})
            elif kind == "tool_call":
                yield chunk(i, {"tool_calls": [{"index": n_calls[i], "id": ev["id"], "type": "function",
                                                "function": {"name": ev["name"], "arguments": ev["arguments"]}}]})
                n_calls[i] += 1
            elif kind == "done":
                usage["prompt_tokens"] = ev["prompt_tokens"]
                usage["completion_tokens"] += ev["completion_tokens"]
                yield chunk(i, {}, ev["finish_reason"])
            elif kind == "error":
                yield sse(error_payload(ev))
        if body.stream_options and body.stream_options.include_usage:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            yield sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_name,
                       "choices": [], "usage": usage})
        yield "data: [DONE]\n\n"
    finally:
        stream.cancel()


def completion_logprobs(entries: list[dict]) -> dict:
    """OpenAI's completion logprobs; a prompt's first token has none (null, as OpenAI sends it)."""
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [None if e["logprob"] is None
                             else {t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": []}


async def completion_whole(stream: Stream, body, request, head: dict, echoes: list[Echo], prompt_tokens: int):
    n = len(echoes)
    texts, lps = [[e.text] for e in echoes], [list(e.logprobs) for e in echoes]
    finish = [None if stream.reqs else "length"] * n        # no rows: max_tokens=0 reached at once
    completion_tokens = 0
    try:
        async for i, ev in stream.events(request):
            if ev["type"] == "text":
                texts[i].append(ev["text"])
                lps[i] += ev["logprobs"]
            elif ev["type"] == "done":
                finish[i] = ev["finish_reason"]
                completion_tokens += ev["completion_tokens"]
            elif ev["type"] == "error":
                raise APIError(500, f"generation failed: {ev['message']}", type="server_error")
    finally:
        stream.cancel()
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}     # each prompt once, whatever n
    return {**head, "usage": usage,
            "choices": [{"index": i, "text": "".join(texts[i]), "finish_reason": finish[i],
                         "logprobs": completion_logprobs(lps[i]) if body.logprobs is not None else None}
                        for i in range(n)]}


async def completion_chunks(stream: Stream, body, head: dict, echoes: list[Echo]):
    def chunk(i, text, finish=None, entries=None):
        return sse({**head, "choices": [{"index": i, "text": text, "finish_reason": finish,
                                         "logprobs": completion_logprobs(entries) if entries else None}]})

    try:
        for i, e in enumerate(echoes):
            if e.text or e.logprobs:
                yield chunk(i, e.text, entries=e.logprobs)
        if not stream.reqs:                 # max_tokens=0: nothing follows the prompt
            for i in range(len(echoes)):
                yield chunk(i, "", "length")
        async for i, ev in stream.events():
            if ev["type"] in ("text", "done"):
                yield chunk(i, ev.get("text", ""), ev.get("finish_reason"), ev.get("logprobs"))
            elif ev["type"] == "error":
                yield sse(error_payload(ev))
        yield "data: [DONE]\n\n"
    finally:
        stream.cancel()


# --- running it ----------------------------------------------------------------------------------
def build_server(folder: Path, config: ServeConfig, dtype: str = "auto", device: str = "cpu",
                 store=None) -> Server:
    """Load a model directory the engine's way (`load_engine`: weights, tokenizer, decode-oriented
    FastLlama in fp32 / bf16 / int8, built-in tools) and put a scheduler in front of it."""
    from picochat.engine import load_engine
    from picochat.model import load_pretrained
    from picochat.tools import default_tools

    engine = load_engine(folder, dtype=dtype, tools=default_tools(), device=device)
    # embeddings and echoed prompts' logprobs need every position's output, which FastLlama does
    # not give: a plain Llama of the same weights (fp32) serves them
    model = load_pretrained(folder, device=engine.net.device).eval()
    return Server(engine.net, engine.tokenizer, engine.tools, config, model=model, store=store)


def serve(run, stage: str = "sft", host: str = "127.0.0.1", port: int = 8000, dtype: str = "auto",
          device: str = "cpu", **options) -> None:
    """Load the run's model and serve it until interrupted."""
    import uvicorn

    how = f"picochat pretrain --run {run.path}" if stage == "base" else \
        f"picochat {stage} --run {run.path} (or serve another stage with --stage base)"
    folder = run.require(run.model(stage), f"the {stage} model", how)
    config = ServeConfig(model_name=f"picochat-{Path(run.path).name}-{stage}", **options)
    from picochat.prefs.store import Store

    server = build_server(folder, config, dtype=dtype, device=device, store=Store(run.prefs))
    app = create_app(server)
    shown = f"[{host}]" if ":" in host else host
    print(f"picochat serve: {config.model_name} ({server.context}-token context)\n"
          f"  web UI      http://{shown}:{port}/\n"
          f"  OpenAI API  http://{shown}:{port}/v1   (e.g. OpenAI(base_url=..., api_key=...))", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        server.scheduler.close()
