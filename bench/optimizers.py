"""AdamW against Muon at equal compute: same model, data, initial weights, batch and steps.

    python bench/optimizers.py --run runs/demo [--preset cpu-tiny] [--steps 150] [--lr 4e-3] [--muon-lr 4e-3,8e-3]

Each arm pretrains the preset's model from the same seed on the run's token shards, in a scratch
run folder of its own (tokenizer and shards linked, not copied), with the cosine schedule over
the bench's steps, and reports validation bits per byte at the end. Muon's extra work (five
Newton-Schulz iterations per matrix per step) is small beside the forward and backward passes;
the seconds per step show it. Prints each arm's val_bpb and its ratio to AdamW's (the
baseline: the recipe picochat had before). Needs a run with token shards (`picochat data tokenize`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picochat.config import get_preset
from picochat.rundir import RunDir
from picochat.train.pretrain import pretrain


def scratch_run(source: RunDir, folder: Path) -> RunDir:
    """A run folder that reads `source`'s tokenizer and shards."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"stages": {}}))
    run = RunDir(folder, create=False)
    run.tokenizer.parent.mkdir(parents=True, exist_ok=True)
    run.tokenizer.symlink_to(source.tokenizer.resolve(), target_is_directory=True)
    run.tokens.parent.mkdir(parents=True, exist_ok=True)
    run.tokens.symlink_to(source.tokens.resolve(), target_is_directory=True)
    return run


def arm(source: RunDir, scratch: Path, preset: str, steps: int, optimizer: str, lr: float) -> dict:
    run = scratch_run(source, scratch / f"{optimizer}-{lr:g}")
    started = time.perf_counter()
    metrics = pretrain(run, get_preset(preset), max_steps=steps, progress=False, optimizer=optimizer, lr=lr,
                       eval_every=0, ckpt_every=0, warmup_steps=max(1, steps // 15))
    seconds = time.perf_counter() - started
    return {"optimizer": optimizer, "lr": lr, "val_bpb": metrics["val_bpb"], "s_per_step": seconds / steps}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=None, help="AdamW's peak learning rate (default: the preset's)")
    p.add_argument("--muon-lr", default=None, help="Muon's peak learning rates, comma-separated (default: AdamW's)")
    args = p.parse_args(argv)

    source = RunDir(args.run, create=False)
    lr = args.lr or get_preset(args.preset).train.lr
    muon_lrs = [float(x) for x in args.muon_lr.split(",")] if args.muon_lr else [lr]
    with tempfile.TemporaryDirectory(prefix="picochat-optim-") as tmp:
        rows = [arm(source, Path(tmp), args.preset, args.steps, "adamw", lr)]
        rows += [arm(source, Path(tmp), args.preset, args.steps, "muon", m) for m in muon_lrs]
    base = rows[0]["val_bpb"]
    print(f"\n{args.preset}, {args.steps} steps each, same data and initial weights (baseline: AdamW)")
    print(f"{'optimizer':10s} {'peak lr':>8s} {'val_bpb':>8s} {'vs AdamW':>9s} {'s/step':>7s}")
    for r in rows:
        print(f"{r['optimizer']:10s} {r['lr']:8.2g} {r['val_bpb']:8.4f} {r['val_bpb'] / base:9.3f} {r['s_per_step']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
