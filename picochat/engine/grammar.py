"""Grammar-constrained decoding: before each sampled token, the tokens that keep the answer
inside a grammar, so structured outputs (a JSON schema, a forced function call) are valid by
construction, not by luck.

    grammar = Grammar(tokenizer, json_answer({"type": "object"}))
    turn = Turn(tokenizer, params, prompt, context, grammar=grammar)   # the Turn advances it

The grammar is llguidance's Lark dialect (JSON schemas inline as `%json {...}`, special tokens
as `<|name|>`). llguidance computes each step's token mask from the grammar and the tokenizer's
byte-level vocabulary, well under a millisecond per token at picochat's vocabulary sizes;
bench/structured_outputs.py measures it against outlines-core, the other CPU-only candidate.
Once the grammar accepts, the answer's end (<|end|>) is allowed; once it can take nothing more,
only the end is.
"""

from __future__ import annotations

import json

import torch

from picochat.rundir import PicochatError

_BITS = torch.arange(32, dtype=torch.int32)     # bit k of a mask word is token 32 * word + k

# how picochat's chat template writes JSON (json.dumps' separators): constrained JSON keeps the
# model in the spelling it was trained on
TEMPLATE_JSON = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


def _lltokenizer(tokenizer):
    """llguidance's view of the tokenizer, built once per tokenizer (a few ms per 8k tokens)."""
    cached = tokenizer.__dict__.get("_llguidance")
    if cached is None:
        try:
            import llguidance.tiktoken
        except ImportError as e:
            raise PicochatError("structured outputs need llguidance: pip install llguidance") from e
        cached = llguidance.tiktoken.lltokenizer_from_encoding(
            tokenizer._tiktoken, n_vocab=tokenizer.vocab_size, eos_token=tokenizer.end_id)
        tokenizer.__dict__["_llguidance"] = cached
    return cached


class Grammar:
    """One answer's position in a grammar."""

    def __init__(self, tokenizer, lark: str):
        import llguidance
        import llguidance.torch

        self._fill = llguidance.torch.fill_next_token_bitmask
        ll = _lltokenizer(tokenizer)
        self.vocab = ll.vocab_size
        self.matcher = llguidance.LLMatcher(ll, lark)
        if self.matcher.is_error():
            raise PicochatError(f"the grammar is not valid: {self.matcher.get_error()}")
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, ll.vocab_size)   # (1, V/32) int32, CPU

    @property
    def finished(self) -> bool:
        """Nothing more can follow: from here only the answer's end is allowed."""
        return self.matcher.is_stopped()

    def constrain(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (1, V) of the next token with every token the grammar rules out at -inf. The
        mask is unpacked here, in plain torch on the logits' device (llguidance's own helper
        wants CPU logits and compiles a kernel on first use)."""
        self._fill(self.matcher, self.bitmask, 0)
        words = self.bitmask.to(logits.device, non_blocking=True)[0]
        allowed = ((words[:, None] >> _BITS.to(logits.device)) & 1).bool().flatten()[:logits.shape[-1]]
        return logits.float().masked_fill(~allowed, float("-inf"))

    def advance(self, token_id: int) -> None:
        if not self.matcher.consume_token(token_id):
            raise PicochatError(f"token {token_id} is outside the grammar: {self.matcher.get_error()}")


# --- grammars for the API's structured outputs -------------------------------------------------
def _schema(schema: dict) -> str:
    return json.dumps({**schema, "x-guidance": TEMPLATE_JSON}, ensure_ascii=False)


def json_answer(schema: dict) -> str:
    """The whole answer is one JSON value matching `schema` ({"type": "object"}: any object)."""
    return f"start: %json {_schema(schema)}\n"


def call_schema(name: str, parameters: dict | None) -> dict:
    """The JSON between <|tool_call|> markers for one function, as the template writes it."""
    return {"type": "object", "properties": {"name": {"const": name},
                                             "arguments": parameters or {"type": "object"}},
            "required": ["name", "arguments"], "additionalProperties": False}


def function_call(functions: list[dict]) -> str:
    """The answer is a call of one of `functions` ({"name", "parameters"}), with arguments valid
    for its schema: <|tool_call|>{"name": ..., "arguments": {...}}<|/tool_call|>."""
    if not functions:
        raise PicochatError("a forced function call needs at least one function")
    options = [call_schema(f["name"], f.get("parameters")) for f in functions]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return f"start: <|tool_call|> call <|/tool_call|>\ncall: %json {_schema(schema)}\n"


def call_arguments(functions: list[dict]) -> str:
    """What follows the model's own <|tool_call|>: a call of one of `functions` with arguments
    valid for its schema, then <|/tool_call|> (the model chooses whether to call; this holds
    the call to the declared shapes)."""
    if not functions:
        raise PicochatError("constraining tool calls needs at least one function")
    options = [call_schema(f["name"], f.get("parameters")) for f in functions]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return f"start: call <|/tool_call|>\ncall: %json {_schema(schema)}\n"
