"""Supervised fine-tuning: the same next-token objective, on conversations.

The base model continues documents; trained on conversations rendered through the chat
template, with the loss on the assistant's tokens only, it learns to answer as an assistant:
its identity, when to call the calculator, how to refuse, when to say "I don't know".

    picochat sft --run R [--preset P] [--mixture FILE] [--resume]

reads runs/R/mid/ (runs/R/base/ where there was no mid-training), builds the mixture into
runs/R/sft/data/ (see picochat.sft_data.mixture), trains on the one trainer, and writes runs/R/sft/ (a Hugging Face model directory carrying the
chat template), metrics/sft.jsonl and run.json's "sft" entry.
"""

from __future__ import annotations

import json
import shutil
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from picochat.chat import Rendered, encode_conversation
from picochat.config import Preset, TrainConfig, override
from picochat.model import load_pretrained
from picochat.rundir import PicochatError, RunDir
from picochat.sft_data.mixture import build_mixture, load_mixture, read_rows
from picochat.tokenizer import Tokenizer
from picochat.train.loss import IGNORE, predicted_tokens_loss
from picochat.train.stage import on, refuse_overwrite, train_stage
from picochat.train.trainer import all_reduce_sum


def collate(rows: list[Rendered], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch to its longest conversation. Targets are the next ids, with
    IGNORE wherever the next token is not the assistant's (or is padding)."""
    T = max(len(r.ids) for r in rows) - 1
    inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for b, r in enumerate(rows):
        ids = torch.tensor(r.ids, dtype=torch.long)
        mask = torch.tensor(r.mask[1:], dtype=torch.bool)
        n = len(r.ids) - 1
        inputs[b, :n] = ids[:-1]
        targets[b, :n] = torch.where(mask, ids[1:], IGNORE)
    return {"input_ids": inputs, "targets": targets}


OPEN_ROWS = 8


def pack_first_fit(order: list[int], lengths: list[int], capacity: int, open_rows: int = OPEN_ROWS) -> list[list[int]]:
    """Conversations (indices, in `order`) packed into rows of at most `capacity` tokens.

    Each goes into the first of up to `open_rows` unfinished rows it fits, else starts a new one;
    a row is finished when nothing as short as the shortest conversation would fit, or when it is
    the oldest and a new row needs its place. Closing rows in turn in one pass keeps the epoch's
    shuffled order within a few rows, where sorting by length would line up each task's
    conversations; filling gaps from later conversations wastes far less of each row as padding
    than closing a row at the first conversation that does not fit."""
    shortest = min(lengths[i] for i in order)
    rows: list[list[int]] = []
    filling: list[tuple[list[int], int]] = []          # (row, tokens used), oldest first
    for i in order:
        n = lengths[i]
        slot = next((k for k, (_, used) in enumerate(filling) if used + n <= capacity), None)
        if slot is None:
            if len(filling) == open_rows:
                rows.append(filling.pop(0)[0])
            filling.append(([], 0))
            slot = len(filling) - 1
        row, used = filling[slot]
        row.append(i)
        filling[slot] = (row, used + n)
        if used + n + shortest > capacity:
            rows.append(filling.pop(slot)[0])
    return rows + [row for row, _ in filling]


class ChatObjective:
    """Conversations in a seeded order per epoch; loss on assistant tokens; val loss per token.

    With `pack_tokens`, each row holds as many whole conversations (in the epoch's order) as fit
    in `pack_tokens` ids, so short chats don't train mostly padding (here ~4x more conversations
    per step). Packed conversations are separated by <|bos|> and attend to the ones before them
    in the row, as pretraining's documents do; no conversation is ever split."""

    def __init__(self, train: list[Rendered], val: list[Rendered], batch_size: int, grad_accum: int,
                 seed: int, pad_id: int, pack_tokens: int | None = None):
        if not train:
            raise PicochatError("no training conversations")
        if pack_tokens is not None and max(len(r) for r in train) > pack_tokens:
            raise PicochatError(f"a conversation is longer than the {pack_tokens}-token row")
        self.train, self.val = train, val
        self.batch_size, self.grad_accum, self.seed, self.pad_id = batch_size, grad_accum, seed, pad_id
        self.pack_tokens = pack_tokens
        self._rows_in_epoch: dict[int, int] = {}
        # the mean length of a row: what tokens/s and MFU count (padding excluded)
        first = self._epoch_rows(0)
        self.tokens_per_row = max(1, round(sum(sum(len(self.train[i]) for i in row) - 1 for row in first)
                                           / len(first)))

    @lru_cache(maxsize=4)
    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train), generator=g).tolist()

    @lru_cache(maxsize=4)
    def _epoch_rows(self, epoch: int) -> list[list[int]]:
        """The epoch's rows, as lists of conversation indices (one each when not packing)."""
        order = self._order(epoch)
        if self.pack_tokens is None:
            return [[i] for i in order]
        return pack_first_fit(order, [len(r) for r in self.train], self.pack_tokens)

    def row(self, k: int) -> Rendered:
        """The k-th row of the endless stream of shuffled (and packed) epochs."""
        epoch = 0
        while True:
            if epoch not in self._rows_in_epoch:
                self._rows_in_epoch[epoch] = len(self._epoch_rows(epoch))
            if k < self._rows_in_epoch[epoch]:
                break
            k -= self._rows_in_epoch[epoch]
            epoch += 1
        parts = [self.train[i] for i in self._epoch_rows(epoch)[k]]
        if len(parts) == 1:
            return parts[0]
        return Rendered([t for p in parts for t in p.ids], [m for p in parts for m in p.mask],
                        [])

    def epochs(self, rows: int) -> float:
        """How many epochs `rows` stream rows cover."""
        done, epoch = 0.0, 0
        while rows > 0:
            n = len(self._epoch_rows(epoch))
            done += min(rows, n) / n
            rows -= n
            epoch += 1
        return done

    def batch(self, step: int, micro: int, rank: int, world: int, model=None) -> dict[str, torch.Tensor]:
        # Step s trains on rows [s*R, (s+1)*R) of the stream (R rows per step, all processes);
        # each (micro, rank) takes its slice: a pure function of its arguments, so resume is exact.
        per_step = self.batch_size * self.grad_accum * world
        first = step * per_step + (micro * world + rank) * self.batch_size
        return collate([self.row(first + i) for i in range(self.batch_size)], self.pad_id)

    def loss(self, model, batch) -> torch.Tensor:
        return predicted_tokens_loss(model, batch["input_ids"], batch["targets"])

    def evaluate(self, model, rank: int, world: int) -> dict[str, float]:
        """Mean loss per assistant token over the held-out conversations (each rank a share)."""
        if not self.val:
            return {}
        device = next(model.parameters()).device
        nats = torch.zeros((), device=device, dtype=torch.float64)
        count = torch.zeros((), device=device, dtype=torch.float64)
        mine = self.val[rank::world]
        for i in range(0, len(mine), self.batch_size):
            batch = collate(mine[i:i + self.batch_size], self.pad_id)
            logits = model(batch["input_ids"].to(device))
            targets = batch["targets"].to(device).flatten()
            per_token = F.cross_entropy(logits.float().flatten(0, 1), targets, ignore_index=IGNORE,
                                        reduction="sum")
            nats += per_token.double()
            count += (targets != IGNORE).sum().double()
        nats, count = all_reduce_sum(nats), all_reduce_sum(count)
        return {"val_loss": (nats / count.clamp(min=1)).item()}


def sft_config(preset: Preset) -> TrainConfig:
    """The preset's SFT recipe, or one derived from its pretraining recipe."""
    cfg = preset.sft
    if cfg is not None:
        return cfg
    t = preset.train
    return override(t, max_steps=max(20, t.max_steps // 3), lr=t.lr / 3, warmup_steps=max(1, t.warmup_steps // 2),
                    eval_every=max(10, t.max_steps // 9), ckpt_every=max(10, t.max_steps // 9))


def starting_model(run: RunDir):
    """The model SFT starts from: the mid-trained one when the run has it, else the base model."""
    mid = run.model("mid")
    return mid if (mid / "config.json").exists() else run.require_model("base")


def render_rows(rows: list[dict], tokenizer: Tokenizer, max_tokens: int, what: str) -> list[Rendered]:
    out = []
    for row in rows:
        rendered = encode_conversation(tokenizer, row["messages"], max_tokens)
        if rendered is None:
            raise PicochatError(f"a {what} conversation no longer fits {max_tokens} tokens; "
                                "delete the stage's data folder (runs/R/<stage>/data) to rebuild it")
        out.append(rendered)
    return out


def prepare_data(run: RunDir, stage: str, mixture_spec: str | None, tokenizer: Tokenizer, max_tokens: int,
                 resume: bool, progress: bool) -> tuple[Path, dict]:
    """Build the mixture into runs/R/<stage>/data, or reuse it (resume: it must be the same mixture)."""
    data = run.model(stage) / "data"
    mixture = load_mixture(mixture_spec)
    stats_path = data / "stats.json"
    if stats_path.exists():
        used = json.loads((data / "mixture.json").read_text())
        stats = json.loads(stats_path.read_text())
        if used == mixture.to_json() and stats.get("max_tokens") == max_tokens:
            return data, stats
        if resume:
            raise PicochatError(f"{data} was built from a different mixture or context than this "
                                "run asks for; resume with the same --mixture, or start over without --resume")
        shutil.rmtree(data)
    return data, build_mixture(mixture, tokenizer, max_tokens, data, progress=progress, base=run.path)


def sft(run: RunDir, preset: Preset, mixture: str | None = None, max_steps: int | None = None,
        resume: bool = False, progress: bool = True, pack: bool = True, **train_overrides) -> dict:
    """Fine-tune runs/R/mid (or runs/R/base, where there was no mid-training) on the mixture's
    conversations; saves runs/R/sft/."""
    started = time.time()
    start = starting_model(run)
    refuse_overwrite(run, "sft", resume)        # before the mixture is built
    model = load_pretrained(start)
    tokenizer = Tokenizer.load(start)
    train_cfg = override(sft_config(preset), max_steps=max_steps, **train_overrides)
    if train_cfg.seq_len > model.config.max_seq_len:
        train_cfg = override(train_cfg, seq_len=model.config.max_seq_len)
    max_tokens = train_cfg.seq_len + 1     # ids per conversation: seq_len inputs + the last target
    data, stats = prepare_data(run, "sft", mixture, tokenizer, max_tokens, resume, progress)
    train = render_rows(read_rows(data / "train.jsonl"), tokenizer, max_tokens, "train")
    val = render_rows(read_rows(data / "val.jsonl"), tokenizer, max_tokens, "val")
    objective = ChatObjective(train, val, train_cfg.batch_size, train_cfg.grad_accum, train_cfg.seed,
                              tokenizer.pad_id, pack_tokens=max_tokens if pack else None)

    def describe(trainer) -> str:
        rows = train_cfg.batch_size * train_cfg.grad_accum * trainer.world
        return (f"sft: {model.num_params() / 1e6:.2f}M parameters from {start.name}, {len(train):,} train / {len(val):,} val "
                f"conversations (mixture {stats['mixture']}); {train_cfg.max_steps} steps x {rows} rows"
                f"{' (packed)' if pack else ''} = {objective.epochs(rows * train_cfg.max_steps):.2f} epochs "
                f"on {on(trainer)}")

    record = {"preset": preset.name, "from": start.name, "mixture": stats["mixture"],
              "data": {k: stats[k] for k in ("train_rows", "val_rows")},
              "sources": {k: {f: v[f] for f in ("kept", "rows")} for k, v in stats["sources"].items()},
              "packed": pack}
    metrics = train_stage(run, "sft", model, objective, train_cfg, tokenizer, resume=resume, progress=progress,
                          describe=describe, record=record, started=started)
    return metrics
