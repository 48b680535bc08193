"""Generation: prefill the prompt into a KV cache, then decode one token at a time.

Three layers, each usable on its own:

- `FastLlama`: a decode-oriented copy of a `Llama`'s weights. Fused QKV and gate/up
  matrices, q/k rows permuted per head so rotary embedding is one complex multiply, the
  attention scale folded into W_q, matrices in the compute dtype (bf16 halves the bytes read per
  token, which is what bounds decoding), residual stream, norms, attention and KV cache in fp32.
  Batch-1 decoding is bounded by per-op overhead as much as by bandwidth, so every step runs
  the fewest ops it can. It uses the model's `KVCache` layout (left-padded ragged rows).
- `generate` / `generate_steps`: batched, streaming token generation with `SamplingParams`
  (temperature, top-k, top-p, min-p, repetition / frequency / presence penalties, seed,
  max tokens, stop tokens, logprobs).
- `Engine`: conversations. Renders messages through the chat template without ever letting
  message text become special tokens, fits long conversations into the context (oldest turns
  dropped, system prompt kept, the caller told), streams text with stop strings, and runs the
  tool loop: when the model closes a `<|tool_call|>`, the call is parsed and run, its result
  appended as a tool turn, and generation continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from picochat.chat import render_ids, render_prompt
from picochat.model import KVCache, Llama
from picochat.rundir import PicochatError


# --- sampling -----------------------------------------------------------------------------------
@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 0                  # 0: off
    top_p: float = 1.0              # 1.0: off
    min_p: float = 0.0              # drop tokens less likely than min_p x the likeliest; 0: off
    repetition_penalty: float = 1.0     # >1: logits of tokens in prompt or output shrink (CTRL / HF rule)
    frequency_penalty: float = 0.0      # minus count x this, for tokens generated so far (OpenAI rule)
    presence_penalty: float = 0.0       # minus this once a token has been generated (OpenAI rule)
    max_tokens: int = 256
    seed: int | None = None
    stop: Sequence[str] = ()        # stop strings (text level; used by Engine.stream)
    stop_token_ids: Sequence[int] = ()
    logprobs: int | None = None     # None: off; 0: the chosen token's; k: also the top k

    def __post_init__(self):
        problems = []
        if not self.temperature >= 0:
            problems.append("temperature >= 0")
        elif self.temperature < 1e-4:
            self.temperature = 0.0  # the limit is greedy; dividing by ~0 would give inf/NaN
        if not 0 < self.top_p <= 1:
            problems.append("0 < top_p <= 1")
        if self.top_k < 0:
            problems.append("top_k >= 0")
        if not 0 <= self.min_p < 1:
            problems.append("0 <= min_p < 1")
        if not 1e-3 <= self.repetition_penalty <= 1e3:
            problems.append("1e-3 <= repetition_penalty <= 1e3")
        if not -2 <= self.frequency_penalty <= 2 or not -2 <= self.presence_penalty <= 2:
            problems.append("-2 <= frequency_penalty, presence_penalty <= 2")
        if self.max_tokens < 1:
            problems.append("max_tokens >= 1")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            problems.append("0 <= logprobs <= 20")
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        if any(not s for s in self.stop):
            problems.append("non-empty stop strings")
        if problems:
            raise PicochatError("invalid sampling parameters: need " + ", ".join(problems))

    @property
    def penalized(self) -> bool:
        return self.repetition_penalty != 1 or self.frequency_penalty != 0 or self.presence_penalty != 0


@dataclass
class Token:
    """One sampled token: its id and, when asked for, its log-probability under the model
    (raw distribution, before temperature and filtering) and the top alternatives."""
    id: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None


class Sampler:
    """Turns a batch's logits into next tokens, keeping the per-row state penalties need."""

    def __init__(self, params: SamplingParams, prompts: list[list[int]], vocab: int, device):
        self.params = params
        self.generator = None
        if params.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(params.seed)
        B = len(prompts)
        self.seen = self.counts = None
        if params.repetition_penalty != 1:
            self.seen = torch.zeros(B, vocab, dtype=torch.bool, device=device)
            for b, p in enumerate(prompts):
                self.seen[b, torch.tensor(p, device=device).clamp(0, vocab - 1)] = True
        if params.frequency_penalty or params.presence_penalty:
            self.counts = torch.zeros(B, vocab, device=device)

    def extend(self, row: int, ids: list[int]) -> None:
        """Tokens appended to a row from outside (tool results) count as seen."""
        if self.seen is not None and ids:
            self.seen[row, torch.tensor(ids, device=self.seen.device)] = True

    def __call__(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                                                      torch.Tensor | None]:
        """logits (B, V) -> next ids (B,), [logprob (B,), top ids (B, k), top logprobs (B, k)]."""
        p = self.params
        logits = logits.float()
        logprob = top_ids = top_lp = None
        if p.logprobs is not None:
            lsm = logits.log_softmax(dim=-1)
        if self.seen is not None:
            shrunk = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
            logits = torch.where(self.seen, shrunk, logits)
        if self.counts is not None:
            logits = logits - self.counts * p.frequency_penalty - (self.counts > 0).float() * p.presence_penalty
        if p.temperature == 0:
            next_ids = logits.argmax(dim=-1)
        else:
            next_ids = self._sample(logits / p.temperature)
        if p.logprobs is not None:
            logprob = lsm.gather(-1, next_ids[:, None])[:, 0]
            if p.logprobs:
                top_lp, top_ids = lsm.topk(p.logprobs, dim=-1)
        if self.seen is not None:
            self.seen.scatter_(1, next_ids[:, None], True)
        if self.counts is not None:
            self.counts.scatter_add_(1, next_ids[:, None], torch.ones_like(next_ids[:, None], dtype=self.counts.dtype))
        return next_ids, logprob, top_ids, top_lp

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p.top_k and p.top_k < logits.shape[-1]:
            kth = torch.topk(logits, p.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.min_p > 0:
            probs = logits.softmax(dim=-1)
            logits = logits.masked_fill(probs < p.min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            # drop a token when the tokens ranked above it already cover top_p
            drop = probs.cumsum(dim=-1) - probs > p.top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)


# --- the decode-oriented model ------------------------------------------------------------------
class FastLlama:
    """A `Llama`'s weights rearranged for incremental decoding (see the module docstring).

    Exact in what it computes (same function as `Llama.forward`, up to float rounding): the
    per-head permutation of q and k rows is applied to both, so q.k is unchanged, and it maps
    Hugging Face's rotate-half pairs (i, i + Dh/2) onto adjacent (real, imaginary) pairs."""

    def __init__(self, model: Llama, dtype: "torch.dtype | str | None" = None):
        c = self.config = model.config
        first = next(model.parameters())
        # "int8": weight-only int8 (one scale per output row), bf16 activations, through
        # torch's decode kernel for it; a quarter of fp32's bytes per token
        self.int8 = dtype == "int8"
        self.device = first.device
        self.dtype = torch.bfloat16 if self.int8 else (dtype or first.dtype)
        H, K, Dh, D = c.n_heads, c.n_kv_heads, c.head_dim, c.dim
        self.H, self.K, self.G, self.Dh, self.ffn = H, K, H // K, Dh, c.ffn_dim
        half = torch.arange(Dh // 2, device=self.device)
        interleave = torch.stack([half, half + Dh // 2], dim=-1).flatten()       # (Dh,)

        def per_head(w, n):  # (n*Dh, D) rows -> rotate-half pairs adjacent
            return w.view(n, Dh, D)[:, interleave].reshape(n * Dh, D)

        self.layers = []
        with torch.no_grad():
            for layer in model.model.layers:
                a, m = layer.self_attn, layer.mlp
                wqkv = torch.cat([per_head(a.q_proj.weight.float(), H) * Dh ** -0.5,
                                  per_head(a.k_proj.weight.float(), K), a.v_proj.weight.float()])
                self.layers.append((
                    layer.input_layernorm.weight.detach().float(), self._matrix(wqkv),
                    self._matrix(a.o_proj.weight),
                    layer.post_attention_layernorm.weight.detach().float(),
                    self._matrix(torch.cat([m.gate_proj.weight, m.up_proj.weight])),
                    self._matrix(m.down_proj.weight)))
            self.embed = model.model.embed_tokens.weight.detach().float()
            self.norm = model.model.norm.weight.detach().float()
            self.lm_head = self._matrix(model.lm_head.weight)
            inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, Dh, 2, dtype=torch.int64,
                                                            device=self.device).float() / Dh))
            freqs = torch.outer(torch.arange(c.max_seq_len, device=self.device, dtype=torch.float32), inv_freq)
            self.cis = torch.polar(torch.ones_like(freqs), freqs)                  # (T, Dh/2) complex64
        self.eps = c.norm_eps

    def _matrix(self, w: torch.Tensor):
        """Store W for `x @ W`: transposed (in, out) and contiguous in fp32, where MKL's batch-1
        product runs ~3x faster that way; as (out, in) for F.linear in bf16 (oneDNN); as int8
        rows + fp32->bf16 row scales for int8."""
        w = w.detach()
        if self.int8:
            scale = (w.float().abs().amax(dim=1) / 127).clamp(min=1e-12)
            q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            return q, scale.to(self.dtype)
        w = w.to(self.dtype)
        return w.t().contiguous() if self.dtype == torch.float32 else w.contiguous()

    def _mm(self, x: torch.Tensor, w) -> torch.Tensor:
        if self.int8:
            q, scale = w
            y = torch._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), q, scale)
            return y.view(*x.shape[:-1], q.shape[0])
        return x @ w if self.dtype == torch.float32 else F.linear(x, w)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        return KVCache(self.config, batch_size, max_len, device=self.device, dtype=torch.float32)

    def weight_bytes_per_token(self) -> int:
        """Bytes of weights one decoding step reads (every matrix once, one embedding row)."""
        mats = [w for layer in self.layers for w in (layer[1], layer[2], layer[4], layer[5])] + [self.lm_head]
        flat = [t for m in mats for t in (m if isinstance(m, tuple) else (m,))]
        return sum(t.numel() * t.element_size() for t in flat) + self.embed.shape[1] * 4

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """ids (B, T) continue the cache -> logits (B, V) of the last position, fp32."""
        B, T = ids.shape
        if cache.length + T > cache.max_len:
            raise PicochatError(f"KV cache holds {cache.max_len} tokens; {cache.length + T} requested")
        H, K, G, Dh, Fd, dt = self.H, self.K, self.G, self.Dh, self.ffn, self.dtype
        D = H * Dh
        t0, t1 = cache.length, cache.length + T
        cis = self.cis[cache.positions(T)][:, :, None]                        # (B, T, 1, Dh/2)
        mask = cache.mask(T)                                                  # (B, 1, T, t1) | None
        if mask is None and T > 1:
            mask = torch.ones(T, t1, dtype=torch.bool, device=ids.device).tril(t0)[None, None]
        if mask is not None:
            bias = torch.zeros(mask.shape, device=ids.device).masked_fill_(~mask, float("-inf"))
            bias = bias[:, :, None]                                           # (B, 1, 1, T, t1)
        x = F.embedding(ids, self.embed)                                      # (B, T, D) fp32
        low = dt != torch.float32      # (fewest dispatches: batch-1 decoding is overhead-bound)
        QK = (H + K) * Dh
        for i, (n1, wqkv, wo, n2, wgu, wd) in enumerate(self.layers):
            h = F.rms_norm(x, (D,), n1, self.eps)
            qkv = self._mm(h.to(dt) if low else h, wqkv)                      # (B, T, (H+2K) Dh)
            if low:
                qkv = qkv.float()
            qk = torch.view_as_complex(qkv[..., :QK].view(B, T, H + K, Dh // 2, 2))
            qk = torch.view_as_real(qk * cis).view(B, T, H + K, Dh)
            kc, vc = cache.k[i], cache.v[i]                                   # (B, K, T_max, Dh)
            kc.narrow(2, t0, T).copy_(qk.narrow(2, H, K).transpose(1, 2))
            vc.narrow(2, t0, T).copy_(qkv[..., QK:].view(B, T, K, Dh).transpose(1, 2))
            if T == 1:
                q = qk.narrow(2, 0, H).view(B, K, G, Dh)
            else:
                q = qk[:, :, :H].reshape(B, T, K, G, Dh).permute(0, 2, 3, 1, 4).reshape(B, K, G * T, Dh)
            s = q @ kc.narrow(2, 0, t1).transpose(2, 3)                       # (B, K, G*T, t1)
            if mask is not None:
                s = (s.view(B, K, G, T, t1) + bias).view(B, K, G * T, t1)
            y = s.softmax(dim=-1) @ vc.narrow(2, 0, t1)                       # (B, K, G*T, Dh)
            if T > 1:
                y = y.view(B, K, G, T, Dh).permute(0, 3, 1, 2, 4)
            y = y.reshape(B, T, D)
            x = x + self._mm(y.to(dt) if low else y, wo)
            h = F.rms_norm(x, (D,), n2, self.eps)
            gu = self._mm(h.to(dt) if low else h, wgu)
            x = x + self._mm(F.silu(gu[..., :Fd]) * gu[..., Fd:], wd)
        cache.length = t1
        x = F.rms_norm(x[:, -1], (D,), self.norm, self.eps).to(dt)
        return self._mm(x, self.lm_head).float()                              # (B, V)


def as_fast(model: "Llama | FastLlama", dtype: "torch.dtype | str | None" = None) -> FastLlama:
    if isinstance(model, FastLlama):
        return model
    return FastLlama(model, dtype)


# --- token generation ---------------------------------------------------------------------------
def generate_steps(model: "Llama | FastLlama", prompts: list[list[int]], params: SamplingParams,
                   stop_ids: Sequence[int] | set[int] = frozenset()) -> Iterator[list[Token | None]]:
    """Yield, per decoding step, one `Token` per prompt (None once that row has stopped).

    A row stops after emitting a stop id (the stop token itself is yielded), after
    `params.max_tokens` tokens, or when the context is full."""
    net = as_fast(model)
    if not prompts or any(len(p) == 0 for p in prompts):
        raise PicochatError("every prompt needs at least one token")
    vocab = net.config.vocab_size
    if any(not 0 <= t < vocab for p in prompts for t in p):
        raise PicochatError(f"prompt token ids must be in [0, {vocab})")
    longest, context = max(len(p) for p in prompts), net.config.max_seq_len
    if longest >= context:
        raise PicochatError(f"prompt of {longest} tokens does not fit the {context}-token context")
    max_new = min(params.max_tokens, context - longest)
    B, device = len(prompts), net.device
    cache = net.new_cache(B, longest + max_new)
    cache.start = torch.tensor([longest - len(p) for p in prompts], device=device)
    ids = torch.tensor([[0] * (longest - len(p)) + p for p in prompts], device=device)
    stops = set(stop_ids) | set(params.stop_token_ids)
    sampler = Sampler(params, prompts, vocab, device)
    with torch.inference_mode():
        logits = net(ids, cache)
        done = [False] * B
        for step in range(max_new):
            next_ids, logprob, top_ids, top_lp = sampler(logits)
            out: list[Token | None] = []
            ids_list = next_ids.tolist()
            lp = logprob.tolist() if logprob is not None else None
            tops = (top_ids.tolist(), top_lp.tolist()) if top_ids is not None else None
            for b, t in enumerate(ids_list):
                if done[b]:
                    out.append(None)
                    continue
                out.append(Token(t, lp[b] if lp else None,
                                 list(zip(tops[0][b], tops[1][b])) if tops else None))
                if t in stops:
                    done[b] = True
            yield out
            if all(done) or step == max_new - 1:
                return
            # finished rows keep decoding (outputs ignored) so the batch stays rectangular
            logits = net(next_ids[:, None], cache)


def generate(model: "Llama | FastLlama", prompts: list[list[int]], params: SamplingParams,
             stop_ids: Sequence[int] | set[int] = frozenset()) -> Iterator[list[int | None]]:
    """Yield, per decoding step, one new token id per prompt (None once that row has stopped)."""
    for step in generate_steps(model, prompts, params, stop_ids):
        yield [None if t is None else t.id for t in step]


class TextStream:
    """Turns a stream of token ids into text pieces, holding back bytes until they form whole
    UTF-8 characters (one character may span several tokens)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending = b""

    def push(self, token_id: int) -> str:
        self.pending += self.tokenizer.token_bytes(token_id)
        for cut in range(len(self.pending), max(len(self.pending) - 4, -1), -1):
            try:
                text = self.pending[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self.pending = self.pending[cut:]
            return text
        # not a character being completed but broken bytes: show them replaced, move on
        return self.flush() if len(self.pending) > 4 else ""

    def flush(self) -> str:
        text, self.pending = self.pending.decode("utf-8", errors="replace"), b""
        return text


class StopStrings:
    """Holds back streamed text that could be the start of a stop string; reports a match."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.hit: str | None = None

    def push(self, text: str) -> str:
        """New text in -> text safe to show. After a match, `hit` is set and the text up to
        the stop string has been returned; nothing more is."""
        if self.hit is not None:
            return ""
        if not self.stops:
            return text
        self.held += text
        found = [(self.held.find(s), s) for s in self.stops if s in self.held]
        if found:
            at, self.hit = min(found)
            out, self.held = self.held[:at], ""
            return out
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.held)), 0, -1):
                if self.held.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return out

    def flush(self) -> str:
        out, self.held = ("" if self.hit is not None else self.held), ""
        return out


# --- conversations ------------------------------------------------------------------------------


@dataclass
class Event:
    """What `Engine.stream` / `Engine.chat` yield, in order.

    kind: "text" (assistant text to show), "thinking" (text inside <|think|>), "tool_call"
    (call: the parsed ToolCall, with its result), "notice" (something the user should be told:
    turns dropped, a message cut, the context full), "done" (finish_reason; messages: the new
    messages to append to the conversation; tokens: every token generated)."""
    kind: str
    text: str = ""
    token: Token | None = None
    call: object | None = None
    finish_reason: str | None = None
    messages: list[dict] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)


class Engine:
    """A model + tokenizer (+ tools) that turns conversations into streamed answers."""

    MAX_TOOL_CALLS = 8          # per answer: a model looping on tool calls is stopped

    def __init__(self, model: Llama, tokenizer, dtype: "torch.dtype | str | None" = None, tools=None):
        self.net = as_fast(model, dtype)
        self.tokenizer = tokenizer
        self.tools = tools
        self.context = self.net.config.max_seq_len
        sp = tokenizer.special_tokens
        self.special = {name: sp[name] for name in sp}
        self.special_ids = set(sp.values())
        self.end_id = tokenizer.end_id
        # a model that starts another turn has finished its own
        self.stop_ids = {sp[t] for t in ("<|end|>", "<|bos|>", "<|pad|>", "<|system|>", "<|user|>",
                                         "<|assistant|>", "<|tool|>", "<|tool_result|>") if t in sp}

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
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> Iterator[list[Token | None]]:
        """Batched token generation (see `generate_steps`), stopping rows at end of turn."""
        return generate_steps(self.net, prompts, params, self.stop_ids)

    def chat(self, messages: list[dict], params: SamplingParams, reserve: int | None = None) -> Iterator[Event]:
        """Answer a conversation: fit it to the context, then `stream` the answer."""
        reserve = reserve if reserve is not None else min(params.max_tokens, self.context // 4)
        kept, ids, notices = self.fit(messages, reserve)
        for n in notices:
            yield Event("notice", n)
        yield from self.stream(ids, params)

    def stream(self, prompt: list[int], params: SamplingParams) -> Iterator[Event]:
        """Generate one answer for prompt ids that end where the assistant speaks.

        Runs the tool loop; if the prompt itself ends with a closed tool call awaiting its
        result, that call is run first. Never raises for the model's or the tools' output."""
        tok, sp = self.tokenizer, self.special
        net = self.net
        call_open, call_close = sp["<|tool_call|>"], sp["<|/tool_call|>"]
        think_open, think_close = sp.get("<|think|>"), sp.get("<|/think|>")
        prompt = list(prompt)[-(self.context - 1):]
        cache = net.new_cache(1, self.context)
        sampler = Sampler(params, [prompt], net.config.vocab_size, net.device)
        stop_ids = self.stop_ids | set(params.stop_token_ids)
        stops = StopStrings(params.stop)
        text_stream = TextStream(tok)

        # the answer so far, as messages: [{"role": "assistant", "content", "tool_calls"}, {"role": "tool"}, ...]
        messages: list[dict] = [{"role": "assistant", "content": ""}]
        generated: list[Token] = []
        mode = "text"                 # "text" | "call" | "think"
        call_ids: list[int] = []
        n_calls = 0
        finish = "length"

        # a prompt that ends inside an assistant turn's tool call (e.g. resumed conversation)
        last_open = max((i for i, t in enumerate(prompt) if t == call_open), default=-1)
        last_close = max((i for i, t in enumerate(prompt) if t == call_close), default=-1)
        last_turn = max((i for i, t in enumerate(prompt) if t == sp["<|assistant|>"]), default=-1)
        pending: list[int] | None = None
        if last_open > last_turn and last_open > last_close:
            mode, call_ids = "call", prompt[last_open + 1:]
        elif last_close > last_open > last_turn and last_close == len(prompt) - 1:
            pending = prompt[last_open + 1:last_close]

        def run_call(ids: list[int]):
            from picochat.tools import ToolCall
            text = tok.decode(ids)
            call = self.tools.run(text) if self.tools is not None else \
                ToolCall(text=text, result="error: no tools are available")
            messages[-1].setdefault("tool_calls", []).append(call.message_call())
            messages.append({"role": "tool", "content": call.result})
            messages.append({"role": "assistant", "content": ""})
            return call

        def result_ids(result: str) -> list[int]:
            return [self.end_id, sp["<|tool|>"], sp["<|tool_result|>"], *tok.encode(result),
                    sp["<|/tool_result|>"], self.end_id, sp["<|assistant|>"]]

        feed = prompt
        if pending is not None:
            call = run_call(pending)
            n_calls += 1
            yield Event("tool_call", call=call)
            feed = prompt + result_ids(call.result)
            sampler.extend(0, feed[len(prompt):])
        if len(feed) >= self.context:
            yield Event("notice", "the context is full; no room for an answer")
            yield Event("done", finish_reason="length", messages=[])
            return
        with torch.inference_mode():
            logits = net(torch.tensor([feed], device=net.device), cache)
            budget = params.max_tokens
            while budget > 0:
                if cache.length >= self.context:
                    yield Event("notice", f"the {self.context}-token context is full; the answer was cut")
                    finish = "length"
                    break
                next_ids, logprob, top_ids, top_lp = sampler(logits)
                t = int(next_ids[0])
                token = Token(t, float(logprob[0]) if logprob is not None else None,
                              list(zip(top_ids[0].tolist(), top_lp[0].tolist())) if top_ids is not None else None)
                generated.append(token)
                budget -= 1
                extra: list[int] = []
                if mode == "call":
                    if t == call_close:
                        call = run_call(call_ids)
                        n_calls += 1
                        yield Event("tool_call", call=call)
                        mode, call_ids = "text", []
                        if n_calls > self.MAX_TOOL_CALLS:
                            yield Event("notice", f"stopped after {self.MAX_TOOL_CALLS} tool calls in one answer")
                            finish = "tool_calls"
                            break
                        extra = result_ids(call.result)
                        if cache.length + 1 + len(extra) >= self.context:
                            yield Event("notice", "the tool result does not fit the context; the answer stops here")
                            finish = "length"
                            break
                        sampler.extend(0, extra)
                    elif t in stop_ids:
                        yield Event("notice", "the model ended its turn inside a tool call; the call was not run")
                        finish = "stop"
                        break
                    else:
                        call_ids.append(t)
                elif t in stop_ids:
                    finish = "stop"
                    break
                elif t == call_open:
                    mode, call_ids = "call", []
                    piece = text_stream.flush()
                    if piece:
                        shown = stops.push(piece)
                        messages[-1]["content"] += shown
                        if shown:
                            yield Event("text", shown)
                elif think_open is not None and t == think_open:
                    mode = "think"
                elif think_close is not None and t == think_close:
                    mode = "text"
                elif t in self.special_ids:
                    pass  # other markers (image, stray closers) are not text
                else:
                    piece = text_stream.push(t)
                    if mode == "think":
                        messages[-1]["thinking"] = messages[-1].get("thinking", "") + piece
                        if piece:
                            yield Event("thinking", piece, token=token)
                    else:
                        shown = stops.push(piece)
                        messages[-1]["content"] += shown
                        if shown:
                            yield Event("text", shown, token=token)
                        if stops.hit is not None:
                            finish = "stop"
                            break
                logits = net(torch.tensor([[t, *extra]], device=net.device), cache)
        tail = stops.push(text_stream.flush()) + stops.flush() if stops.hit is None else ""
        if tail:
            messages[-1]["content"] += tail
            yield Event("text", tail)
        if messages[-1]["content"] == "" and len(messages) > 1 and "tool_calls" not in messages[-1]:
            messages.pop()  # no text after the last tool result
        yield Event("done", finish_reason=finish, messages=messages, tokens=generated)


def load_engine(folder, dtype: str = "auto", tools=None, device: str = "cpu") -> Engine:
    """An Engine for a model directory (weights + tokenizer).

    dtype: fp32 | bf16 | int8 (weight-only, per-row scales) | auto: bf16 where the hardware
    has it (CUDA; CPUs with AMX or AVX-512 BF16), else fp32. On an idle 2-core AVX-512 BF16 CPU,
    bench/generate_throughput.py measured bf16 1.28x fp32 at batch 1 and 1.78x at batch 16 (on a
    heavily shared CPU the oneDNN call overhead made bf16 the slower one at batch 1)."""
    from picochat.model import load_pretrained
    from picochat.tokenizer import Tokenizer

    dev = torch.device(device)
    compute = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": "int8"}.get(dtype)
    if dtype == "auto":
        from picochat.hardware import pick_dtype

        compute = pick_dtype("auto", dev)
    elif compute is None:
        raise PicochatError(f"dtype must be auto, fp32, bf16 or int8, not {dtype!r}")
    model = load_pretrained(folder, device=dev).eval()
    tokenizer = Tokenizer.load(folder)
    return Engine(model, tokenizer, dtype=compute, tools=tools)
