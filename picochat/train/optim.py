"""The optimizers a recipe can name: AdamW for every weight, or Muon for the hidden matrices.

    picochat pretrain --run R --preset cpu-tiny --set optimizer=muon

- "adamw": AdamW; weight decay on matrices only (not norms); torch's fused kernel.
- "muon": Muon (torch.optim.Muon: momentum, then the update orthogonalised by Newton-Schulz
  iterations, so every direction of a matrix moves at the same rate) for the attention and MLP
  matrices, with AdamW for what Muon is not meant for: the embedding and output head (rows
  looked up or read out one token at a time) and the norms. Muon's update is scaled to the RMS
  AdamW's has ("match_rms_adamw"), so one learning rate and one schedule drive both.

bench/optimizers.py trains both at equal steps and FLOPs and prints validation bits per byte.
"""

from __future__ import annotations

import torch

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
    muon = torch.optim.Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.95,
                            nesterov=True, adjust_lr_fn="match_rms_adamw")
    return Optimizers(adamw(rest, cfg, fused), muon)


def adamw(params: list[torch.nn.Parameter], cfg, fused: bool) -> torch.optim.AdamW:
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, fused=fused)


def is_vocabulary(name: str) -> bool:
    """The token embedding and the output head: one row per token, not a hidden linear map."""
    return "embed_tokens" in name or "lm_head" in name
