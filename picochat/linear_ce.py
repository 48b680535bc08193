"""Cross-entropy of a linear layer's output, fused: loss = CE(x @ W^T, targets).

The output layer of a language model turns N hidden states (N, D) into N x V logits, and the
plain path keeps them for backward: log-softmax forward writes (N, V), backward zero-fills an
(N, V) gradient, scatters into it and runs log-softmax backward over it again. Here the forward
pass already knows the gradient of the logits, softmax(z) - onehot(target), so it computes it
chunk by chunk while each chunk is still in cache (one fp32 softmax kernel, one bf16 copy) and
backward is just the two matrix products dX = G W and dW = G^T X.

    loss = linear_cross_entropy(hidden, lm_head.weight, targets)   # hidden (N, D), targets (N,)

Without gradients (evaluation) it only computes the loss, chunk by chunk.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 256  # 256 x 8192 fp32 probabilities = 8 MB: stays in cache between the passes


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of x (N, D) @ weight (V, D)^T against targets (N,), skipping
    ignore_index; products in x's dtype, softmax and loss in fp32."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(x, weight, targets, ignore_index)
    loss, _ = _loss_and_logit_grad(x, weight.to(x.dtype), targets, ignore_index, want_grad=False)
    return loss


def _loss_and_logit_grad(x, w, targets, ignore_index: int, want_grad: bool):
    """(mean loss, d loss / d logits as (N, V) in x's dtype or None)."""
    N, V = x.shape[0], w.shape[0]
    counted = targets != ignore_index                                   # (N,)
    n_counted = counted.sum().clamp(min=1)
    safe_targets = torch.where(counted, targets, 0)
    grad = torch.empty((N, V), dtype=x.dtype, device=x.device) if want_grad else None
    total = torch.zeros((), dtype=torch.float32, device=x.device)
    for start in range(0, N, CHUNK_ROWS):
        rows = slice(start, min(start + CHUNK_ROWS, N))
        probs = torch.softmax(x[rows] @ w.T, dim=-1, dtype=torch.float32)  # (c, V)
        picked = probs.gather(1, safe_targets[rows, None]).squeeze(1)       # (c,)
        total += -(picked.clamp(min=torch.finfo(torch.float32).tiny).log() * counted[rows]).sum()
        if want_grad:
            probs.scatter_add_(1, safe_targets[rows, None], torch.full_like(picked[:, None], -1.0))
            probs.mul_(counted[rows, None])
            grad[rows] = probs
    mean = total / n_counted
    if want_grad:
        return mean, (grad, n_counted)
    return mean, None


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, targets, ignore_index):
        w = weight.to(x.dtype)
        loss, (grad_logits, n_counted) = _loss_and_logit_grad(x, w, targets, ignore_index, want_grad=True)
        ctx.save_for_backward(grad_logits, x, w, n_counted)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_logits, x, w, n_counted = ctx.saved_tensors                  # (N, V), (N, D), (V, D)
        scale = grad_loss.float() / n_counted   # the mean's 1/N, applied to the small results
        grad_x = (grad_logits @ w).mul_(scale) if ctx.needs_input_grad[0] else None
        grad_w = (grad_logits.T @ x).to(ctx.weight_dtype).mul_(scale) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None
