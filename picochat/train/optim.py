"""The optimizers a recipe can name: AdamW for every weight, or Muon for the hidden matrices.

    picochat pretrain --run R --preset cpu-tiny --set optimizer=muon

- "adamw": AdamW; weight decay on matrices only (not norms); torch's fused kernel.
- "muon": Muon (torch.optim.Muon: momentum, then the update orthogonalised by Newton-Schulz
  iterations, so every direction of a matrix moves at the same rate; here with the iterations
  in fp32 where the hardware has no fast bf16, see `Muon`) for the attention and MLP matrices, with AdamW for what Muon is not meant for: the embedding and output head (rows
  looked up or read out one token at a time) and the norms. Muon's update is scaled to the RMS
  AdamW's has ("match_rms_adamw"), so one learning rate and one schedule drive both.

bench/optimizers.py trains both at equal steps and FLOPs and prints validation bits per byte.
"""

from __future__ import annotations

import torch
from torch.optim._muon import _adjust_lr

from picochat.rundir import PicochatError

OPTIMIZERS = ("adamw", "muon")


class Optimizers:
    """Several torch optimizers stepped as one, with one state dict (parameter ids numbered on
    across them, as one optimizer numbers them across its groups), so checkpoints and the
    learning-rate schedule treat them as a single optimizer."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for o in self.optimizers:
            sd = o.state_dict()
            state.update({pid + offset: s for pid, s in sd["state"].items()})
            groups += [{**g, "params": [p + offset for p in g["params"]]} for g in sd["param_groups"]]
            offset += sum(len(g["params"]) for g in sd["param_groups"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        groups = sd["param_groups"]
        if len(groups) != len(self.param_groups):
            raise PicochatError("the checkpoint's optimizer has other parameter groups than this "
                                "recipe's (was it trained with another optimizer?)")
        start, offset = 0, 0
        for o in self.optimizers:
            mine = groups[start:start + len(o.param_groups)]
            ids = {p for g in mine for p in g["params"]}
            o.load_state_dict({"state": {pid - offset: s for pid, s in sd["state"].items() if pid in ids},
                               "param_groups": [{**g, "params": [p - offset for p in g["params"]]} for g in mine]})
            start += len(o.param_groups)
            offset += len(ids)


class Muon(torch.optim.Muon):
    """torch's Muon with its Newton-Schulz iterations in `ns_dtype`. torch runs them in bf16,
    which is right where bf16 matrix products are native (GPUs, CPUs with AMX or AVX-512 BF16);
    on a CPU without them bf16 is emulated, and the optimizer step alone took over three times
    a cpu-tiny forward and backward pass (bench/muon_step.py measures it). In fp32
    the iterations cost what fp32 products cost. State and settings are torch's, so checkpoints
    of either load in the other."""

    def __init__(self, params, ns_dtype: torch.dtype = torch.bfloat16, **settings):
        super().__init__(params, **settings)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            a, b, c = group["ns_coefficients"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                x = update.to(self.ns_dtype)
                tall = x.size(0) > x.size(1)
                x = x.T if tall else x
                x = x / x.norm().clamp(min=group["eps"])       # spectral norm at most 1
                for _ in range(group["ns_steps"]):
                    gram = x @ x.T
                    x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
                x = x.T if tall else x
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(x.to(p.dtype), alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape))


def make_optimizer(model: torch.nn.Module, cfg, device: torch.device):
    """The recipe's optimizer (cfg.optimizer) over the model's trainable parameters."""
    fused = device.type in ("cuda", "cpu")
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return adamw([p for _, p in params], cfg, fused)
    if cfg.optimizer != "muon":
        raise PicochatError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {cfg.optimizer!r}")
    hidden = [p for n, p in params if p.dim() == 2 and not is_vocabulary(n)]
    rest = [p for n, p in params if p.dim() != 2 or is_vocabulary(n)]
    from picochat.hardware import pick_dtype

    muon = Muon(hidden, ns_dtype=pick_dtype("auto", device), lr=cfg.lr, weight_decay=cfg.weight_decay,
                momentum=0.95, nesterov=True, adjust_lr_fn="match_rms_adamw")
    return Optimizers(adamw(rest, cfg, fused), muon)


def adamw(params: list[torch.nn.Parameter], cfg, fused: bool) -> torch.optim.AdamW:
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, fused=fused)


def is_vocabulary(name: str) -> bool:
    """The token embedding and the output head: one row per token, not a hidden linear map."""
    return "embed_tokens" in name or "lm_head" in name
