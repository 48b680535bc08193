"""What the reward model and DPO share: comparisons as token ids, in a fixed order per step.

A comparison (picochat.prefs.store) is rendered twice through the chat template: prompt +
chosen answer and prompt + rejected answer. Each side's mask marks the answer's own tokens
(what the assistant wrote: text, tool calls, <|end|>), never the prompt or tool results, so a
log-probability or a reward reads only what the model is judged on. A micro-batch stacks the
chosen sides over the rejected ones, right-padded: rows [0, B) chosen, [B, 2B) rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from picochat.chat import normalize, render_ids
from picochat.prefs.store import Comparison
from picochat.rundir import PicochatError


@dataclass
class RenderedPair:
    chosen: list[int]
    rejected: list[int]
    chosen_mask: list[int]       # per id: 1 on the answer's own tokens
    rejected_mask: list[int]
    source: str


def render_pair(tokenizer, comparison: Comparison, max_tokens: int) -> RenderedPair | None:
    """The pair's two sides as ids and answer masks; None when a side does not fit max_tokens."""
    prompt = normalize(comparison.pair.messages)
    start = len(render_ids(tokenizer, prompt).ids)      # the prompt's render is each side's prefix
    sides = []
    for answer in (comparison.chosen, comparison.rejected):
        r = render_ids(tokenizer, prompt + normalize(answer))
        if len(r.ids) > max_tokens:
            return None
        sides.append((r.ids, [0] * start + r.mask[start:]))
    (chosen, chosen_mask), (rejected, rejected_mask) = sides
    return RenderedPair(chosen, rejected, chosen_mask, rejected_mask, comparison.label.source)


def render_pairs(tokenizer, comparisons: list[Comparison], max_tokens: int) -> tuple[list[RenderedPair], int]:
    """Every comparison that fits, and how many did not."""
    out = [r for c in comparisons if (r := render_pair(tokenizer, c, max_tokens)) is not None]
    return out, len(comparisons) - len(out)


def collate_pairs(pairs: list[RenderedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids (2B, T) right-padded with pad_id, answer_mask (2B, T): chosen rows first."""
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    masks = [p.chosen_mask for p in pairs] + [p.rejected_mask for p in pairs]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.float32)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(m)] = torch.tensor(m, dtype=torch.float32)
    return {"input_ids": ids, "answer_mask": mask}


def token_logprobs(model, ids: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) log-probability of each id given the ones before it under `model` (column 0: 0).
    at: a (B, T) mask of the ids wanted; the others are 0, and the output head runs only at the
    wanted ones (the model's `at` mask: a prompt's positions need no vocabulary-sized product)."""
    targets = ids[:, 1:]
    if at is None:
        logits = model(ids[:, :-1]).float()
        lp = -F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)
        return F.pad(lp, (1, 0))
    wanted = at[:, 1:].bool()
    picked = -F.cross_entropy(model(ids[:, :-1], at=wanted).float(), targets[wanted], reduction="none")
    lp = torch.zeros(targets.shape, dtype=picked.dtype, device=ids.device).masked_scatter(wanted, picked)
    return F.pad(lp, (1, 0))


def answer_logprobs(model, input_ids: torch.Tensor, answer_mask: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probability of its answer tokens under `model` (a causal LM)."""
    return (token_logprobs(model, input_ids, at=answer_mask) * answer_mask).sum(-1)


class PairStream:
    """The training pairs in a seeded order per epoch; step s, micro-step m, rank r take a fixed
    slice of it, so a resumed run sees the same pairs (the trainer's resume rule)."""

    def __init__(self, pairs: list[RenderedPair], batch_size: int, grad_accum: int, seed: int):
        if not pairs:
            raise PicochatError("no comparisons fit the model's context to train on")
        self.pairs, self.batch_size, self.grad_accum, self.seed = pairs, batch_size, grad_accum, seed
        self.tokens_per_row = max(1, round(sum(len(p.chosen) + len(p.rejected) for p in pairs) / len(pairs)))

    @lru_cache(maxsize=4)
    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.pairs), generator=g).tolist()

    def indices(self, step: int, micro: int, rank: int, world: int) -> list[int]:
        per_step = self.batch_size * self.grad_accum * world
        first = step * per_step + (micro * world + rank) * self.batch_size
        n = len(self.pairs)
        return [self._order(k // n)[k % n] for k in range(first, first + self.batch_size)]

    def epochs(self, steps: int, world: int = 1) -> float:
        return steps * self.batch_size * self.grad_accum * world / len(self.pairs)


def by_source(pairs: list[RenderedPair]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        out.setdefault(p.source, []).append(i)
    return out
