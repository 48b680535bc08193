"""Direct preference optimisation: the chat model tuned toward the preferred answers.

    picochat dpo --run R [--beta 0.1] [--loss dpo|ipo] [--max-steps N] [--resume]

starts from runs/R/sft (the policy) and keeps a frozen copy of it (the reference). For a pair,
h = [log pi(chosen) - log ref(chosen)] - [log pi(rejected) - log ref(rejected)], the answers'
summed log-probabilities (prompt and tool results excluded, picochat.train.preference). The
DPO loss is -log sigmoid(beta * h): the policy moves probability toward the chosen answer,
measured against where it started, which keeps it near the reference without a reward model
or sampling. IPO's (h - 1/(2 beta))^2 aims at a fixed margin instead of an ever larger one.
RPO (DPO plus the chosen answers' negative log-likelihood per token, as Llama 3's recipe adds)
keeps the chosen answers likely: plain DPO can widen the margin by pushing both answers down,
and a small model then drifts toward whatever the rejected answers are not.
The reference's log-probabilities never change, so they are computed once, in `setup`, and
the reference is dropped. Logged per step: the implicit rewards beta * (log pi - log ref) of
both answers, their margin and the share of pairs ranked right; on the held-out comparisons
the same, per source. Writes runs/R/dpo/ (a Hugging Face model directory, as sft).
"""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F

from picochat.config import Preset, TrainConfig, override
from picochat.model import load_pretrained
from picochat.rundir import PicochatError, RunDir
from picochat.tokenizer import Tokenizer
from picochat.train.preference import PairStream, answer_logprobs, by_source, collate_pairs
from picochat.train.reward import preference_data
from picochat.train.sft import sft_config
from picochat.train.stage import on, refuse_overwrite, train_stage

LOSSES = ("dpo", "ipo", "rpo")
NLL_WEIGHT = 1.0        # rpo: weight of the chosen answers' negative log-likelihood per token


class DPOObjective:
    def __init__(self, train, heldout, reference, batch_size: int, grad_accum: int, seed: int, pad_id: int,
                 beta: float, loss: str = "dpo"):
        if loss not in LOSSES:
            raise PicochatError(f"--loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        if beta <= 0:
            raise PicochatError(f"--beta must be positive, not {beta}")
        self.stream = PairStream(train, batch_size, grad_accum, seed)
        self.heldout, self.reference = heldout, reference
        self.batch_size, self.pad_id, self.beta, self.kind = batch_size, pad_id, beta, loss
        self.tokens_per_row = self.stream.tokens_per_row
        self.ref_train = self.ref_heldout = None

    def setup(self, device: torch.device, dtype: torch.dtype) -> None:
        """The reference's log-probabilities of every pair, once; then the reference goes."""
        reference = self.reference.to(device).eval()
        autocast = contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype)
        with torch.no_grad(), autocast:
            self.ref_train = self._logprobs(reference, self.stream.pairs, device)
            self.ref_heldout = self._logprobs(reference, self.heldout, device)
        self.reference = None

    def _logprobs(self, model, pairs, device) -> torch.Tensor:
        """(N, 2): each pair's chosen and rejected answer log-probabilities."""
        out = []
        for i in range(0, len(pairs), self.batch_size):
            batch = collate_pairs(pairs[i:i + self.batch_size], self.pad_id)
            lp = answer_logprobs(model, batch["input_ids"].to(device), batch["answer_mask"].to(device)).float()
            out.append(torch.stack(lp.chunk(2), dim=1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 2)

    def batch(self, step, micro, rank, world, model=None):
        rows = self.stream.indices(step, micro, rank, world)
        batch = collate_pairs([self.stream.pairs[i] for i in rows], self.pad_id)
        batch["reference"] = self.ref_train[rows]
        return batch

    def loss(self, model, batch):
        chosen, rejected = answer_logprobs(model, batch["input_ids"], batch["answer_mask"]).chunk(2)
        chosen_tokens = batch["answer_mask"][:len(chosen), 1:].sum(-1).clamp(min=1)
        ref = batch["reference"]
        chosen_reward, rejected_reward = chosen - ref[:, 0], rejected - ref[:, 1]
        h = chosen_reward - rejected_reward
        if self.kind == "ipo":
            loss = ((h - 1 / (2 * self.beta)) ** 2).mean()
        else:
            loss = -F.logsigmoid(self.beta * h).mean()
        if self.kind == "rpo":
            loss = loss + NLL_WEIGHT * (-chosen / chosen_tokens).mean()
        return loss, {"accuracy": (h > 0).float().mean(), "margin": self.beta * h.mean(),
                      "chosen_reward": self.beta * chosen_reward.mean(),
                      "rejected_reward": self.beta * rejected_reward.mean()}

    @torch.no_grad()
    def evaluate(self, model, rank: int, world: int) -> dict[str, float]:
        """Held-out pairs: how often the policy's implicit reward ranks them right, the mean
        margin, and the chosen answers' log-probability change (a DPO that only pushes the
        rejected answers down shows a falling chosen reward)."""
        if not self.heldout:
            return {}
        device = next(model.parameters()).device
        now = self._logprobs(model, self.heldout, device)
        delta = now - self.ref_heldout
        h = delta[:, 0] - delta[:, 1]
        out = {"heldout_pairs": len(h), "heldout_accuracy": (h > 0).float().mean().item(),
               "heldout_margin": self.beta * h.mean().item(),
               "heldout_chosen_reward": self.beta * delta[:, 0].mean().item()}
        for source, rows in by_source(self.heldout).items():
            out[f"heldout_{source}_pairs"] = len(rows)
            out[f"heldout_{source}_accuracy"] = (h[rows] > 0).float().mean().item()
        return out


def dpo_config(preset: Preset) -> TrainConfig:
    """The preset's DPO recipe, or one derived from its SFT recipe: AdamW at a fiftieth of its rate (at a
    tenth, cpu-tiny's DPO model answered "who are you?" with "I don't know": the pairs teach that
    answer often, and a small model spreads it)."""
    sft = sft_config(preset)
    return preset.dpo or override(sft, max_steps=max(20, sft.max_steps // 2), lr=sft.lr / 50, optimizer="adamw",
                                  weight_decay=0.0)


def dpo(run: RunDir, preset: Preset, beta: float = 0.1, loss: str = "dpo", max_steps: int | None = None,
        resume: bool = False, progress: bool = True, **train_overrides) -> dict:
    started = time.time()
    start = run.require_model("sft")
    refuse_overwrite(run, "dpo", resume)
    tokenizer = Tokenizer.load(start)
    policy, reference = load_pretrained(start), load_pretrained(start)
    reference.requires_grad_(False)
    cfg = override(dpo_config(preset), max_steps=max_steps, **train_overrides)
    train, heldout, data = preference_data(run, tokenizer, policy.config.max_seq_len, "dpo")
    objective = DPOObjective(train, heldout, reference, cfg.batch_size, cfg.grad_accum, cfg.seed,
                             tokenizer.pad_id, beta, loss)

    def describe(trainer) -> str:
        return (f"dpo ({loss}, beta {beta}): {policy.num_params() / 1e6:.2f}M parameters from {start.name} "
                f"against its frozen copy, {len(train):,} train / {len(heldout):,} held-out comparisons "
                f"{data['sources']}; {cfg.max_steps} steps x {cfg.batch_size * cfg.grad_accum * trainer.world} "
                f"pairs = {objective.stream.epochs(cfg.max_steps, trainer.world):.1f} epochs on {on(trainer)}")

    return train_stage(run, "dpo", policy, objective, cfg, tokenizer, resume=resume, progress=progress,
                       describe=describe, started=started,
                       record={"preset": preset.name, "from": start.name, "loss": loss, "beta": beta, "data": data})
