"""The fused output layer + cross-entropy gives the plain path's loss and gradients."""

import pytest
import torch
import torch.nn.functional as F

from picochat.linear_ce import CHUNK_ROWS, linear_cross_entropy


@pytest.mark.parametrize("ignored_every", [0, 3])
def test_matches_plain_cross_entropy_fp32(ignored_every):
    torch.manual_seed(0)
    n = 2 * CHUNK_ROWS + 37                       # more than one chunk, last one partial
    x = torch.randn(n, 48, requires_grad=True)
    w = torch.randn(300, 48, requires_grad=True)
    targets = torch.randint(0, 300, (n,))
    if ignored_every:
        targets[::ignored_every] = -100
    fused = linear_cross_entropy(x, w, targets)
    fused.backward()
    fused_grads = x.grad.clone(), w.grad.clone()
    x.grad, w.grad = None, None
    plain = F.cross_entropy(x @ w.T, targets, ignore_index=-100)
    plain.backward()
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fused_grads[0], x.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fused_grads[1], w.grad, rtol=1e-5, atol=1e-7)


def test_no_grad_path_and_all_ignored():
    torch.manual_seed(1)
    x, w = torch.randn(10, 8), torch.randn(20, 8)
    targets = torch.randint(0, 20, (10,))
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(x, w, targets), F.cross_entropy(x @ w.T, targets))
        assert linear_cross_entropy(x, w, torch.full((10,), -100)).item() == 0.0


def test_bf16_inputs_keep_fp32_weight_gradient():
    torch.manual_seed(2)
    x = torch.randn(64, 16, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)   # fp32 master weight, as under autocast
    targets = torch.randint(0, 50, (64,))
    linear_cross_entropy(x, w, targets).backward()
    assert x.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    plain_w = w.detach().clone().requires_grad_()
    F.cross_entropy(x.detach().float() @ plain_w.T, targets).backward()
    torch.testing.assert_close(w.grad, plain_w.grad, rtol=0.05, atol=2e-3)
