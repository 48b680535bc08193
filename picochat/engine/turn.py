"""`Turn`: the state of one assistant answer, with no model.

Every generation loop (the chat CLI's `Engine.stream`, `Engine.generate_batch` for evals and RL,
the server's scheduler rows) samples tokens and hands each one to its row's `Turn`; the `Turn`
says what happened. It is the one place that knows the answer protocol:

    text <|think|>thinking<|/think|> text <|tool_call|>{"name": ..., "arguments": {...}}<|/tool_call|>
        -> the call runs (or, for a client-declared function, goes back to the caller) and its
           result is injected: <|end|><|tool|><|tool_result|>...<|/tool_result|><|end|><|assistant|>
    ... <|end|>   (or any token that starts another turn; see picochat.chat.turn_stop_ids)

    turn = Turn(tokenizer, params, prompt, context=256, tools=default_tools())
    step = turn.start()                # a call the prompt itself ends with runs first
    while not turn.done:
        feed the model the last sampled token, then step.inject (if any); sample a token t
        step = turn.feed(t)            # step.events: text, thinking, tool calls, notices, done

What a `Turn` owns: the mode (text / think / call), the stop ids and stop strings, the streamed
text (whole UTF-8 characters, stop strings held back), parsing and running calls, the one cap on
tool calls per answer and its finish reason, the answer as chat messages, and for every token
after the prompt whether it was sampled or injected (the mask RL trains on).

Finish reasons: "stop" (end of turn or a stop string), "length" (max_tokens, the context, or the
tool-call cap), "tool_calls" (a client-declared function was called: the caller runs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from picochat.chat import tool_result_ids, turn_stop_ids
from picochat.engine.grammar import Grammar
from picochat.engine.sampling import SamplingParams, Token
from picochat.engine.text import StopStrings, TextStream
from picochat.tools import ToolCall, ToolRegistry

MAX_TOOL_CALLS = 8          # calls run per answer; a model that calls a 9th is stopped there


@dataclass
class Event:
    """What happened, in order.

    kind: "text" (answer text to show; `token` is the sampled token it came from, if any),
    "thinking" (text inside <|think|>), "tool_call" (`call`: a call run here, with its result),
    "function_call" (`call`: a call of a client-declared function, handed back unrun), "notice"
    (something the user should be told: turns dropped, a message cut, the context full), "done"
    (`finish_reason`; `messages`: the answer as messages to append to the conversation;
    `tokens`: every sampled token)."""
    kind: str
    text: str = ""
    token: Token | None = None
    call: ToolCall | None = None
    finish_reason: str | None = None
    messages: list[dict] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)


@dataclass
class Step:
    """The result of one `Turn.start` or `Turn.feed`: events, and ids the driver must feed the
    model (after the token just fed) before it samples again."""
    events: list[Event]
    inject: list[int] = field(default_factory=list)


class Turn:
    def __init__(self, tokenizer, params: SamplingParams, prompt: list[int], context: int,
                 tools: ToolRegistry | None = None, client_tools: frozenset[str] = frozenset(),
                 chat: bool = True, grammar=None, call_grammar: str | None = None):
        """chat=False: a plain completion (no tool calls or thinking; special tokens are not text).
        client_tools: names of functions the caller runs itself (the server's clients).
        grammar: a picochat.engine.grammar.Grammar the whole answer must follow (structured
        outputs); call_grammar: Lark text each tool call's JSON must follow, from the model's
        <|tool_call|> to its <|/tool_call|> (see grammar.call_arguments). Drivers call
        `constrain` on each step's logits."""
        self.tokenizer, self.params, self.tools, self.chat = tokenizer, params, tools, chat
        self.grammar, self.call_grammar = grammar, call_grammar
        self._call_grammar_open = False         # self.grammar is the open call's own
        self.client_tools = client_tools
        sp = tokenizer.special_tokens
        self.special_ids = frozenset(sp.values())
        self.stop_ids = turn_stop_ids(tokenizer) | frozenset(params.stop_token_ids)
        self.call_open, self.call_close = sp["<|tool_call|>"], sp["<|/tool_call|>"]
        self.think_open, self.think_close = sp.get("<|think|>"), sp.get("<|/think|>")
        self.text, self.stops = TextStream(tokenizer), StopStrings(params.stop)
        self.prompt_len, self.context = len(prompt), context
        self.mode = "text"                      # "text" | "think" | "call"
        self.call_ids: list[int] = []           # the open call's ids so far
        self.n_calls = 0                        # calls made (run here or handed back)
        self.ids: list[int] = []                # every token after the prompt, sampled or injected
        self.sampled: list[bool] = []           # per id: sampled by the model (True) or injected
        self.tokens: list[Token] = []           # the sampled tokens, with their log-probabilities
        self.calls: list[ToolCall] = []
        self.messages: list[dict] = [{"role": "assistant", "content": ""}]
        self.finish_reason: str | None = None
        self._pending = self._resume(list(prompt)) if chat else None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def length(self) -> int:
        """Tokens in the sequence so far: prompt, sampled and injected."""
        return self.prompt_len + len(self.ids)

    # -- driving -------------------------------------------------------------------------------
    @property
    def constrained(self) -> bool:
        """The next token must follow the answer's grammar (once the grammar is complete, only
        the answer's end may follow: a structured answer has nothing after it)."""
        return self.grammar is not None

    def constrain(self, logits):
        """The next token's logits (1, V), with what the grammar rules out at -inf."""
        return self.grammar.constrain(logits) if self.constrained else logits

    def start(self) -> Step:
        """Before the first sampled token: run a call the prompt ends with (a conversation cut
        after the assistant's <|/tool_call|>), and check that an answer fits."""
        events: list[Event] = []
        inject = self._call(self._pending, events) if self._pending is not None else []
        if not self.done and self.length >= self.context:
            self._notice(events, "the context is full; no room for an answer")
            self.messages = []
            self._finish("length", events)
        return Step(events, inject)

    def feed(self, token: Token | int) -> Step:
        """One sampled token in; what it did out."""
        token = token if isinstance(token, Token) else Token(int(token))
        if self.done:
            raise ValueError("the answer is finished; start a new Turn")
        t = token.id
        if self.constrained and not self.grammar.finished:
            self.grammar.advance(t)
        self.ids.append(t)
        self.sampled.append(True)
        self.tokens.append(token)
        events: list[Event] = []
        inject: list[int] = []
        if self.mode == "call":
            inject = self._in_call(t, events)
        elif t in self.stop_ids:
            self._finish("stop", events)
        elif self.chat and t == self.call_open:
            self._show(self.text.flush(), None, events)   # text before the call is complete
            self.mode, self.call_ids = "call", []
            if self.call_grammar is not None and self.grammar is None:
                self.grammar = Grammar(self.tokenizer, self.call_grammar)   # this call's JSON only
                self._call_grammar_open = True
        elif self.chat and t == self.think_open:
            self.mode = "think"
        elif self.chat and t == self.think_close:
            self.mode = "text"
        elif t not in self.special_ids:         # other markers (image, stray closers) are not text
            self._text_token(token, events)
        if not self.done:
            self._check_limits(events)
        return Step(events, inject)

    # -- the modes -------------------------------------------------------------------------------
    def _in_call(self, t: int, events: list[Event]) -> list[int]:
        if t == self.call_close:
            ids, self.mode, self.call_ids = self.call_ids, "text", []
            if self._call_grammar_open:
                self.grammar, self._call_grammar_open = None, False   # the text after the call is free
            return self._call(ids, events)
        if t in self.stop_ids:
            self._notice(events, "the model ended its turn inside a tool call; the call was not run")
            self._finish("stop", events)
        else:
            self.call_ids.append(t)
        return []

    def _text_token(self, token: Token, events: list[Event]) -> None:
        piece = self.text.push(token.id)
        if self.mode == "think":
            if piece:
                self.messages[-1]["thinking"] = self.messages[-1].get("thinking", "") + piece
                events.append(Event("thinking", piece, token=token))
            return
        self._show(piece, token, events)
        if self.stops.hit is not None:
            self._finish("stop", events)

    def _show(self, piece: str, token: Token | None, events: list[Event]) -> None:
        """Answer text through the stop strings. A token with log-probabilities asked for gets
        its event even when its text is held back (the caller reports every token)."""
        shown = self.stops.push(piece) if piece else ""
        self.messages[-1]["content"] += shown
        if shown or (token is not None and self.params.logprobs is not None):
            events.append(Event("text", shown, token=token))

    def _check_limits(self, events: list[Event]) -> None:
        if len(self.tokens) >= self.params.max_tokens:
            self._finish("length", events)
        elif self.length >= self.context:
            self._notice(events, f"the {self.context}-token context is full; the answer was cut")
            self._finish("length", events)

    # -- tool calls ------------------------------------------------------------------------------
    def _call(self, ids: list[int], events: list[Event]) -> list[int]:
        """A closed call: hand it back (client function), refuse it (over the cap), or run it
        and return its result's ids to inject."""
        text = self.tokenizer.decode(ids)
        registry = self.tools if self.tools is not None else ToolRegistry()
        call = registry.parse(text)
        if call.arguments is not None and call.name in self.client_tools:
            self.n_calls += 1
            self._record(call)
            events.append(Event("function_call", call=call))
            self._finish("tool_calls", events)
            return []
        if self.n_calls >= MAX_TOOL_CALLS:
            self._notice(events, f"stopped after {MAX_TOOL_CALLS} tool calls in one answer; "
                                 "the next call was not run")
            self._finish("length", events)
            return []
        if self.tools is not None:
            call = self.tools.run(text)
        elif call.arguments is not None:
            call.result = "error: no tools are available"
        self.n_calls += 1
        self._record(call)
        self.messages.append({"role": "tool", "content": call.result})
        self.messages.append({"role": "assistant", "content": ""})
        events.append(Event("tool_call", call=call))
        if len(self.tokens) >= self.params.max_tokens:
            return []                           # no token left to read the result with: "length" follows
        inject = tool_result_ids(self.tokenizer, call.result)
        if self.length + len(inject) >= self.context:
            self._notice(events, "the tool result does not fit the context; the answer stops here")
            self._finish("length", events)
            return []
        self.ids += inject
        self.sampled += [False] * len(inject)
        return inject

    def _record(self, call: ToolCall) -> None:
        self.calls.append(call)
        self.messages[-1].setdefault("tool_calls", []).append(call.message_call())

    def _resume(self, prompt: list[int]) -> list[int] | None:
        """A prompt may end inside the assistant's turn: within an open call (its ids so far
        continue it: a forced tool choice), or right after a closed one (returned: run first)."""
        sp = self.tokenizer.special_tokens

        def last(token_id: int) -> int:
            return max((i for i, t in enumerate(prompt) if t == token_id), default=-1)

        turn, opened, closed = last(sp["<|assistant|>"]), last(self.call_open), last(self.call_close)
        if opened > turn and opened > closed:
            self.mode, self.call_ids = "call", prompt[opened + 1:]
        elif closed > opened > turn and closed == len(prompt) - 1:
            return prompt[opened + 1:closed]
        return None

    # -- endings ---------------------------------------------------------------------------------
    def _notice(self, events: list[Event], text: str) -> None:
        events.append(Event("notice", text))

    def _finish(self, reason: str, events: list[Event]) -> None:
        """Release the text held back (unless a stop string cut it), close the messages, and
        report "done"."""
        self.finish_reason = reason
        if self.stops.hit is None and self.messages:
            tail = self.stops.push(self.text.flush()) + self.stops.flush()
            if tail:
                self.messages[-1]["content"] += tail
                events.append(Event("text", tail))
        last = self.messages[-1] if self.messages else {}
        if len(self.messages) > 1 and last["content"] == "" and "tool_calls" not in last and "thinking" not in last:
            self.messages.pop()                 # nothing said after the last tool result
        events.append(Event("done", finish_reason=reason, messages=self.messages, tokens=self.tokens))

    # -- what the answer was -----------------------------------------------------------------------
    @property
    def mask(self) -> list[int]:
        """1 for each sampled id, 0 for each injected one (tool results): what RL trains on."""
        return [int(s) for s in self.sampled]

    @property
    def answer(self) -> str:
        """The answer's text: every assistant message's content, in order."""
        return "".join(m["content"] for m in self.messages if m["role"] == "assistant")
