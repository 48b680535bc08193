"""The old recipe against the new, side by side on the same data and compute.

    python bench/recipe.py --new runs/demo --old runs/old-recipe [--old-commit 0caa3a2] [--preset cpu-tiny]

Old: the chain as picochat had it before the small-models work (digits grouped in threes,
pretraining then SFT, no copying or "I don't know" data), run from that commit's code. New: this
checkout's chain (single digits, Muon, mid-training, wordings built from parts, the factuality
labels). Both train the same model shape on the same clean documents, each with its own
recipe; the table's first line gives each chain's training rows (sequences times steps, over
its stages), so a difference in compute is in plain sight.
When `--old` does not hold a finished run, it is made: a worktree of `--old-commit`, the new
run's clean documents copied in, and that commit's `picochat speedrun` (tens of minutes).

Both chat models are then scored by this checkout's evals (held-out splits, greedy): validation
bits per byte of the base model, the calculator called with exactly the user's operands, the
answer stating the product, identity, "I don't know" to the unknowable, copying, how often it
abstained on what it can answer, and the factuality probe's answer-rate curve. Each rate with
its Wilson 95% interval.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.identity_check import wilson
from picochat.evals import run_evals
from picochat.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
SKILLS = "identity,calculator,copying,unknowable,factuality"


def make_old_run(new: RunDir, old: Path, commit: str, preset: str) -> None:
    worktree = Path(f"/tmp/picochat-old-{commit}")
    if not worktree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-f", str(worktree), commit], check=True)
    if not (old / "data" / "clean").exists():
        (old / "data").mkdir(parents=True, exist_ok=True)
        shutil.copytree(new.clean, old / "data" / "clean")
        meta = new.read_meta()                                      # its data stage: done, same documents
        meta["stages"] = {"data": meta["stages"]["data"]}
        (old / "run.json").write_text(json.dumps(meta))
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    subprocess.run([sys.executable, "-m", "picochat.cli", "speedrun", "--run", str(old.resolve()), "--preset", preset],
                   cwd=worktree, env=env, check=True)


def scores(run: RunDir) -> dict:
    results = run_evals(run, "sft", tasks=SKILLS)["tasks"]
    stages = run.read_meta()["stages"]
    return {"val_bpb": stages["base"]["metrics"].get("val_bpb"), "rows": training_rows(stages), **results}


def training_rows(stages: dict) -> int:
    """Sequences trained on, over the stages (each stage's steps times its batch rows)."""
    total = 0
    for name in ("base", "mid", "sft"):
        entry = stages.get(name) or {}
        cfg = entry.get("train") or {}
        total += (entry.get("steps") or 0) * (cfg.get("batch_size") or 0) * (cfg.get("grad_accum") or 1)
    return total


def rate(task: dict, key: str | None = None) -> str:
    n = task.get("n") or 0
    value = task.get(key) if key else task.get("value")
    if not isinstance(value, (int, float)) or not n:
        return "-"
    lo, hi = wilson(value * n, n)
    return f"{100 * value:5.1f}% [{100 * lo:4.1f}, {100 * hi:5.1f}]"


def curve_point(point: dict) -> str:
    accuracy = point["answered_accuracy"]
    return f"{100 * point['answer_rate']:.0f}% answered, " + ("-" if accuracy is None else f"{100 * accuracy:.0f}% right")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new", default="runs/demo")
    p.add_argument("--old", default="runs/old-recipe")
    p.add_argument("--old-commit", default="0caa3a2", help="the commit whose chain is the old recipe")
    p.add_argument("--preset", default="cpu-tiny")
    args = p.parse_args(argv)

    new = RunDir(args.new, create=False)
    old_path = Path(args.old)
    if not (old_path / "sft" / "config.json").exists():
        make_old_run(new, old_path, args.old_commit, args.preset)
    old = RunDir(old_path, create=False)
    table = {"old": scores(old), "new": scores(new)}
    rows = [("training rows (sequences x steps)", lambda s: f"{s['rows']:,}"),
            ("validation bits per byte (base)", lambda s: f"{s['val_bpb']:.4f}"),
            ("calculator called with the user's operands", lambda s: rate(s["calculator"], "operands_copied")),
            ("answer states the product", lambda s: rate(s["calculator"])),
            ("identity (held-out paraphrases)", lambda s: rate(s["identity"])),
            ("unknowable: says I don't know", lambda s: rate(s["unknowable"])),
            ("copying from the context", lambda s: rate(s["copying"])),
            ("abstained on answerable (identity)", lambda s: rate(s["identity"], "abstained")),
            ("abstained on answerable (calculator)", lambda s: rate(s["calculator"], "abstained")),
            ("factuality: right (held-out words)", lambda s: rate(s["factuality"])),
            ("factuality: abstained", lambda s: rate(s["factuality"], "abstained"))]
    print(f"\n{args.preset}: old recipe ({old.path}) vs new ({new.path}); chat models, held-out splits, greedy")
    print(f"{'':44s} {'old':>24s} {'new':>24s}")
    for title, cell in rows:
        print(f"{title:44s} {cell(table['old']):>24s} {cell(table['new']):>24s}")
    for name in ("old", "new"):
        curve = table[name]["factuality"].get("curve") or []
        print(f"factuality trade-off, {name}: " + (", ".join(map(curve_point, curve)) or "-"))
    print(json.dumps({k: {t: v.get("value") if isinstance(v, dict) else v for t, v in s.items()}
                      for k, s in table.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
