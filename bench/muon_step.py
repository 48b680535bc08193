"""One Muon optimizer step on a preset's model: torch.optim.Muon (the baseline: Newton-Schulz in
bf16) against picochat's Muon with the iterations in fp32 and in bf16, beside one forward and
backward pass for scale. Where the CPU has no native bf16 (no AMX, no AVX-512 BF16), bf16 matrix
products are emulated and the baseline's step costs more than the passes it follows.

    python bench/muon_step.py [--preset cpu-tiny] [--repeats 5]

Prints the median seconds of each and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from picochat.config import get_preset  # noqa: E402
from picochat.model import Llama  # noqa: E402
from picochat.train.optim import Muon, is_vocabulary  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    preset = get_preset(args.preset)
    model = Llama(preset.model)
    model.init_weights(0)
    ids = torch.randint(0, preset.model.vocab_size, (preset.train.batch_size, preset.train.seq_len))

    def passes():
        model.zero_grad()
        F.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()

    passes()
    hidden = [p for n, p in model.named_parameters() if p.dim() == 2 and not is_vocabulary(n)]
    arms = {"torch.optim.Muon (bf16)": torch.optim.Muon(hidden, lr=1e-3, adjust_lr_fn="match_rms_adamw"),
            "picochat Muon fp32": Muon(hidden, ns_dtype=torch.float32, lr=1e-3, adjust_lr_fn="match_rms_adamw"),
            "picochat Muon bf16": Muon(hidden, ns_dtype=torch.bfloat16, lr=1e-3, adjust_lr_fn="match_rms_adamw")}
    results = {name: median_seconds(opt.step, args.repeats) for name, opt in arms.items()}
    base = results["torch.optim.Muon (bf16)"]
    print(f"{args.preset}: {len(hidden)} matrices; forward + backward {median_seconds(passes, args.repeats):.3f} s")
    for name, seconds in results.items():
        print(f"{name:26s} {seconds:8.3f} s/step   {base / seconds:6.2f}x the baseline's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
