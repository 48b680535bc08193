"""The one trainer: exact resume, DDP equivalence, schedules, checkpoints."""

import json
import os
import subprocess
import sys

import pytest
import torch

from picochat.cli import main
from picochat.config import TrainConfig
from picochat.train import pretrain as pretrain_module
from picochat.train.trainer import lr_at

MICRO = ["--preset", "micro", "--dtype", "fp32", "--set", "log_every=1"]


def losses(run) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics" / "pretrain.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def evals(run) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics" / "pretrain.jsonl").read_text().splitlines()]
    return [r for r in records if "val_bpb" in r]


def test_resume_after_a_crash_continues_exactly(prepared_run, tmp_path, monkeypatch):
    import shutil

    steady, crashed = tmp_path / "steady", tmp_path / "crashed"
    shutil.copytree(prepared_run, steady)
    shutil.copytree(prepared_run, crashed)
    args = MICRO + ["--max-steps", "12", "--set", "ckpt_every=4", "--set", "eval_every=6"]
    assert main(["pretrain", "--run", str(steady), *args]) == 0

    # Crash the second run in the middle of step 7: after the checkpoint at step 4 and an eval.
    original = pretrain_module.NextTokenObjective.batch

    def crash_at_step_7(self, step, micro, rank, world, model=None):
        if step == 6:
            raise RuntimeError("simulated crash")
        return original(self, step, micro, rank, world, model)

    monkeypatch.setattr(pretrain_module.NextTokenObjective, "batch", crash_at_step_7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["pretrain", "--run", str(crashed), *args])
    assert not (crashed / "base" / "config.json").exists()
    assert sorted(p.name for p in (crashed / "base" / "checkpoints").iterdir()) == ["step_000004"]
    monkeypatch.setattr(pretrain_module.NextTokenObjective, "batch", original)

    assert main(["pretrain", "--run", str(crashed), *args, "--resume"]) == 0
    assert losses(crashed) == losses(steady)          # every step's loss, bit for bit
    assert evals(crashed)[-1]["val_bpb"] == evals(steady)[-1]["val_bpb"]
    assert [e["step"] for e in evals(crashed)] == [e["step"] for e in evals(steady)] == [6, 12]


def test_checkpoints_keep_the_last_k(fresh_run):
    args = MICRO + ["--max-steps", "10", "--set", "ckpt_every=2", "--set", "keep_checkpoints=2"]
    assert main(["pretrain", "--run", str(fresh_run), *args]) == 0
    names = sorted(p.name for p in (fresh_run / "base" / "checkpoints").iterdir())
    assert names == ["step_000008", "step_000010"]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (fresh_run / "base" / f).exists()


def torchrun_available() -> bool:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--help"],
                          capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not torchrun_available(), reason="torch.distributed.run unavailable")
def test_torchrun_two_processes_with_accumulation_match_one_with_the_same_global_batch(prepared_run, tmp_path):
    import shutil

    single, ddp = tmp_path / "single", tmp_path / "ddp"
    shutil.copytree(prepared_run, single)
    shutil.copytree(prepared_run, ddp)
    # --device cpu: two processes on a one-GPU machine must not both ask for a GPU of their own
    common = MICRO + ["--max-steps", "10", "--device", "cpu", "--set", "eval_every=0", "--set", "ckpt_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "picochat.cli", "pretrain"]
    subprocess.run([*cmd, "--run", str(single), *common, "--set", "batch_size=4"],
                   check=True, env=env, capture_output=True, timeout=300)
    # 2 processes x 2 micro-batches of 1: gradient accumulation under DDP (no_sync on the first)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "picochat.cli", "--", "pretrain", "--run", str(ddp),
                          *common, "--set", "batch_size=1", "--set", "grad_accum=2"], check=False, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 process(es)" in out.stdout
    a, b = losses(single), losses(ddp)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    assert abs(a[10] - b[10]) < 1e-4, (a[10], b[10])
    assert a[10] < a[1]  # it learned something


def test_schedules():
    cosine = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_frac=0.1)
    assert lr_at(0, cosine) == pytest.approx(0.1) and lr_at(9, cosine) == pytest.approx(1.0)
    assert lr_at(55, cosine) == pytest.approx(0.55) and lr_at(100, cosine) == pytest.approx(0.1)
    wsd = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_frac=0.0, schedule="wsd", decay_frac=0.2)
    assert lr_at(50, wsd) == 1.0 and lr_at(79, wsd) == 1.0
    assert lr_at(90, wsd) == pytest.approx(0.5) and lr_at(100, wsd) == pytest.approx(0.0)


class ProbeObjective:
    """A least-squares objective that uses every hook a later stage needs: a frozen reference
    moved at setup, metrics returned beside the loss, and a batch that reads the model."""

    tokens_per_row = 1

    def __init__(self):
        self.reference = torch.nn.Linear(4, 1)
        self.setup_args, self.models_seen = None, set()

    def setup(self, device, dtype):
        self.setup_args = (device, dtype)
        self.reference.to(device).requires_grad_(False)

    def batch(self, step, micro, rank, world, model):
        self.models_seen.add(id(model))
        g = torch.Generator().manual_seed(step * 10 + micro)
        return {"x": torch.randn(8, 4, generator=g)}

    def loss(self, model, batch):
        pred, ref = model(batch["x"]), self.reference(batch["x"])
        loss = (pred - ref).pow(2).mean()
        return loss, {"gap": (pred - ref).abs().mean(), "constant": 2.0}

    def evaluate(self, model, rank, world):
        return {}


def test_objectives_get_setup_metrics_and_the_model(tmp_path):
    from picochat.train.trainer import Trainer

    objective = ProbeObjective()
    model = torch.nn.Linear(4, 1)
    cfg = TrainConfig(max_steps=6, batch_size=8, grad_accum=2, lr=0.05, warmup_steps=1, log_every=1, eval_every=0,
                      ckpt_every=0, dtype="fp32", device="cpu", compile=False)
    Trainer(model, objective, cfg, tmp_path / "ckpt", tmp_path / "m.jsonl", progress=False).fit()
    assert objective.setup_args == (torch.device("cpu"), torch.float32)
    assert objective.models_seen == {id(model)}
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 7))
    assert all(r["constant"] == pytest.approx(2.0) and r["gap"] > 0 for r in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]
