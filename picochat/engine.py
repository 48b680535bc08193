"""Generation: prefill the prompt into a KV cache, then decode one token at a time.

Batched (ragged prompts are left-padded; the cache masks the padding), streaming (a generator
yields each step's tokens as they are sampled), with temperature / top-k / top-p sampling and a
seeded generator so a seed reproduces a sample. Temperature 0 is greedy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from picochat.model import KVCache, Llama
from picochat.rundir import PicochatError


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 0          # 0: off
    top_p: float = 1.0      # 1.0: off
    max_tokens: int = 256
    seed: int | None = None

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.max_tokens < 1:
            raise PicochatError("need temperature >= 0, 0 < top_p <= 1, top_k >= 0, max_tokens >= 1")


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) -> next ids (B,)."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens ranked above it already cover top_p
        drop = probs.cumsum(dim=-1) - probs > params.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(model: Llama, prompts: list[list[int]], params: SamplingParams,
             stop_ids: set[int] = frozenset()) -> Iterator[list[int | None]]:
    """Yield, per decoding step, one new token per prompt (None once that row has stopped)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise PicochatError("every prompt needs at least one token")
    device = next(model.parameters()).device
    longest = max(len(p) for p in prompts)
    context = model.config.max_seq_len
    if longest >= context:
        raise PicochatError(f"prompt of {longest} tokens does not fit the {context}-token context")
    max_new = min(params.max_tokens, context - longest)
    B = len(prompts)
    cache = KVCache(model.config, B, longest + max_new, device=device,
                    dtype=next(model.parameters()).dtype)
    cache.start = torch.tensor([longest - len(p) for p in prompts], device=device)
    ids = torch.tensor([[0] * (longest - len(p)) + p for p in prompts], device=device)  # (B, T)
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)
    logits = model(ids, cache)[:, -1]                                                   # (B, V)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for _ in range(max_new):
        next_ids = sample_next(logits, params, generator)                               # (B,)
        yield [None if d else int(t) for t, d in zip(next_ids.tolist(), done.tolist())]
        if stop_ids:
            done |= torch.isin(next_ids, torch.tensor(sorted(stop_ids), device=device))
        if bool(done.all()):
            return
        logits = model(next_ids[:, None], cache)[:, -1]


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
