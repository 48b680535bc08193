"""Conversations: one schema, rendered through the chat template into token ids + a loss mask.

A conversation is a list of messages in the OpenAI / Hugging Face form the chat template reads:

    {"role": "system" | "user" | "assistant" | "tool",
     "content": str,
     "thinking": str,                                  # assistant only, optional
     "tool_calls": [{"type": "function",               # assistant only, optional
                     "function": {"name": str, "arguments": {...}}}]}

Rendered (tokenizer.CHAT_TEMPLATE, the single source of truth):

    <|bos|><|system|>...<|end|><|user|>What is 12*34?<|end|>
    <|assistant|><|tool_call|>{"name": "calculator", "arguments": {"expression": "12*34"}}<|/tool_call|><|end|>
    <|tool|><|tool_result|>408<|/tool_result|><|end|>
    <|assistant|>12*34 = 408.<|end|>

`render_ids` builds the same ids as `tokenizer.encode_special(tokenizer.render_chat(messages))`
but never lets message text become special tokens: each piece of content is encoded with
`tokenizer.encode` and the template's special tokens are spliced in as ids. Its mask marks the
tokens the model is trained to produce: everything an assistant message emits (thinking, text,
tool calls, its <|end|>), never the role tokens, system or user text, or tool results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from picochat.rundir import PicochatError
from picochat.tokenizer import BOS, END, Tokenizer, chat_environment

ROLES = ("system", "user", "assistant", "tool")


# --- the schema -------------------------------------------------------------------------------
def tool_call(name: str, arguments: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def system(content: str) -> dict:
    return {"role": "system", "content": content}


def user(content: str) -> dict:
    return {"role": "user", "content": content}


def assistant(content: str = "", tool_calls: list[dict] | None = None, thinking: str | None = None) -> dict:
    msg: dict = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def tool(content: str) -> dict:
    return {"role": "tool", "content": content}


def normalize(messages: list[dict]) -> list[dict]:
    """Check a conversation against the schema and return it in canonical form (content always a
    string, tool-call arguments a dict). Raises PicochatError saying what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise PicochatError("a conversation is a non-empty list of messages")
    out = []
    for i, msg in enumerate(messages):
        where = f"message {i}"
        if not isinstance(msg, dict):
            raise PicochatError(f"{where} is not an object")
        role = msg.get("role")
        if role not in ROLES:
            raise PicochatError(f"{where} has role {role!r}; expected one of {', '.join(ROLES)}")
        content = msg.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            if role != "tool":
                raise PicochatError(f"{where} ({role}) content must be a string")
            content = json.dumps(content, ensure_ascii=False)
        clean: dict = {"role": role, "content": content}
        if msg.get("thinking"):
            if role != "assistant":
                raise PicochatError(f"{where}: only assistant messages may carry thinking")
            if not isinstance(msg["thinking"], str):
                raise PicochatError(f"{where}: thinking must be a string")
            clean["thinking"] = msg["thinking"]
        if msg.get("tool_calls"):
            if role != "assistant":
                raise PicochatError(f"{where}: only assistant messages may carry tool calls")
            clean["tool_calls"] = [_normalize_call(c, where) for c in msg["tool_calls"]]
        if role == "system" and i != 0:
            raise PicochatError(f"{where}: a system message may only come first")
        if role == "tool":
            prev = out[-1] if out else None
            if prev is None or not (prev["role"] == "tool" or prev.get("tool_calls")):
                raise PicochatError(f"{where}: a tool result must follow an assistant tool call")
        out.append(clean)
    return out


def _normalize_call(call, where: str) -> dict:
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise PicochatError(f"{where}: a tool call needs a function name")
    args = fn.get("arguments", {})
    if isinstance(args, str):  # OpenAI sends arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise PicochatError(f"{where}: tool call arguments are not valid JSON ({e})") from e
    if not isinstance(args, dict):
        raise PicochatError(f"{where}: tool call arguments must be a JSON object")
    return tool_call(fn["name"], args)


# --- rendering --------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _tojson_template():
    # the template's own `tojson` filter (Hugging Face's plain json.dumps), so calls render exactly
    return chat_environment().from_string("{{ value | tojson }}")


def call_json(call: dict) -> str:
    """A tool call's text between <|tool_call|> markers, exactly as the template writes it."""
    fn = call["function"]
    dump = _tojson_template().render
    return f'{{"name": {dump(value=fn["name"])}, "arguments": {dump(value=fn["arguments"])}}}'


@dataclass
class Rendered:
    ids: list[int]
    mask: list[int]          # 1 where the token is the assistant's (a training target)
    turn_ends: list[int]     # len(ids) after each message: the places a conversation may be cut

    def __len__(self) -> int:
        return len(self.ids)


def render_ids(tokenizer: Tokenizer, messages: list[dict], encode=None) -> Rendered:
    """Token ids and loss mask of a conversation (see the module docstring). `encode` turns
    message text into ids (default `tokenizer.encode`; callers that re-render may memoize it)."""
    messages = normalize(messages)
    encode = encode or tokenizer.encode
    sp = tokenizer.special_tokens
    ids, mask, ends = [sp[BOS]], [0], []

    def put(tokens: list[int], train: bool) -> None:
        ids.extend(tokens)
        mask.extend([int(train)] * len(tokens))

    for msg in messages:
        role = msg["role"]
        mine = role == "assistant"
        put([sp[f"<|{role}|>"]], False)             # the role token is the prompt's, not the model's
        if msg.get("thinking"):
            put([sp["<|think|>"]] + encode(msg["thinking"]) + [sp["<|/think|>"]], mine)
        if role == "tool":
            put([sp["<|tool_result|>"]] + encode(msg["content"]) + [sp["<|/tool_result|>"]], False)
        else:
            put(encode(msg["content"]), mine)
        for call in msg.get("tool_calls", []):
            put([sp["<|tool_call|>"]] + encode(call_json(call)) + [sp["<|/tool_call|>"]], mine)
        put([sp[END]], mine)
        ends.append(len(ids))
    return Rendered(ids, mask, ends)


def render_prompt(tokenizer: Tokenizer, messages: list[dict], encode=None) -> list[int]:
    """Ids of a conversation followed by <|assistant|>: the prompt for the model's next turn."""
    return render_ids(tokenizer, messages, encode).ids + [tokenizer.special_tokens["<|assistant|>"]]


def truncate(rendered: Rendered, messages: list[dict], max_tokens: int) -> Rendered | None:
    """Keep the longest run of whole messages from the start that fits `max_tokens` and ends
    with an assistant message (so there is something to learn). None if not even the first
    exchange fits."""
    if len(rendered) <= max_tokens:
        return rendered
    best = None
    for i, end in enumerate(rendered.turn_ends):
        if end > max_tokens:
            break
        if messages[i]["role"] == "assistant":
            best = i
    if best is None:
        return None
    end = rendered.turn_ends[best]
    return Rendered(rendered.ids[:end], rendered.mask[:end], rendered.turn_ends[:best + 1])


def encode_conversation(tokenizer: Tokenizer, messages: list[dict], max_tokens: int) -> Rendered | None:
    """Render, then truncate to `max_tokens` keeping whole turns; None when nothing trainable
    fits (or the assistant says nothing)."""
    messages = normalize(messages)
    rendered = truncate(render_ids(tokenizer, messages), messages, max_tokens)
    if rendered is None or not any(rendered.mask):
        return None
    return rendered


# --- the protocol of a generated turn ------------------------------------------------------------
# The tokens that end an assistant answer, and the ids a tool result is spliced in as: with
# render_ids, the only places that know how the template spells a turn.
TURN_MARKERS = (END, BOS, "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|tool_result|>")


def turn_stop_ids(tokenizer: Tokenizer) -> frozenset[int]:
    """Ids that end an assistant answer: its <|end|>, or any token that starts another turn
    (a model that begins the user's turn has finished its own)."""
    sp = tokenizer.special_tokens
    return frozenset(sp[t] for t in TURN_MARKERS if t in sp)


def tool_result_ids(tokenizer: Tokenizer, result: str, encode=None) -> list[int]:
    """What follows a generated <|/tool_call|>: the answer's <|end|>, the tool turn with the
    result (encoded as plain text), and the assistant's next turn, as render_prompt writes them."""
    sp = tokenizer.special_tokens
    encode = encode or tokenizer.encode
    return [sp[END], sp["<|tool|>"], sp["<|tool_result|>"], *encode(result), sp["<|/tool_result|>"],
            sp[END], sp["<|assistant|>"]]
