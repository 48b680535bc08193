"""Bits per byte on the run's held-out text: how well the model compresses documents it never
trained on, in a unit that compares across tokenizers.

    picochat eval --run R --stage sft --tasks bpb --limit 256

The same computation as pretraining's validation (picochat.train.loss.evaluate_bpb, which both
call): the first `limit` context-length windows of the val shards, summed nats / ln 2 / summed
UTF-8 bytes of the predicted tokens. With as many tokens as the run's `eval_tokens` (65,536 =
256 windows of 256 for cpu-tiny) it is pretraining's last val_bpb for the base model; for later
stages it shows how much general text modelling fine-tuning gave up.
"""

from __future__ import annotations

import torch

from picochat.evals.subject import Subject, TaskUnavailable
from picochat.rundir import PicochatError, RunDir
from picochat.train.loss import evaluate_bpb


def bits_per_byte(subject: Subject, run: RunDir, limit: int, seed: int) -> dict:
    """`seed` is unused: the windows are the first of the val split, as in pretraining."""
    from picochat.data.shards import TokenShards

    try:
        val = TokenShards(run.tokens, "val")
    except PicochatError as e:
        raise TaskUnavailable(f"bits per byte needs the run's token shards: {e}") from e
    if val.vocab_size != subject.tokenizer.vocab_size:
        raise TaskUnavailable(f"the run's token shards use a {val.vocab_size}-token vocabulary, the model's "
                            f"tokenizer {subject.tokenizer.vocab_size}; bits per byte needs shards made "
                            "with the model's tokenizer")
    seq_len = min(subject.context, max(len(val) - 1, 1))
    windows = max(1, min(limit, (len(val) - 1) // seq_len))
    token_bytes = torch.tensor(subject.tokenizer.byte_lengths(), dtype=torch.float32)
    with subject.full_model() as model, subject.autocast(), torch.inference_mode():
        value = evaluate_bpb(model, val.tokens, seq_len, windows * seq_len, token_bytes, batch_size=8)
    return {"value": value, "n": windows, "tokens": windows * seq_len}
