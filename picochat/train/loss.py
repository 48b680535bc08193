"""Next-token cross-entropy for training, computed with its gradient in one pass.

Under autocast F.cross_entropy upcasts bf16 logits and keeps an fp32 log-softmax for backward:
over an 8192-word vocabulary and 2048 tokens, 67 MB written, read back and freed every step.
Run on bf16 logits instead, it rounds each token's loss to bf16. Here the forward pass works
through the logits a few rows at a time (each block stays in cache) in fp32, finds each row's
log-sum-exp, and overwrites the logits with d(loss)/d(logits) = (softmax - onehot) / count;
backward only scales that. Against F.cross_entropy on bf16 logits, on the 2-core CPU
(interleaved A/B on the bench/train_throughput.py shapes): steps 10-19% faster for the
nanoGPT-cpu shape, 4% for the 384-dim one in eager mode, 1-3% compiled.

The logits are consumed: after the call they hold the gradient, so read them before, never after.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100  # the target id that counts for nothing: padding, and in SFT every non-assistant token
CPU_BLOCK_ELEMENTS = 1 << 18  # logits per block on CPU: 1 MB in fp32, within a core's L2


class _CrossEntropyWithGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        N, V = logits.shape                                                    # logits (N, V), targets (N,)
        counted = targets != IGNORE
        safe_targets = torch.where(counted, targets, 0)
        weight = counted.float() / counted.sum().clamp(min=1)                 # (N,): 1/count or 0
        target_logit = logits.gather(1, safe_targets[:, None])[:, 0].float()  # (N,)
        logsumexp = torch.empty(N, device=logits.device)
        # Whole-tensor passes on accelerators, where one launch per block would cost more.
        rows = max(1, CPU_BLOCK_ELEMENTS // V) if logits.device.type == "cpu" else N
        for i in range(0, N, rows):
            block = logits[i:i + rows].float()                                # (rows, V)
            peak = block.amax(-1, keepdim=True)
            block.sub_(peak).exp_()
            total = block.sum(-1, keepdim=True)
            logsumexp[i:i + rows] = (peak + total.log())[:, 0]
            block.mul_(weight[i:i + rows, None] / total)                      # softmax / count
            block[torch.arange(len(block), device=block.device), safe_targets[i:i + rows]] -= weight[i:i + rows]
            logits[i:i + rows] = block
        ctx.save_for_backward(logits)
        return ((logsumexp - target_logit) * weight).sum()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        (grad,) = ctx.saved_tensors
        # In place, so a second backward through the same graph (retain_graph) would be wrong;
        # training never does one.
        return grad.mul_(grad_loss.to(grad.dtype)), None


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the targets that are not IGNORE, in fp32. logits (B, T, V) are
    overwritten with their gradient; targets (B, T)."""
    with torch.autocast(logits.device.type, enabled=False):
        return _CrossEntropyWithGradient.apply(logits.flatten(0, 1), targets.flatten())


def predicted_tokens_loss(model, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """token_cross_entropy of `model` on input_ids (B, T), with the output head run only where a
    target counts: in a batch of conversations most positions are the user's turns or padding,
    and the head is a small model's largest matrix product."""
    counted = targets != IGNORE
    if bool(counted.all()):
        return token_cross_entropy(model(input_ids), targets)
    return token_cross_entropy(model(input_ids, at=counted)[None], targets[counted][None])


# --- evaluation -------------------------------------------------------------------------------
def evaluate_bpb(model, tokens, seq_len: int, max_tokens: int, token_bytes: torch.Tensor, batch_size: int,
                 rank: int = 0, world: int = 1,
                 all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> float:
    """Bits per byte over the first `max_tokens` of `tokens` (a flat id array), in windows of
    `seq_len`: summed nats / ln 2 / summed UTF-8 bytes of the predicted tokens, so the number
    compares across tokenizers. token_bytes[id] is the bytes of text an id stands for (0 for
    special tokens, which are not counted). Each of `world` ranks scores every world-th window
    and `all_reduce_sum` adds the ranks' sums; pretraining's validation and the bpb eval both
    call this, so their numbers agree."""
    T, device = seq_len, next(model.parameters()).device
    n_windows = max(1, min(max_tokens, len(tokens) - 1) // T)
    starts = [i * T for i in range(n_windows) if i * T + T + 1 <= len(tokens)]
    if not starts:  # fewer tokens than one window: use what there is
        starts, T = [0], len(tokens) - 1
    mine = starts[rank::world]
    nats = torch.zeros((), device=device, dtype=torch.float64)
    nbytes = torch.zeros((), device=device, dtype=torch.float64)
    token_bytes = token_bytes.to(device)
    for i in range(0, len(mine), batch_size):
        chunk = np.stack([np.asarray(tokens[s:s + T + 1], dtype=np.int64) for s in mine[i:i + batch_size]])
        chunk = torch.from_numpy(chunk).to(device)
        logits = model(chunk[:, :-1])
        per_token = F.cross_entropy(logits.float().flatten(0, 1), chunk[:, 1:].flatten(), reduction="none")
        weight = token_bytes[chunk[:, 1:].flatten()]
        counted = weight > 0   # special tokens (<|bos|>) stand for no text: not counted
        nats += (per_token * counted).sum().double()
        nbytes += weight.sum().double()
    nats, nbytes = all_reduce_sum(nats), all_reduce_sum(nbytes)
    return (nats / math.log(2) / nbytes.clamp(min=1)).item()
