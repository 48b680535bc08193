"""The output head only at answer tokens, against the head at every position (the baseline: what
a preference trainer that takes the full logits and gathers the answer's computes, as TRL's DPO
trainer does): one forward and backward pass of DPO's answer log-probabilities
(picochat.train.preference.answer_logprobs) on a preset's model.

    python bench/answer_head.py [--preset cpu-tiny] [--answer-fraction 0.3] [--repeats 5]

A conversation's prompt needs no vocabulary-sized product, and in DPO and RL batches most
positions are the prompt or padding. Prints the median seconds of each, the two results' largest
difference (they must agree), and the speed ratio to the baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.muon_step import median_seconds
from picochat.config import get_preset
from picochat.model import Llama
from picochat.train.preference import token_logprobs


def answer_mask(batch: int, length: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Each row's answer: its last `fraction` of positions, after a prompt of varying length."""
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for row in range(batch):
        answer = max(1, int(length * fraction * (0.5 + torch.rand(1, generator=generator).item())))
        mask[row, length - min(answer, length - 1):] = True
    return mask


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--answer-fraction", type=float, default=0.3, help="answer tokens' share of each row, on average")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    preset = get_preset(args.preset)
    torch.manual_seed(0)
    model = Llama(preset.model)
    model.init_weights(0)
    generator = torch.Generator().manual_seed(0)
    batch, length = 2 * preset.train.batch_size, preset.train.seq_len      # chosen and rejected rows
    ids = torch.randint(0, preset.model.vocab_size, (batch, length), generator=generator)
    mask = answer_mask(batch, length, args.answer_fraction, generator)

    def step(at):
        model.zero_grad()
        sums = (token_logprobs(model, ids, at=at) * mask).sum(-1)
        sums.sum().backward()
        return sums.detach()

    gap = (step(None) - step(mask)).abs().max().item()
    full, answers = median_seconds(lambda: step(None), args.repeats), median_seconds(lambda: step(mask), args.repeats)
    print(f"{args.preset}: {batch} rows x {length} tokens, {mask.float().mean():.0%} of them answer tokens, "
          f"vocabulary {preset.model.vocab_size:,}; largest difference between the two {gap:.2e}")
    print(f"{'head at every position (baseline)':36s} {full:8.3f} s/pass   1.00x")
    print(f"{'head at answer tokens (picochat)':36s} {answers:8.3f} s/pass   "
          f"{full / answers:5.2f}x the baseline's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
