"""How fast could a training step be on this CPU? The matrix products alone, against whole steps.

For the 384-dim shape of bench/train_throughput.py (6 layers, 6 heads, 384 dim, context 256,
batch 8, vocabulary 8192) it times, one by one, every matrix product a training step needs: for
each linear layer the forward product and the two backward ones (input and weight gradients),
and attention's six batched products per layer. picochat's run in bf16, the baseline's
(bench/nanogpt_baseline.py) in fp32. Then it times whole steps of both, interleaved, and prints
the share of each step that is matrix products, and the best ratio picochat could reach over
the baseline if everything else in its step (norms, rotary, softmax, loss, optimizer) were free.

    python bench/train_roofline.py [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from nanogpt_baseline import make_step
from train_throughput import SHAPES, VOCAB, picochat_step, time_interleaved

SHAPE = SHAPES["384d (6L 6H 384d T256 B8)"]


def median_seconds(fn, reps: int = 15) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_products(model: torch.nn.Module) -> Counter:
    """(layout, (batch, m, k, n)) -> how many times one training step runs that product."""
    B, T, H, D = SHAPE["batch_size"], SHAPE["seq_len"], SHAPE["n_heads"], SHAPE["dim"]
    products = Counter()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            out_features, in_features = module.weight.shape
            products[("A @ B^T", (1, B * T, in_features, out_features))] += 1   # forward: x W^T
            products[("A @ B", (1, B * T, out_features, in_features))] += 1     # input grad: dY W
            products[("A^T @ B", (1, out_features, B * T, in_features))] += 1   # weight grad: dY^T X
    Dh = D // H
    per_layer = {("A @ B^T", (B * H, T, Dh, T)): 2,    # Q K^T; backward dP = dY V^T
                 ("A @ B", (B * H, T, T, Dh)): 2,      # P V; backward dQ = dS K
                 ("A^T @ B", (B * H, T, T, Dh)): 2}    # backward dV = P^T dY, dK = dS^T Q
    for key, count in per_layer.items():
        products[key] += count * SHAPE["n_layers"]
    return products


def product_seconds(layout: str, batch: int, m: int, k: int, n: int, dtype: torch.dtype) -> float:
    """Seconds for a (batch of) (m, k) x (k, n) product with its operands laid out as named."""
    a = torch.randn(batch, k, m, dtype=dtype).transpose(1, 2) if layout == "A^T @ B" else \
        torch.randn(batch, m, k, dtype=dtype)
    b = torch.randn(batch, n, k, dtype=dtype).transpose(1, 2) if layout == "A @ B^T" else \
        torch.randn(batch, k, n, dtype=dtype)
    if batch == 1:
        a, b = a[0], b[0]
    return median_seconds(lambda: a @ b)


def products_alone(model: torch.nn.Module, dtype: torch.dtype) -> tuple[float, float]:
    """(seconds, FLOPs) of all of one step's matrix products, each timed on its own."""
    seconds = flops = 0.0
    for (layout, (batch, m, k, n)), count in step_products(model).items():
        seconds += count * product_seconds(layout, batch, m, k, n, dtype)
        flops += count * 2 * batch * m * k * n
    return seconds, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    baseline, base_model = make_step(VOCAB, **SHAPE)
    ours, model = picochat_step(SHAPE, "bf16", True)
    ours_mm, ours_flops = products_alone(model, torch.bfloat16)
    base_mm, base_flops = products_alone(base_model, torch.float32)
    steps = time_interleaved({"baseline": baseline, "picochat": ours}, args.steps, warmup=3)
    base_step, our_step = steps["baseline"], steps["picochat"]
    tokens = SHAPE["batch_size"] * SHAPE["seq_len"]
    print(f"384d shape, {tokens} tokens/step, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"{'':44s} {'step':>9s} {'products alone':>15s} {'share':>6s} {'product rate':>13s}")
    for name, step, alone, flops in (("baseline fp32 eager (nanoGPT-style)", base_step, base_mm, base_flops),
                                     ("picochat bf16 + compile", our_step, ours_mm, ours_flops)):
        print(f"{name:44s} {1e3 * step:7.0f}ms {1e3 * alone:13.0f}ms {100 * alone / step:5.0f}% "
              f"{flops / alone / 1e9:7.0f} GFLOP/s")
    print(f"\npicochat / baseline now:                      {base_step / our_step:5.2f}x")
    print(f"best possible (picochat's products alone):    {base_step / ours_mm:5.2f}x")
    need = base_step / 2.5
    print(f"2.5x needs a step of {1e3 * need:.0f} ms: {1e3 * (need - ours_mm):.0f} ms for everything that is not "
          f"a matrix product, now {1e3 * (our_step - ours_mm):.0f} ms")


if __name__ == "__main__":
    main()
