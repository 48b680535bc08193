"""Mid-training: the end of pretraining, with the assistant's skills mixed into the web text.

Web text alone never shows a small model the chat format, a tool call, or a number copied
from earlier in its context into an answer; SFT's few thousand conversations are too few to
teach those from scratch. So before SFT the base model keeps training on its documents with
conversations mixed into every batch: copying (a number, a name, a quoted span, a value looked
up in a list), calculator calls with the user's operands, "I don't know" to the unknowable,
identity, spelling (mixtures/mid.json). Part of each batch stays web text (the preset's
`mid_text_fraction`, half for cpu-tiny), so the model still models documents: its validation
bits per byte are reported beside the conversations' loss. The skills come from the
conversations seen, so where a slower machine must train less, the speedrun drops text rows
before steps (picochat.speedrun.fewer_text_rows).

    picochat midtrain --run R [--preset P] [--mixture mixtures/mid.json] [--resume]

reads runs/R/base/ and the token shards, builds the mixture into runs/R/mid/data/, and writes
runs/R/mid/ (a model directory; `picochat sft` starts from it when it exists), metrics/mid.jsonl
and run.json's "mid" entry.
"""

from __future__ import annotations

import time

import torch

from picochat.config import Preset, TrainConfig, override
from picochat.data.shards import TokenShards
from picochat.model import load_pretrained
from picochat.rundir import RunDir
from picochat.sft_data.mixture import read_rows
from picochat.tokenizer import Tokenizer
from picochat.train.loss import IGNORE, token_cross_entropy
from picochat.train.pretrain import NextTokenObjective
from picochat.train.sft import ChatObjective, prepare_data, render_rows
from picochat.train.stage import on, refuse_overwrite, train_stage

MID_MIXTURE = "mid"


class MixedObjective:
    """Every micro-batch holds `text.batch_size` windows of web text and `chat.batch_size` rows of
    packed conversations, padded to one length; the loss is the mean over all target tokens (every
    token of the text, the assistant's tokens of the conversations)."""

    def __init__(self, text: NextTokenObjective, chat: ChatObjective, pad_id: int):
        self.text, self.chat, self.pad_id = text, chat, pad_id
        self.tokens_per_row = text.seq_len

    def batch(self, step: int, micro: int, rank: int, world: int, model=None) -> dict[str, torch.Tensor]:
        text = self.text.batch(step, micro, rank, world)
        chat = self.chat.batch(step, micro, rank, world)
        T = text["input_ids"].shape[1]
        gap = T - chat["input_ids"].shape[1]          # conversations are packed to at most T
        inputs = torch.nn.functional.pad(chat["input_ids"], (0, gap), value=self.pad_id)
        targets = torch.nn.functional.pad(chat["targets"], (0, gap), value=IGNORE)
        return {"input_ids": torch.cat([text["input_ids"], inputs]), "targets": torch.cat([text["targets"], targets])}

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        rows, targets = self.text.batch_size, batch["targets"]
        counted = targets != IGNORE               # the output head runs only where a token is predicted
        logits = model(batch["input_ids"], at=counted)                       # (N, V), text rows first
        targets, text = targets[counted], int(counted[:rows].sum())
        with torch.no_grad():      # the two parts' losses, for the log (before logits become gradients)
            text_loss = torch.nn.functional.cross_entropy(logits[:text].float(), targets[:text])
            chat_loss = torch.nn.functional.cross_entropy(logits[text:].float(), targets[text:])
        return token_cross_entropy(logits[None], targets[None]), {"text_loss": text_loss, "chat_loss": chat_loss}

    def evaluate(self, model, rank: int, world: int) -> dict[str, float]:
        return {**self.text.evaluate(model, rank, world), **self.chat.evaluate(model, rank, world)}


def mid_config(preset: Preset) -> TrainConfig:
    """The preset's mid-training recipe, or one derived from pretraining's: a fifth of its steps
    (at least 20), from a third of its peak learning rate."""
    if preset.mid is not None:
        return preset.mid
    t = preset.train
    steps = max(20, t.max_steps // 5)
    return override(t, max_steps=steps, lr=t.lr / 3, warmup_steps=max(1, steps // 20),
                    eval_every=steps, ckpt_every=max(10, steps // 4))


def midtrain(run: RunDir, preset: Preset, mixture: str | None = None, max_steps: int | None = None,
             resume: bool = False, progress: bool = True, text_fraction: float | None = None,
             **train_overrides) -> dict:
    """Continue runs/R/base on web text mixed with conversations; saves runs/R/mid/.
    text_fraction: the share of each batch that is web text (default: the preset's)."""
    started = time.time()
    base = run.require_model("base")
    refuse_overwrite(run, "mid", resume)
    model = load_pretrained(base)
    tokenizer = Tokenizer.load(base)
    cfg = override(mid_config(preset), max_steps=max_steps, **train_overrides)
    cfg = override(cfg, seq_len=min(cfg.seq_len, model.config.max_seq_len))
    max_tokens = cfg.seq_len + 1
    data, stats = prepare_data(run, "mid", mixture or MID_MIXTURE, tokenizer, max_tokens, resume, progress)
    train = render_rows(read_rows(data / "train.jsonl"), tokenizer, max_tokens, "train")
    val = render_rows(read_rows(data / "val.jsonl"), tokenizer, max_tokens, "val")
    text_fraction = preset.mid_text_fraction if text_fraction is None else text_fraction
    text_rows = max(1, round(cfg.batch_size * text_fraction))
    text = NextTokenObjective(TokenShards(run.tokens, "train"), TokenShards(run.tokens, "val"), cfg.seq_len,
                              text_rows, cfg.grad_accum, cfg.seed, cfg.eval_tokens, tokenizer.byte_lengths())
    chat = ChatObjective(train, val, cfg.batch_size - text_rows, cfg.grad_accum, cfg.seed, tokenizer.pad_id,
                         pack_tokens=max_tokens)
    objective = MixedObjective(text, chat, tokenizer.pad_id)

    def describe(trainer) -> str:
        return (f"midtrain: {model.num_params() / 1e6:.2f}M parameters from {base}; each batch {text_rows} "
                f"web-text windows + {cfg.batch_size - text_rows} rows of packed conversations "
                f"({len(train):,} train / {len(val):,} val, mixture {stats['mixture']}); "
                f"{cfg.max_steps} steps on {on(trainer)}")

    record = {"preset": preset.name, "mixture": stats["mixture"], "text_fraction": text_rows / cfg.batch_size,
              "data": {k: stats[k] for k in ("train_rows", "val_rows")}}
    return train_stage(run, "mid", model, objective, cfg, tokenizer, resume=resume, progress=progress,
                       describe=describe, metrics_name="mid", record=record, started=started)
