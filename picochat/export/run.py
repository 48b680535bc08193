#!/usr/bin/env python3
"""run.py: talk to a Llama-architecture language model stored in one GGUF file.

    python run.py model.gguf                                      # chat (/reset, /quit)
    python run.py model.gguf --system "Be brief."                 # chat with a system prompt
    python run.py model.gguf --prompt "Once upon a time" [--temperature 0] [--max-tokens 100]

A large language model is two files: the parameters (model.gguf) and a program that runs them
(this file). It needs Python 3.9+ and NumPy, nothing else: no torch, no internet. Read it top
to bottom:

  1. GGUF reader    header, metadata, tensor table; tensors memory-mapped, dequantized to fp32
                    (f32, f16, bf16, q8_0)
  2. tokenizer      byte-level BPE: the GPT-4 split pattern written out by hand, merges by rank
  3. transformer    RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, a KV cache
  4. sampling       temperature and top-p
  5. chat           the picochat chat template, turn by turn
  6. command line

It was written for models exported by picochat (`picochat export --format twofiles`), and runs
any GGUF with the same architecture and tokenizer kind (llama; "gpt2" byte-level BPE with the
GPT-4 split pattern, with single digits as Qwen2's or grouped in threes as Llama 3's).
"""

import argparse
import codecs
import math
import mmap
import struct
import sys
import unicodedata
from functools import lru_cache

import numpy as np


class ModelError(Exception):
    """The file cannot be run: say what is wrong."""


# ----------------------------------------------------------------------------------------------
# 1. GGUF reader
#
# Layout (little-endian): "GGUF", version u32, tensor count u64, metadata count u64; then the
# metadata (key string, value type u32, value), the tensor table (name, n_dims u32, dims u64...,
# type u32, offset u64), padding to `general.alignment` (32), and the tensor data.
# Strings are a u64 length + UTF-8 bytes. Dims are in ggml order: dims[0] varies fastest, so a
# (rows, cols) matrix is stored with dims = [cols, rows].

SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
F32, F16, Q8_0, BF16 = 0, 1, 8, 30
TYPE_NAMES = {F32: "f32", F16: "f16", Q8_0: "q8_0", BF16: "bf16"}
Q8_BLOCK = 32                                   # q8_0: 32 weights = one f16 scale + 32 int8


class Cursor:
    """Reads values one after another from a buffer, failing clearly at its end."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise ModelError("the file ends in the middle of its header (truncated download?)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return self.take(self.scalar("<Q")).decode("utf-8", errors="replace")

    def value(self, vtype):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            itype, n = self.scalar("<I"), self.scalar("<Q")
            return [self.value(itype) for _ in range(n)]
        if vtype not in SCALARS:
            raise ModelError(f"unknown metadata value type {vtype}; is this a GGUF file?")
        return self.scalar(SCALARS[vtype])


def tensor_bytes(ttype, n):
    if ttype == Q8_0:
        return n // Q8_BLOCK * (2 + Q8_BLOCK)
    return n * {F32: 4, F16: 2, BF16: 2}[ttype]


def dequantize(buf, offset, ttype, n):
    """n weights of type ttype at buf[offset:] -> a flat fp32 array (f32 is not copied)."""
    if ttype == F32:
        return np.frombuffer(buf, np.float32, n, offset)
    if ttype == F16:
        return np.frombuffer(buf, np.float16, n, offset).astype(np.float32)
    if ttype == BF16:   # bf16 is the top half of an fp32
        return (np.frombuffer(buf, np.uint16, n, offset).astype(np.uint32) << 16).view(np.float32)
    blocks = np.frombuffer(buf, np.uint8, tensor_bytes(Q8_0, n), offset).reshape(-1, 2 + Q8_BLOCK)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)          # (blocks, 1)
    return (blocks[:, 2:].copy().view(np.int8).astype(np.float32) * scale).reshape(-1)


def read_gguf(path):
    """-> (metadata dict, {tensor name: fp32 array in row-major (rows, cols) shape})."""
    try:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:   # ValueError: an empty file cannot be mapped
        raise ModelError(f"cannot read {path}: {e}") from e
    cur = Cursor(buf)
    if cur.take(4) != b"GGUF":
        raise ModelError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    version = cur.scalar("<I")
    if version not in (2, 3):
        raise ModelError(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_meta = cur.scalar("<Q"), cur.scalar("<Q")
    meta = {}
    for _ in range(n_meta):
        key = cur.string()
        meta[key] = cur.value(cur.scalar("<I"))
    table = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = [cur.scalar("<Q") for _ in range(cur.scalar("<I"))]
        table.append((name, dims, cur.scalar("<I"), cur.scalar("<Q")))
    align = meta.get("general.alignment", 32)
    start = (cur.pos + align - 1) // align * align
    tensors = {}
    for name, dims, ttype, offset in table:
        if ttype not in TYPE_NAMES:
            raise ModelError(f"tensor {name} has ggml type {ttype}; run.py reads only "
                             f"{', '.join(TYPE_NAMES.values())} (re-export with --dtype q8_0 or f16)")
        n = math.prod(dims)
        if start + offset + tensor_bytes(ttype, n) > len(buf):
            raise ModelError(f"tensor {name} runs past the end of the file: {path} is truncated")
        tensors[name] = dequantize(buf, start + offset, ttype, n).reshape(tuple(reversed(dims)))
    return meta, tensors


# ----------------------------------------------------------------------------------------------
# 2. Tokenizer: byte-level BPE
#
# Text is first split into pieces by the GPT-4 (cl100k) pattern, which llama.cpp calls
# "llama-bpe", or by the same with single digits, "qwen2" (what picochat trains with):
#
#   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3} |      (qwen2: \p{N})
#    ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
#
# Python's `re` has no \p{L}, so `split` below is that regex written as a scanner. It is exact
# for every character Python's Unicode tables know: \p{L} is a general category starting with
# L, \p{N} one starting with N, \s is Unicode White_Space (str.isspace minus U+001C..U+001F),
# and (?i) folds 's' to S and the long s 'ſ' as Unicode case folding does. Each piece's UTF-8
# bytes are written as GPT-2's printable characters, then merged pair by pair: always the
# adjacent pair that comes first in the merge list, until none is left.

def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (how tokens are spelled)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=65536)
def char_class(c):
    """'L' letter, 'N' number, 'W' white space, 'O' anything else."""
    cat = unicodedata.category(c)[0]
    if cat in "LN":
        return cat
    return "W" if c.isspace() and not "\x1c" <= c <= "\x1f" else "O"


CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")      # in the regex's order
FOLDS = {"s": "sSſ", "t": "tT", "r": "rR", "e": "eE", "v": "vV", "m": "mM", "l": "lL", "d": "dD"}


def match_end(text, cls, i, digits):
    """End of the piece that starts at text[i]: the regex's alternatives, tried in order (a
    number is at most `digits` digits)."""
    n = len(text)
    if text[i] == "'":                                        # 's 't 're 've 'm 'll 'd
        for suffix in CONTRACTIONS:
            end = i + 1 + len(suffix)
            if end <= n and all(c in FOLDS[s] for c, s in zip(text[i + 1:end], suffix)):
                return end
    k = i                                                     # [^\r\n\p{L}\p{N}]?\p{L}+
    if cls[k] in "WO" and text[k] not in "\r\n" and k + 1 < n and cls[k + 1] == "L":
        k += 1
    if cls[k] == "L":
        while k < n and cls[k] == "L":
            k += 1
        return k
    if cls[i] == "N":                                         # \p{N}{1,3} or \p{N}
        k = i
        while k < n and k - i < digits and cls[k] == "N":
            k += 1
        return k
    k = i + 1 if text[i] == " " and i + 1 < n and cls[i + 1] == "O" else i
    if cls[k] == "O":                                         # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        while k < n and cls[k] == "O":
            k += 1
        while k < n and text[k] in "\r\n":
            k += 1
        return k
    j = i                                                     # text[i] is white space
    while j < n and cls[j] == "W":
        j += 1
    newlines = [k for k in range(i, j) if text[k] in "\r\n"]
    if newlines:                                              # \s*[\r\n]+
        return newlines[-1] + 1
    if j == n or j - 1 == i:                                  # \s+(?!\S), else \s+
        return j
    return j - 1


def split(text, digits):
    cls = [char_class(c) for c in text]
    pieces, i = [], 0
    while i < len(text):
        j = match_end(text, cls, i, digits)
        pieces.append(text[i:j])
        i = j
    return pieces


# llama.cpp's names for these split patterns -> (digits per number piece, whether a piece that is
# a token is taken whole)
SPLITS = {"qwen2": (1, False), "llama-bpe": (3, True), "llama3": (3, True), "llama-v3": (3, True),
          "dbrx": (3, False), "smaug-bpe": (3, False)}


class Tokenizer:
    def __init__(self, meta):
        if meta.get("tokenizer.ggml.model") != "gpt2":
            raise ModelError(f"tokenizer kind {meta.get('tokenizer.ggml.model')!r} is not supported; "
                             "run.py reads byte-level BPE ('gpt2') tokenizers")
        pre = meta.get("tokenizer.ggml.pre", "default")
        if pre not in SPLITS:
            raise ModelError(f"pre-tokenizer {pre!r} is not supported; run.py implements the "
                             f"GPT-4 split and its variants ({', '.join(SPLITS)})")
        self.digits, self.ignore_merges = SPLITS[pre]
        tokens = meta.get("tokenizer.ggml.tokens") or []
        types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        self.byte_char = bytes_to_unicode()
        char_byte = {c: b for b, c in self.byte_char.items()}
        self.id_of = {t: i for i, t in enumerate(tokens) if types[i] == 1}       # normal tokens
        if any(c not in self.id_of for c in char_byte):
            raise ModelError("the vocabulary lacks some of the 256 byte tokens: not a byte-level BPE")
        self.special = {t: i for i, t in enumerate(tokens) if types[i] == 3}     # control tokens
        self.bytes_of = [bytes(char_byte[c] for c in t) if all(c in char_byte for c in t)
                         else t.encode("utf-8") for t in tokens]
        self.rank = {tuple(m.split(" ", 1)): r for r, m in enumerate(meta.get("tokenizer.ggml.merges", []))}
        self.bos = meta.get("tokenizer.ggml.bos_token_id")
        self.eos = meta.get("tokenizer.ggml.eos_token_id")
        self.add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and self.bos is not None
        self.stops = {t for t in (self.eos, meta.get("tokenizer.ggml.eot_token_id"), self.bos) if t is not None}
        self.cache = {}

    def bpe(self, piece):
        word = "".join(self.byte_char[b] for b in piece.encode("utf-8"))
        if self.ignore_merges and word in self.id_of:
            return [self.id_of[word]]
        parts = list(word)
        while len(parts) > 1:
            pairs = zip(parts, parts[1:])                     # noqa: RUF007 (pairwise needs 3.10)
            ranked = [(self.rank.get(pair, math.inf), i) for i, pair in enumerate(pairs)]
            best, i = min(ranked)                             # lowest rank, leftmost on ties
            if best == math.inf:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return [self.id_of[p] for p in parts]

    def encode(self, text):
        """Plain text -> ids. Special-token text stays text: it cannot forge a turn."""
        ids = []
        for piece in split(text, self.digits):
            if piece not in self.cache:
                self.cache[piece] = self.bpe(piece)
            ids += self.cache[piece]
        return ids

    def decode(self, ids):
        return b"".join(self.bytes_of[i] for i in ids).decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------------------------
# 3. The Transformer: a Llama
#
# x = embed(ids); per layer: x += Wo attention(rope(Wq n), rope(Wk n), Wv n) with n = rmsnorm(x),
# then x += Wdown (silu(Wgate n) * Wup n) with n = rmsnorm(x); logits = Wout rmsnorm(x).
# Shapes: T new tokens, D model dim, H query heads, K key/value heads (H/K queries share one),
# Dh head dim, S positions in the cache. The GGUF stores Wq and Wk rows so that rotary
# embedding turns adjacent pairs (2i, 2i+1) of each head, by the angle pos * base^(-2i/Dh).

class Llama:
    def __init__(self, meta, tensors):
        arch = meta.get("general.architecture")
        if arch != "llama":
            raise ModelError(f"architecture {arch!r} is not supported; run.py runs 'llama' models")
        try:
            self.n_layers, self.dim = meta["llama.block_count"], meta["llama.embedding_length"]
            self.n_heads = meta["llama.attention.head_count"]
            self.n_kv_heads = meta.get("llama.attention.head_count_kv", self.n_heads)
            self.context = meta["llama.context_length"]
            self.eps = meta["llama.attention.layer_norm_rms_epsilon"]
            base = meta.get("llama.rope.freq_base", 10000.0)
            self.embed = tensors["token_embd.weight"]                            # (V, D)
            self.out = tensors.get("output.weight", self.embed)                  # tied when absent
            self.out_norm = tensors["output_norm.weight"]
            names = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                     "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
            self.layers = [[tensors[f"blk.{i}.{n}.weight"] for n in names] for i in range(self.n_layers)]
        except KeyError as e:
            raise ModelError(f"the file lacks {e}: not a complete llama model") from e
        self.head_dim = self.dim // self.n_heads
        hd = self.head_dim
        self.inv_freq = (1.0 / base ** (np.arange(0, hd, 2, dtype=np.float32) / hd)).astype(np.float32)
        # the KV cache: zeros are mapped lazily, so a long context costs only what is used
        shape = (self.n_layers, self.n_kv_heads, self.context, hd)
        self.k_cache, self.v_cache = np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    @staticmethod
    def rope(x, cos, sin):
        """x (T, heads, Dh): rotate each adjacent pair (2i, 2i+1) by its angle."""
        T, n, Dh = x.shape
        pairs = x.reshape(T, n, Dh // 2, 2)
        a, b = pairs[..., 0], pairs[..., 1]
        return np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(T, n, Dh)

    def forward(self, ids, pos, all_logits=False):
        """Run tokens `ids` at positions pos, pos+1, ...; the cache holds positions < pos.
        Returns the logits of the last token (V,), or of every token (T, V)."""
        T, H, K, Dh = len(ids), self.n_heads, self.n_kv_heads, self.head_dim
        G, S = H // K, pos + len(ids)
        if S > self.context:
            raise ModelError(f"{S} tokens do not fit the {self.context}-token context")
        x = self.embed[ids].astype(np.float32)                                   # (T, D)
        angles = np.outer(np.arange(pos, S, dtype=np.float32), self.inv_freq)    # (T, Dh/2)
        cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]              # (T, 1, Dh/2)
        # causal mask: token t (at pos + t) sees cache positions <= pos + t
        mask = np.where(np.arange(S)[None] <= np.arange(pos, S)[:, None], 0.0, -np.inf).astype(np.float32)
        for i, (n1, wq, wk, wv, wo, n2, wg, wu, wd) in enumerate(self.layers):
            h = self.rmsnorm(x, n1)
            q = self.rope((h @ wq.T).reshape(T, H, Dh), cos, sin)                # (T, H, Dh)
            k = self.rope((h @ wk.T).reshape(T, K, Dh), cos, sin)                # (T, K, Dh)
            self.k_cache[i, :, pos:S] = k.transpose(1, 0, 2)
            self.v_cache[i, :, pos:S] = (h @ wv.T).reshape(T, K, Dh).transpose(1, 0, 2)
            keys, values = self.k_cache[i, :, :S], self.v_cache[i, :, :S]        # (K, S, Dh)
            q = q.reshape(T, K, G, Dh).transpose(1, 2, 0, 3)                     # (K, G, T, Dh)
            scores = q @ keys[:, None].transpose(0, 1, 3, 2) / math.sqrt(Dh) + mask  # (K, G, T, S)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            y = (scores @ values[:, None]).transpose(2, 0, 1, 3).reshape(T, H * Dh)  # (T, D)
            x = x + y @ wo.T
            h = self.rmsnorm(x, n2)
            gate = h @ wg.T
            x = x + (gate / (1.0 + np.exp(-gate)) * (h @ wu.T)) @ wd.T              # SwiGLU
        if not all_logits:
            x = x[-1:]
        logits = self.rmsnorm(x, self.out_norm) @ self.out.T                     # (T, V)
        return logits if all_logits else logits[0]


# ----------------------------------------------------------------------------------------------
# 4. Sampling

def sample(logits, temperature, top_p, rng):
    """Greedy at temperature 0; else softmax(logits / T) cut to the smallest set of tokens
    whose probability adds up to top_p."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p)
    keep = order[:int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
    return int(rng.choice(keep, p=p[keep] / p[keep].sum()))


def generate(model, ids, cached, max_tokens, temperature, top_p, rng, stops):
    """Yield new token ids after `ids`, reusing the first `cached` positions of the KV cache;
    stops after a stop id (yielded), `max_tokens`, or at the end of the context."""
    logits = model.forward(ids[cached:], cached)
    pos = len(ids)
    for _ in range(max_tokens):
        token = sample(logits, temperature, top_p, rng)
        yield token
        if token in stops or pos >= model.context:
            return
        logits = model.forward([token], pos)
        pos += 1


class Printer:
    """Streams token bytes to stdout as text, holding back a split UTF-8 character."""

    def __init__(self, tok, out=sys.stdout):
        self.tok, self.out = tok, out
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, token):
        self.out.write(self.decoder.decode(self.tok.bytes_of[token]))
        self.out.flush()

    def end(self):
        self.out.write(self.decoder.decode(b"", final=True) + "\n")
        self.out.flush()


# ----------------------------------------------------------------------------------------------
# 5. Chat: picochat's template, <|bos|><|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>
#
# Message text is encoded as plain text and the role tokens are spliced in as ids, so text that
# looks like a marker stays text. The KV cache is kept between turns: only new tokens are run.

CHAT_TOKENS = ("<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


def render(tok, messages):
    sp = tok.special
    ids = [sp["<|bos|>"]]
    for role, text in messages:
        ids += [sp[f"<|{role}|>"], *tok.encode(text), sp["<|end|>"]]
    return ids + [sp["<|assistant|>"]]


def fit(tok, messages, room, context):
    """Drop the oldest exchanges (never the system prompt) until the prompt leaves `room`."""
    while len(render(tok, messages)) + room > context:
        first = 1 if messages and messages[0][0] == "system" else 0
        if len(messages) - first <= 1:
            raise ModelError("the message is too long for the model's context; /reset or shorten it")
        del messages[first:first + 2]
    return render(tok, messages)


def chat(model, tok, args, rng):
    missing = [t for t in CHAT_TOKENS if t not in tok.special]
    if missing:
        raise ModelError(f"this model has no chat template tokens ({', '.join(missing)}); use --prompt")
    end = tok.special["<|end|>"]
    system = [("system", args.system)] if args.system else []
    messages, cached_ids = list(system), []
    print(f"chatting with {args.model} ({model.context}-token context). /reset starts over, /quit ends.")
    while True:
        try:
            line = input("\nyou> ").strip()
        except EOFError:
            print()
            return
        if line in ("/quit", "/exit"):
            return
        if line == "/reset":
            messages, cached_ids = list(system), []
            continue
        if not line:
            continue
        messages.append(("user", line))
        room = min(args.max_tokens, model.context // 2)
        ids = fit(tok, messages, room, model.context)
        cached = 0   # positions whose cache entries still hold these ids
        while cached < min(len(cached_ids), len(ids) - 1) and cached_ids[cached] == ids[cached]:
            cached += 1
        print("assistant> ", end="", flush=True)
        printer, reply = Printer(tok), []
        try:
            for token in generate(model, ids, cached, room, args.temperature, args.top_p, rng, {end}):
                reply.append(token)
                if token != end:
                    printer(token)
        except KeyboardInterrupt:      # Ctrl-C stops the answer, not the chat
            print(" [stopped]", end="")
        printer.end()
        # the cache holds the prompt (once a token came out) and every reply token but the last,
        # which was sampled and never run through the model
        cached_ids = ids + reply[:-1] if reply else ids[:cached]
        messages.append(("assistant", tok.decode([t for t in reply if t != end])))


# ----------------------------------------------------------------------------------------------
# 6. Command line

def main(argv=None):
    p = argparse.ArgumentParser(description="Chat with, or complete text from, a GGUF llama model.")
    p.add_argument("model", help="path to model.gguf")
    p.add_argument("--prompt", help="complete this text instead of chatting")
    p.add_argument("--system", help="system prompt for chat")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, help="for reproducible sampling")
    args = p.parse_args(argv)
    try:
        if args.temperature < 0 or not 0 < args.top_p <= 1 or args.max_tokens < 1:
            raise ModelError("need --temperature >= 0, 0 < --top-p <= 1, --max-tokens >= 1")
        meta, tensors = read_gguf(args.model)
        model, tok = Llama(meta, tensors), Tokenizer(meta)
        rng = np.random.default_rng(args.seed)
        if args.prompt is None:
            chat(model, tok, args, rng)
            return 0
        ids = ([tok.bos] if tok.add_bos else []) + tok.encode(args.prompt)
        if not ids:
            raise ModelError("the prompt is empty")
        if len(ids) >= model.context:
            raise ModelError(f"the prompt is {len(ids)} tokens; the context holds {model.context}")
        sys.stdout.write(args.prompt)
        printer = Printer(tok)
        for token in generate(model, ids, 0, args.max_tokens, args.temperature, args.top_p, rng, tok.stops):
            if token in tok.stops:
                break
            printer(token)
        printer.end()
        return 0
    except ModelError as e:
        print(f"run.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print()
        return 130


if __name__ == "__main__":
    sys.exit(main())
