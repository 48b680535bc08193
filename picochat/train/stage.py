"""The skeleton every training stage shares: pretrain, SFT, and the reward, DPO and RL stages.

    metrics = train_stage(run, "sft", model, objective, train_cfg, tokenizer, resume=resume,
                          describe=lambda trainer: "sft: ...", record={"mixture": ...})

In order: refuse to train over existing checkpoints unless resuming (so a finished or crashed
run is never overwritten by accident), build the one Trainer, resume from the newest checkpoint
when asked, say what is about to run, fit, save the model directory, and record the stage in
run.json. A stage file supplies only its model, its Objective and what to say and record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from picochat.config import TrainConfig
from picochat.model import save_pretrained
from picochat.rundir import PicochatError, RunDir
from picochat.train.trainer import Objective, Trainer


def train_stage(run: RunDir, stage: str, model: torch.nn.Module, objective: Objective, cfg: TrainConfig,
                tokenizer, resume: bool = False, progress: bool = True,
                describe: Callable[[Trainer], str] | None = None, record: dict | None = None,
                metrics_name: str | None = None, started: float | None = None,
                save: Callable[[torch.nn.Module, Path, object], None] | None = None) -> dict:
    """Train `model` on `objective` into the run's `stage` folder; returns the final metrics.
    metrics_name: the metrics/<name>.jsonl file (default: the stage); started: when the stage's
    work began (time.time(); default now: a stage that prepares data first passes its start);
    save(model, folder, tokenizer): how the stage's model is written (default: a Hugging Face
    Llama directory)."""
    started = started or time.time()
    refuse_overwrite(run, stage, resume)
    checkpoints = run.checkpoints(stage)
    trainer = Trainer(model, objective, cfg, checkpoints, run.metrics / f"{metrics_name or stage}.jsonl", progress)
    if resume and not trainer.resume() and trainer.is_main:
        print("no checkpoint to resume from; starting from step 0")
    if trainer.is_main and describe is not None:
        print(describe(trainer), flush=True)
    metrics = trainer.fit()
    if trainer.is_main:
        (save or save_pretrained)(model, run.model(stage), tokenizer)
        run.record_stage(stage, **(record or {}), status="done", train=vars(cfg),
                         seconds=round(time.time() - started, 1), steps=trainer.step, metrics=metrics)
    return metrics


def refuse_overwrite(run: RunDir, stage: str, resume: bool) -> None:
    """Checkpoints of an earlier training are continued (--resume) or left alone, never overwritten."""
    checkpoints = run.checkpoints(stage)
    if not resume and checkpoints.exists() and any(checkpoints.iterdir()):
        raise PicochatError(f"{checkpoints} already has checkpoints; pass --resume to continue "
                            "that training, or use a new --run")


def on(trainer: Trainer) -> str:
    """Where a stage trains, for its banner: device, dtype and process count."""
    return f"{trainer.device} ({str(trainer.dtype).removeprefix('torch.')}, {trainer.world} process(es))"
