"""Sampling: turning logits into next tokens.

- `SamplingParams`: temperature, top-k, top-p, min-p, repetition / frequency / presence
  penalties, seed, max tokens, stop strings and ids, logprobs; checked on construction.
- `Sampler`: one batch's sampling with the per-row state penalties need (used by every
  generation loop: `Engine`, `generate_steps`, the server's rows that need their own state).
- `sample_filtered` / `draw`: the same filtering rule for a whole batch at once without sorting
  the vocabulary (the server's rows that share one setting are sampled together).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from picochat.rundir import PicochatError


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
    (before temperature, penalties and top-k/top-p filtering; after a grammar's mask, when the
    answer has one) and the top alternatives."""
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

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only these rows' state (the others left the batch), in this order."""
        if self.seen is not None:
            self.seen = self.seen[rows]
        if self.counts is not None:
            self.counts = self.counts[rows]

    def extend(self, row: int, ids: list[int]) -> None:
        """Tokens appended to a row from outside (tool results) count as seen."""
        if self.seen is not None and ids:
            self.seen[row, torch.tensor(ids, device=self.seen.device)] = True

    def __call__(self, logits: torch.Tensor, counted: list[bool] | None = None) -> tuple[
            torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """logits (B, V) -> next ids (B,), [logprob (B,), top ids (B, k), top logprobs (B, k)].
        counted: per row, whether its token will be used (default all); a row whose sample is
        thrown away (it is being fed injected ids) leaves its penalty state as it was."""
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
        self._count(next_ids, counted)
        return next_ids, logprob, top_ids, top_lp

    def _count(self, next_ids: torch.Tensor, counted: list[bool] | None) -> None:
        if self.seen is None and self.counts is None:
            return
        rows = torch.arange(len(next_ids), device=next_ids.device)
        if counted is not None:
            rows = rows[torch.tensor(counted, dtype=torch.bool, device=next_ids.device)]
        if self.seen is not None:
            self.seen[rows, next_ids[rows]] = True
        if self.counts is not None:
            self.counts[rows, next_ids[rows]] += 1

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


# --- batched sampling without a sort --------------------------------------------------------------
def draw(p: torch.Tensor) -> torch.Tensor:
    """One index per row of unnormalised probabilities p (B, N), by inverting the cumulative
    sum at a uniform point: B random numbers instead of B x N (torch.multinomial and
    exponential noise both cost ~10 ms for 32 x 8192 on one CPU core; this ~1 ms)."""
    c = p.cumsum(dim=-1)
    u = (1 - torch.rand(p.shape[0], 1, device=p.device, dtype=c.dtype)) * c[:, -1:]   # in (0, total]
    return torch.searchsorted(c, u).clamp_(max=p.shape[1] - 1).squeeze(-1)


def sample_filtered(x: torch.Tensor, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0) -> torch.Tensor:
    """Sample one id per row of logits x (B, V) after top-k, min-p and top-p filtering (the
    rule of `Sampler`, batched, without sorting the vocabulary).

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
