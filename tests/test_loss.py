"""token_cross_entropy: the loss and its gradient against F.cross_entropy."""

import pytest
import torch
import torch.nn.functional as F

from picochat.train import loss as loss_module
from picochat.train.loss import IGNORE, token_cross_entropy


def reference(x, head, targets):
    logits = head(x)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


def setup(seed=0, B=3, T=7, D=16, V=37):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g)
    head = torch.nn.Linear(D, V, bias=False)
    torch.nn.init.normal_(head.weight, std=1.0, generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[0, :3] = IGNORE
    targets[2, -1] = IGNORE
    return x, head, targets


@pytest.mark.parametrize("block_elements", [1 << 18, 2 * 37, 37])  # one block, 2 rows, 1 row
def test_loss_and_gradients_match_cross_entropy(monkeypatch, block_elements):
    monkeypatch.setattr(loss_module, "CPU_BLOCK_ELEMENTS", block_elements)
    x, head, targets = setup()
    expected = reference(x, head, targets)
    (0.5 * expected).backward()               # a scaled loss, as with gradient accumulation
    expected_grad = head.weight.grad.clone()
    head.weight.grad = None

    got = token_cross_entropy(head(x), targets)
    (0.5 * got).backward()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(head.weight.grad, expected_grad, atol=1e-6, rtol=1e-5)


def test_bf16_logits_give_an_fp32_loss_close_to_the_fp32_one():
    x, head, targets = setup(seed=1)
    expected = reference(x, head, targets)
    expected.backward()
    expected_grad = head.weight.grad.clone()
    head.weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = token_cross_entropy(head(x), targets)
    got.backward()
    assert got.dtype == torch.float32
    assert abs(got.item() - expected.item()) < 0.02 * expected.item()   # bf16 logits, fp32 sums
    cosine = F.cosine_similarity(head.weight.grad.flatten(), expected_grad.flatten(), dim=0)
    assert cosine > 0.999


def test_all_targets_ignored_gives_zero_loss_and_gradient():
    x, head, targets = setup()
    got = token_cross_entropy(head(x), torch.full_like(targets, IGNORE))
    got.backward()
    assert got.item() == 0.0
    assert torch.count_nonzero(head.weight.grad) == 0


def test_head_only_at_targets_gives_the_full_heads_loss_and_gradients():
    from picochat.model import Llama, ModelConfig
    from picochat.train.loss import predicted_tokens_loss

    torch.manual_seed(0)
    model = Llama(ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=50, max_seq_len=16))
    ids = torch.randint(0, 50, (3, 12))
    targets = torch.randint(0, 50, (3, 12))
    targets[0, :5] = IGNORE                  # a user turn
    targets[1, 7:] = IGNORE                  # padding
    targets[2, :] = IGNORE                   # a row with nothing to predict
    expected = token_cross_entropy(model(ids), targets)
    expected.backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    got = predicted_tokens_loss(model, ids, targets)
    got.backward()
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected_grads[name], atol=1e-6, rtol=1e-5, msg=name)
    assert model(ids, at=targets != IGNORE).shape == (int((targets != IGNORE).sum()), 50)


def test_token_logprobs_at_the_answer_match_the_full_ones_with_their_gradients():
    from picochat.model import Llama, ModelConfig
    from picochat.train.preference import answer_logprobs, token_logprobs

    torch.manual_seed(1)
    model = Llama(ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=50, max_seq_len=16))
    ids = torch.randint(0, 50, (3, 12))
    answer = torch.zeros(3, 12)
    answer[0, 6:10], answer[1, 3:], answer[2, 11] = 1, 1, 1        # a prompt, then the answer's tokens
    full = token_logprobs(model, ids)
    expected = (full * answer).sum(-1)
    expected.sum().backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    got = answer_logprobs(model, ids, answer)
    got.sum().backward()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected_grads[name], atol=1e-6, rtol=1e-5, msg=name)
    at = token_logprobs(model, ids, at=answer)
    assert torch.equal(at == 0, answer == 0)                        # the rest are left at 0
    torch.testing.assert_close(at[answer.bool()], full[answer.bool()].detach(), atol=1e-5, rtol=1e-5)
