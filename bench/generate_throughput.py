"""Decoding throughput: picochat's engine against Hugging Face transformers `generate`.

    python bench/generate_throughput.py [--threads N] [--new-tokens 128] [--reps 3]

A 6-layer / 384-dim / vocab-8192 Llama (random init: speed does not depend on the values),
saved with `save_pretrained` and loaded by `transformers.AutoModelForCausalLM`, so both run the
same weights in the same process. Greedy decoding of a 16-token prompt; decode tokens/s is
timed after the first token (prefill excluded) for picochat, and as (t[N new] - t[1 new]) for
transformers. Each configuration runs `--reps` times, interleaved, and its best run is kept
(the machine is shared; the best run is the least disturbed).

The memory-bandwidth bound: a decoding step must read every weight matrix once (the batch
shares it) and the keys/values so far; measured read bandwidth / those bytes = the most
tokens/s any implementation could reach from main memory. (This model's bf16 weights, 27 MB,
nearly fit in a 32 MB L3 cache, so a step can beat a DRAM bound.)

picochat runs three weight formats through the same FastLlama step: fp32 (exact: greedy
tokens equal transformers'), bf16, and int8 (weight-only, one scale per output row, bf16
activations, torch's `_weight_int8pack_mm` decode kernel: a quarter of fp32's bytes).

Baseline named in issue 4: transformers, fp32, batch 1 (129 tok/s measured on this CPU; for
scale llama.cpp 284 tok/s fp32, 497 tok/s bf16). Not a test: prints figures and ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from picochat.engine import FastLlama, SamplingParams, generate
from picochat.model import Llama, ModelConfig, save_pretrained

PROMPT = 16


class Clock:
    """Wall-clock and this process's CPU time. On a shared machine the CPU-time rate is the
    fairer figure (time other processes hold the cores is not counted against either engine);
    with one thread it is the time the decoding actually ran."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def elapsed(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def ours_rate(net: FastLlama, batch: int, new: int) -> tuple[float, float]:
    prompts = [[(7 * b + i) % 8000 + 10 for i in range(PROMPT)] for b in range(batch)]
    steps = generate(net, prompts, SamplingParams(temperature=0, max_tokens=new))
    next(steps)                                     # prefill + first token
    clock, n = Clock(), 0
    for _ in steps:
        n += 1
    wall, cpu = clock.elapsed()
    return n * batch / wall, n * batch / cpu


def hf_rate(hf, batch: int, new: int) -> tuple[float, float]:
    ids = torch.tensor([[(7 * b + i) % 8000 + 10 for i in range(PROMPT)] for b in range(batch)])
    kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0, eos_token_id=None)

    def timed(n):
        clock = Clock()
        with torch.inference_mode():
            out = hf.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
        assert out.shape[1] == PROMPT + n
        return clock.elapsed()

    (w1, c1), (wn, cn) = timed(1), timed(new)
    return (new - 1) * batch / (wn - w1), (new - 1) * batch / (cn - c1)


def read_bandwidth(seconds: float = 1.0) -> float:
    """Bytes/s of reading a 512 MB buffer (8x the L3 of most machines), best of a few passes."""
    buf = torch.ones(128 * 1024 * 1024, dtype=torch.float32)
    best = 0.0
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or best == 0:
        start = time.perf_counter()
        buf.sum()
        best = max(best, buf.numel() * 4 / (time.perf_counter() - start))
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16, help="the batched configuration")
    ap.add_argument("--no-hf", action="store_true", help="skip transformers")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = ModelConfig(vocab_size=8192, dim=384, n_layers=6, n_heads=6, n_kv_heads=6, max_seq_len=256)
    model = Llama(config)
    model.init_weights(seed=0)
    model.eval()
    nets = {"fp32": FastLlama(model, torch.float32), "bf16": FastLlama(model, torch.bfloat16),
            "int8": FastLlama(model, "int8")}
    hf = {}
    if not args.no_hf:
        import transformers

        transformers.logging.set_verbosity_error()
        with tempfile.TemporaryDirectory() as tmp:
            save_pretrained(model, Path(tmp))
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                hf[name] = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=dtype).eval()
        # same weights -> same greedy tokens (fp32)
        prompt = [list(range(10, 10 + PROMPT))]
        ours = [t for (t,) in generate(nets["fp32"], prompt, SamplingParams(temperature=0, max_tokens=16))]
        with torch.inference_mode():
            theirs = hf["fp32"].generate(torch.tensor(prompt), max_new_tokens=16, do_sample=False,
                                         pad_token_id=0, eos_token_id=None)[0, PROMPT:].tolist()
        print(f"greedy tokens identical to transformers (fp32): {ours == theirs}")

    B, N = args.batch, args.new_tokens
    runs = {("picochat", dt, b): (lambda dt=dt, b=b: ours_rate(nets[dt], b, N))
            for dt in nets for b in (1, B)}
    for dt, m in hf.items():
        for b in (1, B):
            runs[("transformers", dt, b)] = lambda m=m, b=b: hf_rate(m, b, N)
    for key, fn in runs.items():   # warm up (allocator, oneDNN primitive caches)
        if key[2] == 1:
            fn()
    best = {k: (0.0, 0.0) for k in runs}
    for rep in range(args.reps):
        for key, fn in runs.items():
            wall, cpu = fn()
            best[key] = (max(best[key][0], wall), max(best[key][1], cpu))
    bandwidth = read_bandwidth()

    print(f"\nmodel: {config.n_layers} layers x {config.dim} dim, vocab {config.vocab_size}, "
          f"{model.num_params() / 1e6:.1f} M parameters; prompt {PROMPT}, {N} new tokens, greedy; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.reps}")
    print(f"{'engine':14s}{'dtype':>6s}{'batch':>7s}{'tok/s wall':>12s}{'tok/s cpu':>11s}")
    for (engine, dt, b), (wall, cpu) in best.items():
        print(f"{engine:14s}{dt:>6s}{b:>7d}{wall:>12.0f}{cpu:>11.0f}")

    avg_len = PROMPT + N / 2
    kv = 2 * config.n_layers * config.n_kv_heads * config.head_dim * avg_len * 4   # fp32 cache, per row
    print(f"\nmeasured read bandwidth: {bandwidth / 1e9:.1f} GB/s")
    for dt in nets:
        w = nets[dt].weight_bytes_per_token()
        for b in (1, B):
            per_token = w / b + kv
            bound = bandwidth / per_token
            print(f"bound {dt} batch {b:2d}: {w / 1e6:.1f} MB weights / {b} + {kv / 1e6:.2f} MB KV "
                  f"= {per_token / 1e6:.2f} MB per token -> {bound:,.0f} tok/s; picochat reaches "
                  f"{best[('picochat', dt, b)][0] / bound:.0%} (wall)")

    if hf:
        for clock, c in (("wall-clock", 0), ("CPU-time", 1)):
            base = best[("transformers", "fp32", 1)][c]
            print(f"\n[{clock}] baseline: transformers fp32 batch 1 = {base:.0f} tok/s")
            for dt in nets:
                ref = dt if dt in hf else "bf16"   # int8 weights compute in bf16
                r = best[("picochat", dt, 1)][c]
                print(f"picochat {dt} batch 1: {r:.0f} tok/s = {r / base:.2f}x the baseline; "
                      f"{r / best[('transformers', ref, 1)][c]:.2f}x transformers {ref}")
                r = best[("picochat", dt, B)][c]
                print(f"picochat {dt} batch {B}: {r:.0f} tok/s aggregate = "
                      f"{r / best[('transformers', 'fp32', B)][c]:.2f}x transformers fp32, "
                      f"{r / best[('transformers', ref, B)][c]:.2f}x transformers {ref} (batch {B})")
    print("for scale (issue 4, same CPU): llama.cpp 284 tok/s fp32, 497 tok/s bf16 at batch 1")


if __name__ == "__main__":
    main()
