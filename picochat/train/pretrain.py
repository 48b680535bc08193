"""Pretraining: next-token prediction on the run's token shards.

The model learns to continue internet text, a lossy compression of its corpus; validation loss
is reported in bits per byte, which (unlike loss per token) compares across tokenizers.

    picochat pretrain --run R --preset cpu-tiny [--max-steps N] [--resume]
"""

from __future__ import annotations

import time

import numpy as np
import torch

from picochat.config import Preset, override
from picochat.data.shards import TokenShards
from picochat.hardware import pick_device, pick_dtype
from picochat.model import Llama
from picochat.rundir import PicochatError, RunDir
from picochat.tokenizer import Tokenizer
from picochat.train.loss import evaluate_bpb, token_cross_entropy
from picochat.train.optim import make_optimizer
from picochat.train.stage import on, train_stage
from picochat.train.trainer import all_reduce_sum


class NextTokenObjective:
    """Random windows of the train stream; bits per byte on fixed windows of the val stream."""

    def __init__(self, train: TokenShards, val: TokenShards, seq_len: int, batch_size: int,
                 grad_accum: int, seed: int, eval_tokens: int, token_bytes: list[int]):
        if len(train) <= seq_len + 1:
            raise PicochatError(f"the train split has {len(train)} tokens, fewer than one "
                                f"{seq_len}-token window; build a bigger corpus or use a shorter context")
        self.train, self.val = train, val
        self.tokens_per_row = seq_len
        self.seq_len, self.batch_size, self.grad_accum, self.seed = seq_len, batch_size, grad_accum, seed
        self.eval_tokens = eval_tokens
        self.token_bytes = torch.tensor(token_bytes, dtype=torch.float32)

    def batch(self, step: int, micro: int, rank: int, world: int, model=None) -> dict[str, torch.Tensor]:
        # All of a step's windows come from one generator seeded by the step; each (micro, rank)
        # takes its slice. Same global batch whatever the process count; resumable by step alone.
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        rows = self.batch_size * self.grad_accum * world
        starts = torch.randint(0, len(self.train) - self.seq_len - 1, (rows,), generator=g)
        first = (micro * world + rank) * self.batch_size
        return self._windows(self.train, starts[first:first + self.batch_size].tolist())

    def _windows(self, shards: TokenShards, starts: list[int]) -> dict[str, torch.Tensor]:
        T = self.seq_len
        chunk = np.stack([np.asarray(shards.tokens[s:s + T + 1], dtype=np.int64) for s in starts])
        chunk = torch.from_numpy(chunk)                                  # (B, T+1)
        return {"input_ids": chunk[:, :-1], "targets": chunk[:, 1:]}    # (B, T) each

    def loss(self, model, batch) -> torch.Tensor:
        logits = model(batch["input_ids"])                              # (B, T, V)
        return token_cross_entropy(logits, batch["targets"])

    def evaluate(self, model, rank: int, world: int) -> dict[str, float]:
        """Bits per byte over the first eval_tokens of the val split (each rank a share)."""
        return {"val_bpb": evaluate_bpb(model, self.val.tokens, self.seq_len, self.eval_tokens, self.token_bytes,
                                        self.batch_size, rank, world, all_reduce_sum)}


def pretrain(run: RunDir, preset: Preset, max_steps: int | None = None, resume: bool = False,
             progress: bool = True, **train_overrides) -> dict:
    """Train the run's base model from scratch (or resume it); saves runs/R/base/."""
    tokenizer = Tokenizer.load(run.tokenizer)
    train_cfg = override(preset.train, max_steps=max_steps, **train_overrides)
    model_cfg = override(preset.model, vocab_size=tokenizer.vocab_size,
                         max_seq_len=max(preset.model.max_seq_len, train_cfg.seq_len))
    train = TokenShards(run.tokens, "train")
    val = TokenShards(run.tokens, "val")
    if train.vocab_size != tokenizer.vocab_size:
        raise PicochatError(f"token shards were made with a {train.vocab_size}-token vocabulary but "
                            f"the tokenizer has {tokenizer.vocab_size}; rerun `picochat data tokenize`")
    objective = NextTokenObjective(train, val, train_cfg.seq_len, train_cfg.batch_size,
                                   train_cfg.grad_accum, train_cfg.seed, train_cfg.eval_tokens,
                                   tokenizer.byte_lengths())
    torch.manual_seed(train_cfg.seed)
    model = Llama(model_cfg)
    model.init_weights(train_cfg.seed)

    def describe(trainer) -> str:
        return (f"pretraining {model.num_params() / 1e6:.2f}M parameters on {len(train):,} tokens; "
                f"{trainer.tokens_per_step:,} tokens/step for {train_cfg.max_steps} steps on {on(trainer)}")

    metrics = train_stage(run, "base", model, objective, train_cfg, tokenizer, resume=resume, progress=progress,
                          describe=describe, metrics_name="pretrain",
                          record={"preset": preset.name, "model": vars(model_cfg)})
    return metrics


def seconds_per_step(preset: Preset, steps: int = 5) -> float:
    """Wall time of one of the preset's pretraining steps on this machine (forward, backward and
    optimizer, on random tokens, in the dtype training would use): the fastest of `steps` after
    a warm-up step. What the speedrun sizes its stages by. The fastest, not the median: whatever
    else the machine is doing only adds time, and a median of three taken just after setup has
    read one machine's step as 0.9 s on one run and 1.8 s on another, when its pretraining then
    ran 1.0-1.2 s a step in both."""
    cfg = preset.train
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)
    model = Llama(override(preset.model, vocab_size=preset.vocab_size,
                           max_seq_len=max(preset.model.max_seq_len, cfg.seq_len))).to(device)
    optimizer = make_optimizer(model, cfg, device)
    ids = torch.randint(0, preset.vocab_size, (cfg.batch_size, cfg.seq_len + 1), device=device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        for _ in range(cfg.grad_accum):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = token_cross_entropy(model(ids[:, :-1]), ids[:, 1:])
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times[1:])
