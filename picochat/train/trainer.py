"""One training loop for every stage.

Pretraining, SFT, reward modelling, DPO and RL all run here; each supplies an `Objective` (its
batches, its loss, its evaluation). The loop owns everything else: device and dtype (bf16
autocast where the hardware has it), optional torch.compile, DDP under torchrun, gradient
accumulation, the learning-rate schedule, the optimizer (picochat.train.optim), clipping, metrics as JSON lines, a progress bar
with loss / tokens/s / MFU / ETA, and atomic checkpoints that resume exactly.

Exact resume rests on one rule: an objective's batch is a pure function of (step, micro-step,
rank, the weights), so a resumed run sees the same data as an uninterrupted one without replaying
anything: offline data is indexed by the step, on-policy rollouts are seeded by it.

    torchrun --standalone --nproc_per_node=2 -m picochat.cli -- pretrain --run R --preset cpu-tiny

(the `--` keeps torchrun from reading `--run` as an abbreviation of its own `--run-path`)
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from picochat.config import TrainConfig
from picochat.hardware import peak_flops, pick_device, pick_dtype
from picochat.rundir import PicochatError, atomic_dir, atomic_write_json
from picochat.train.optim import make_optimizer

CKPT_PATTERN = re.compile(r"^step_(\d{6,})$")


class Objective(Protocol):
    """What a stage supplies to the trainer.

    Optional: `setup(device, dtype)`, called once the trainer has picked them and before the
    first batch (an objective with a frozen reference model moves it to the device there)."""

    tokens_per_row: int  # tokens one batch row trains on (for tokens/s and MFU)

    def batch(self, step: int, micro: int, rank: int, world: int, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The micro-batch for this (step, micro-step, rank): a pure function of its arguments
        and the model's weights (an on-policy objective samples from `model`, seeded by the step)."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> "torch.Tensor | tuple[torch.Tensor, dict]":
        """Scalar mean loss of one micro-batch; or (loss, metrics): scalars averaged over the
        step's micro-batches and ranks and logged beside the loss (DPO margins, RL rewards)."""

    def evaluate(self, model: torch.nn.Module, rank: int, world: int) -> dict[str, float]:
        """Validation metrics (summed across ranks by the objective itself if it needs to)."""


# --- distributed ------------------------------------------------------------------------------
def init_distributed(device_request: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun: joins the process group (NCCL on GPU, gloo
    on CPU) and pins each rank to its own GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_request)
    if world == 1:
        return 0, 1, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise PicochatError(f"process {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); "
                                "start at most that many processes, or pass --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# --- schedule ---------------------------------------------------------------------------------
def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay (or warmup-stable-decay) to min_lr_frac * lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_frac
    if cfg.schedule == "wsd":
        decay_start = int(cfg.max_steps * (1 - cfg.decay_frac))
        if step < decay_start:
            return cfg.lr
        frac = (step - decay_start) / max(1, cfg.max_steps - decay_start)
        return cfg.lr - (cfg.lr - floor) * frac
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(frac, 1.0)))


# --- checkpoints ------------------------------------------------------------------------------
def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_PATTERN.match(p.name))]
    return sorted(found)


def save_checkpoint(folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    cfg: TrainConfig, extra: dict, keep: int) -> Path:
    """model.safetensors + optimizer.safetensors + trainer.json, written as one atomic folder."""
    from safetensors.torch import save_file

    opt_state = optimizer.state_dict()
    opt_tensors = {f"{pid}.{key}": value.detach().cpu().contiguous()
                   for pid, state in opt_state["state"].items() for key, value in state.items()}
    groups = [{k: v for k, v in g.items()} for g in opt_state["param_groups"]]
    rng = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    device = next(model.parameters()).device
    if device.type == "cuda":       # this process's GPU only: a resume may see fewer GPUs
        rng["cuda"] = base64.b64encode(torch.cuda.get_rng_state(device).cpu().numpy().tobytes()).decode()
    meta = {"step": step, "train_config": asdict(cfg), "param_groups": groups, "rng": rng, **extra}
    final = folder / f"step_{step:06d}"
    with atomic_dir(final) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  tmp / "model.safetensors")
        save_file(opt_tensors, tmp / "optimizer.safetensors")
        atomic_write_json(tmp / "trainer.json", meta)
    for _, old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, optimizer and RNG state in place; returns trainer.json."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        meta = json.loads((path / "trainer.json").read_text())
        weights = load_file(path / "model.safetensors")
        opt_tensors = load_file(path / "optimizer.safetensors")
    except (OSError, json.JSONDecodeError, SafetensorError, ValueError) as e:
        raise PicochatError(f"checkpoint {path} is corrupt or truncated ({e}); delete that folder "
                            "to resume from the one before it, or start over without --resume") from e
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise PicochatError(f"checkpoint {path} was made by a different model shape; use the "
                            "preset it was trained with, or start over without --resume") from e
    state: dict[int, dict] = {}
    for name, value in opt_tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, PicochatError) as e:
        raise PicochatError(f"checkpoint {path} was made with another optimizer "
                            f"({meta.get('train_config', {}).get('optimizer', 'adamw')}); resume with the "
                            "same --set optimizer=..., or start over without --resume") from e
    rng = torch.frombuffer(bytearray(base64.b64decode(meta["rng"]["torch"])), dtype=torch.uint8)
    torch.set_rng_state(rng)
    device = next(model.parameters()).device
    cuda = meta["rng"].get("cuda")
    if isinstance(cuda, list):       # older checkpoints kept every visible GPU's state
        cuda = cuda[device.index or 0] if len(cuda) > (device.index or 0) else None
    if cuda and device.type == "cuda":
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(cuda)), dtype=torch.uint8), device)
    return meta


# --- the loop ---------------------------------------------------------------------------------
def _split(out) -> tuple[torch.Tensor, dict]:
    """An objective's loss output as (loss, metrics)."""
    return out if isinstance(out, tuple) else (out, {})



class Trainer:
    def __init__(self, model: torch.nn.Module, objective: Objective, cfg: TrainConfig,
                 checkpoint_dir: Path, metrics_path: Path, progress: bool = True):
        self.cfg, self.objective = cfg, objective
        self.rank, self.world, self.device = init_distributed(cfg.device)
        self.is_main = self.rank == 0
        self.dtype = pick_dtype(cfg.dtype, self.device)
        self.checkpoint_dir, self.metrics_path = Path(checkpoint_dir), Path(metrics_path)
        self.progress = progress and self.is_main
        self.model = model.to(self.device)          # the plain module: what gets saved
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.step = 0
        compute = torch.compile(self.model) if cfg.compile else self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            compute = DDP(compute, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.compute = compute                      # what runs forward/backward
        if hasattr(objective, "setup"):
            objective.setup(self.device, self.dtype)

    @property
    def tokens_per_step(self) -> int:
        c = self.cfg
        return c.batch_size * c.grad_accum * self.world * self.objective.tokens_per_row

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def resume(self) -> bool:
        """Continue from the newest checkpoint, if any. Returns whether one was loaded."""
        found = list_checkpoints(self.checkpoint_dir)
        if not found:
            return False
        step, path = found[-1]
        meta = load_checkpoint(path, self.model, self.optimizer)
        for key in ("batch_size", "grad_accum", "seq_len", "seed"):
            if meta["train_config"][key] != getattr(self.cfg, key) and self.world == 1:
                raise PicochatError(f"checkpoint {path} used {key}={meta['train_config'][key]}, this "
                                    f"run {key}={getattr(self.cfg, key)}; resume with the same settings")
        self.step = step
        if self.is_main:
            self._truncate_metrics(step)
            print(f"resumed from {path} (step {step})")
        return True

    def fit(self) -> dict:
        cfg, model = self.cfg, self.model
        flops_per_step = model.flops_per_token(self.objective.tokens_per_row) * self.tokens_per_step \
            if hasattr(model, "flops_per_token") else 0.0
        peak = peak_flops(self.device, self.dtype) * self.world if self.is_main else 0.0
        bar = self._progress_bar()
        last: dict = {}
        window_start, window_tokens = time.perf_counter(), 0
        while self.step < cfg.max_steps:
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step > 0:
                last.update(self._evaluate())
            lr = lr_at(self.step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            step_metrics = self._train_step()
            loss = step_metrics["loss"]
            self.step += 1
            window_tokens += self.tokens_per_step
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                elapsed = time.perf_counter() - window_start
                tps = window_tokens / elapsed
                mfu = flops_per_step * (tps / self.tokens_per_step) / peak if peak else 0.0
                record = {"step": self.step, **step_metrics, "lr": lr, "tokens_per_s": tps, "mfu": mfu}
                last.update(record)
                self._log(record)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}", mfu=f"{100 * mfu:.1f}%")
                window_start, window_tokens = time.perf_counter(), 0
            if bar is not None:
                bar.update(1)
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < cfg.max_steps:
                self.checkpoint()
        if bar is not None:
            bar.close()
        last.update(self._evaluate())
        self.checkpoint()
        return last

    def _train_step(self) -> dict[str, float]:
        """One optimizer step over grad_accum micro-batches; returns the mean loss and metrics."""
        cfg = self.cfg
        sums: dict[str, torch.Tensor] = {}
        for micro in range(cfg.grad_accum):
            batch = {k: v.to(self.device, non_blocking=True)
                     for k, v in self.objective.batch(self.step, micro, self.rank, self.world, self.model).items()}
            sync = micro == cfg.grad_accum - 1 or self.world == 1
            # gradients are all-reduced only on the last micro-batch; one context for its forward and backward
            with contextlib.nullcontext() if sync else self.compute.no_sync():
                with self.autocast():
                    loss, metrics = _split(self.objective.loss(self.compute, batch))
                if not torch.isfinite(loss):
                    raise PicochatError(f"loss became {loss.item()} at step {self.step}; lower the "
                                        "learning rate or resume from an earlier checkpoint")
                (loss / cfg.grad_accum).backward()
            if "loss" in metrics or (sums and set(metrics) != set(sums) - {"loss"}):
                raise PicochatError(f"an objective's metrics must keep one set of names other than 'loss' "
                                    f"on every micro-batch; got {sorted(metrics)}")
            for key, value in {"loss": loss, **metrics}.items():
                value = torch.as_tensor(value, dtype=torch.float32, device=self.device).detach()
                sums[key] = sums.get(key, 0) + value
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        names = sorted(sums)                    # the same order on every rank
        means = all_reduce_sum(torch.stack([sums[k] for k in names]) / cfg.grad_accum) / self.world
        return dict(zip(names, means.tolist()))

    def _evaluate(self) -> dict:
        self.model.eval()
        with torch.no_grad(), self.autocast():
            metrics = self.objective.evaluate(self.model, self.rank, self.world)
        self.model.train()
        if self.is_main and metrics:
            self._log({"step": self.step, **metrics})
            print(" ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f" (step {self.step})")
        return metrics

    def checkpoint(self) -> None:
        if self.is_main:
            save_checkpoint(self.checkpoint_dir, self.step, self.model, self.optimizer, self.cfg,
                            {"world_size": self.world}, self.cfg.keep_checkpoints)
        if self.world > 1:
            dist.barrier()

    def _progress_bar(self):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.cfg.max_steps, initial=self.step, unit="step", dynamic_ncols=True)

    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({**record, "time": time.time()}) + "\n")

    def _truncate_metrics(self, step: int) -> None:
        """Drop records past the resumed step, so the metrics read as one uninterrupted run."""
        if not self.metrics_path.exists():
            return
        def before(record: dict) -> bool:  # evals at `step` ran after its checkpoint: redone
            return record.get("step", 0) < step or (record.get("step") == step and "loss" in record)

        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and before(json.loads(line))]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))
