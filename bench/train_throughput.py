"""Training throughput: picochat's trainer against a plain fp32 eager nanoGPT-style loop.

For two shapes (nanoGPT's CPU config: 4 layers, 4 heads, 128 dim, context 64, batch 12; and
6 layers, 6 heads, 384 dim, context 256, batch 8; vocabulary 8192 for both) it times training
steps of the baseline (bench/nanogpt_baseline.py) and of picochat's Trainer (its real
_train_step: autocast, fused AdamW, clipping), interleaved so machine noise hits both alike,
and prints tokens/s, MFU against the fp32 and bf16 matmul peaks measured in the same run, and
the ratio picochat / baseline.

    python bench/train_throughput.py [--steps 12] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from picochat.config import TrainConfig
from picochat.hardware import measure_matmul_flops
from picochat.model import Llama, ModelConfig
from picochat.train.trainer import Trainer

from nanogpt_baseline import make_step

SHAPES = {
    "nanoGPT-cpu (4L 4H 128d T64 B12)": dict(n_layers=4, n_heads=4, dim=128, seq_len=64, batch_size=12),
    "384d (6L 6H 384d T256 B8)": dict(n_layers=6, n_heads=6, dim=384, seq_len=256, batch_size=8),
}
VOCAB = 8192


class RandomTokens:
    """A fixed random batch: the benchmark measures compute, not data loading."""

    def __init__(self, seq_len: int, batch_size: int):
        self.tokens_per_row = seq_len
        self.data = torch.randint(0, VOCAB, (batch_size, seq_len + 1), generator=torch.Generator().manual_seed(0))

    def batch(self, step, micro, rank, world):
        return {"input_ids": self.data[:, :-1], "targets": self.data[:, 1:]}

    def loss(self, model, batch):
        from picochat.train.pretrain import NextTokenObjective

        return NextTokenObjective.loss(self, model, batch)

    def evaluate(self, model, rank, world):
        return {}


def picochat_step(shape: dict, dtype: str, compile: bool):
    cfg = ModelConfig(vocab_size=VOCAB, dim=shape["dim"], n_layers=shape["n_layers"],
                      n_heads=shape["n_heads"], n_kv_heads=shape["n_heads"], max_seq_len=shape["seq_len"])
    torch.manual_seed(0)
    model = Llama(cfg)
    model.init_weights(0)
    train_cfg = TrainConfig(batch_size=shape["batch_size"], seq_len=shape["seq_len"], dtype=dtype,
                            compile=compile, device="cpu")
    trainer = Trainer(model, RandomTokens(shape["seq_len"], shape["batch_size"]), train_cfg,
                      checkpoint_dir="/dev/null", metrics_path="/dev/null", progress=False)
    return trainer._train_step, model


def time_interleaved(steps: dict, n: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each closure, run round-robin."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in steps}
    for _ in range(n):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--compile", action="store_true", help="also time picochat with torch.compile")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    peaks = {"fp32": measure_matmul_flops(cpu, torch.float32, seconds=2),
             "bf16": measure_matmul_flops(cpu, torch.bfloat16, seconds=2)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; measured matmul peak: "
          f"fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    for label, shape in SHAPES.items():
        tokens = shape["seq_len"] * shape["batch_size"]
        baseline, base_model = make_step(VOCAB, **shape)
        ours_fp32, _ = picochat_step(shape, "fp32", False)
        ours_bf16, model = picochat_step(shape, "bf16", False)
        steps = {"baseline fp32 eager (nanoGPT-style)": baseline, "picochat fp32": ours_fp32,
                 "picochat bf16 autocast": ours_bf16}
        if args.compile:
            steps["picochat bf16 + compile"] = picochat_step(shape, "bf16", True)[0]
        medians = time_interleaved(steps, args.steps, warmup=3)
        print(f"\n{label}: {tokens} tokens/step")
        base_tps = tokens / medians["baseline fp32 eager (nanoGPT-style)"]
        for name, seconds in medians.items():
            tps = tokens / seconds
            flops = (base_model if name.startswith("baseline") else model).flops_per_token(shape["seq_len"])
            peak = peaks["bf16" if "bf16" in name else "fp32"]
            print(f"  {name:38s} {tps:9,.0f} tok/s  MFU {100 * flops * tps / peak:5.1f}% of "
                  f"{'bf16' if 'bf16' in name else 'fp32'} peak  {tps / base_tps:5.2f}x baseline")


if __name__ == "__main__":
    main()
