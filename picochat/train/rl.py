"""RL with verifiable rewards: GRPO on tasks whose answers a checker can verify.

    picochat rl --run R [--stage sft|dpo] [--tasks unknowable,identity,arithmetic,copying] [--group 8] [--resume]

starts from runs/R/<stage> and writes runs/R/rl/. Each step, for `batch_size` training
problems per micro-batch (picochat.tasks, "train" split, drawn by a generator seeded by the
step), the current policy samples `group` answers through the one generation path
(`Engine.generate_batch`: tool calls run, their results injected), the task's checker rewards
each, and an answer's advantage is its reward against its group's: (r - mean) / (std + eps),
or r - mean with `--advantage centered` (Dr. GRPO: dividing by the std weights a group by how
unsure it is). `--advantage filter` is the baseline RL must beat at equal rollout tokens:
expert iteration, online (1 for an answer the checker accepts, 0 for the rest: sample, keep
what is right, fine-tune on it; nothing pushes a wrong answer down). The loss is PPO's
clipped surrogate on the answer's own sampled tokens (injected tool results are masked out):
ratio = pi / pi_sampler per token, where pi_sampler is the log-probability the sampler drew
it with. With one update per rollout the ratio only
departs from 1 where the decode copy's arithmetic differs from the trainer's (bf16 against
fp32 autocast), and the clip bounds that. An optional KL penalty (k3 estimator) holds the
policy near the frozen starting model.

How the per-token losses are averaged (`--loss-norm`) is where the papers disagree:
  sequence   each answer's mean, then the mean over answers (GRPO): a long answer's tokens
             count less, so long wrong answers are punished less per token
  token      the mean over every answer token of the micro-batch (DAPO)
  constant   the sum over answer tokens divided by rows x max_tokens (Dr. GRPO): no length bias
The default, token, is DAPO's; the three have not yet been compared on held-out accuracy here.
Logged per step: reward, accuracy, answer and thinking length, groups with any signal, KL,
clip fraction, entropy. Held-out accuracy per task (the "eval" split, greedy) is measured on the
starting model before the first step and at every evaluation, so the stage's own record says
whether RL moved it.

Exact resume: a step's problems and sampling seed are functions of (seed, step, micro-step,
rank), and its answers a function of those and the weights, so a resumed run draws the same
rollouts as an uninterrupted one (the trainer's rule for on-policy objectives).
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from dataclasses import dataclass

import torch

from picochat.chat import render_prompt
from picochat.config import Preset, TrainConfig, override
from picochat.model import load_pretrained
from picochat.rundir import PicochatError, RunDir
from picochat.tasks import TASKS, Task
from picochat.tokenizer import Tokenizer
from picochat.train.preference import token_logprobs
from picochat.train.sft import sft_config
from picochat.train.stage import on, refuse_overwrite, train_stage

# identity is among them so "I don't know", rewarded on unknowable, does not spread to "who are you?"
DEFAULT_TASKS = ("unknowable", "identity", "arithmetic", "copying")
LOSS_NORMS = ("sequence", "token", "constant")
ADVANTAGES = ("group", "centered", "filter")
EPS = 1e-4
MIN_ANSWER_ROOM = 8     # tokens a prompt must leave free in the context


@dataclass(frozen=True)
class Rollouts:
    """How answers are sampled and scored."""
    group: int = 8                  # answers per problem
    max_tokens: int = 64            # per answer (tool results excluded)
    temperature: float = 1.0
    clip: float = 0.2               # ratio clip: [1 - clip, 1 + clip]
    kl: float = 0.1                 # KL penalty toward the starting model (0: none; at 0, cpu-tiny's
                                    # calculator answers fell from 0.28 to 0.02 in 32 steps)
    loss_norm: str = "token"
    advantage: str = "group"
    eval_problems: int = 64         # held-out problems per task at each evaluation


def rl_tasks(names) -> list[Task]:
    """The tasks to train on: names from picochat.tasks (a comma-separated string or a list), or
    Task objects of one's own. Each needs a checker and a held-out "eval" split."""
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen = [TASKS.get(n.strip(), n.strip()) if isinstance(n, str) else n for n in items if n != ""]
    if not chosen:
        raise PicochatError("--tasks names no task")
    unknown = [t for t in chosen if not isinstance(t, Task) or "eval" not in t.splits]
    if unknown:
        usable = sorted(n for n, t in TASKS.items() if "eval" in t.splits)
        names = ", ".join(repr(t if isinstance(t, str) else t.name) for t in unknown)
        raise PicochatError(f"no RL task {names}: choose from {', '.join(usable)} "
                            "(a task with a checker and a held-out split)")
    return list({t.name: t for t in chosen}.values())


def judged(task: Task, problem, answer, how: str = "reward") -> float:
    """The task's reward (or, how="check", its verdict as 0/1) for one answer; a checker that
    fails is a clear error naming the task, not a crash in the middle of the trainer."""
    try:
        r = float(getattr(task, how)(problem, answer))
    except Exception as e:   # noqa: BLE001 - any checker bug is reported the same way
        raise PicochatError(f"task {task.name!r}: its checker raised {type(e).__name__}: {e} "
                            f"on the answer {answer.text[:200]!r}") from e
    if r != r:
        raise PicochatError(f"task {task.name!r}: its checker returned NaN on the answer {answer.text[:200]!r}")
    return r


def thinking_tokens(ids: list[int], mask: list[int], open_id: int | None, close_id: int | None) -> int:
    """Sampled tokens between <|think|> and <|/think|> (to the end when it never closes)."""
    inside, count = False, 0
    for t, m in zip(ids, mask):
        if t == open_id:
            inside = True
        elif t == close_id:
            inside = False
        elif inside and m:
            count += 1
    return count


class GRPOObjective:
    def __init__(self, tasks: list[Task], tokenizer, reference, rollouts: Rollouts, batch_size: int, seed: int,
                 context: int):
        if rollouts.loss_norm not in LOSS_NORMS:
            raise PicochatError(f"--loss-norm must be one of {', '.join(LOSS_NORMS)}, not {rollouts.loss_norm!r}")
        if rollouts.advantage not in ADVANTAGES:
            raise PicochatError(f"--advantage must be one of {', '.join(ADVANTAGES)}, not {rollouts.advantage!r}")
        if rollouts.group < 2:
            raise PicochatError(f"--group must be at least 2 (advantages compare answers), not {rollouts.group}")
        self.tasks, self.tokenizer, self.reference, self.r = tasks, tokenizer, reference, rollouts
        self.batch_size, self.seed, self.context = batch_size, seed, context
        self.tokens_per_row = rollouts.group * rollouts.max_tokens     # a problem's answers, at most
        self.dtype = torch.float32
        self.think = (tokenizer.special_tokens.get("<|think|>"), tokenizer.special_tokens.get("<|/think|>"))
        self.batches = self.silent_batches = 0      # rollout batches drawn; those with no reward at all

    def setup(self, device: torch.device, dtype: torch.dtype) -> None:
        self.dtype = dtype
        if self.reference is not None:
            self.reference = self.reference.to(device).eval()

    # -- rollouts --------------------------------------------------------------------------------
    def engine(self, model):
        from picochat.engine import Engine
        from picochat.tools import default_tools

        return Engine(model, self.tokenizer, dtype=self.dtype, tools=default_tools())

    def fits(self, problem) -> bool:
        """Room for the prompt and the start of an answer (the engine stops a row at the context)."""
        return len(render_prompt(self.tokenizer, problem.prompt)) + MIN_ANSWER_ROOM <= self.context

    def problems(self, step: int, micro: int, rank: int, world: int) -> list[tuple[Task, object]]:
        rng = random.Random(((self.seed * 1_000_003 + step) * 1009 + micro) * 1013 + rank)
        chosen = []
        for _ in range(100 * self.batch_size):
            task = rng.choice(self.tasks)
            problem = task.problems(rng, 1, split="train")[0]
            if self.fits(problem):
                chosen.append((task, problem))
                if len(chosen) == self.batch_size:
                    return chosen
        raise PicochatError(f"almost no problem of {', '.join(t.name for t in self.tasks)} leaves room for an "
                            f"answer in the model's {self.context}-token context")

    def batch(self, step, micro, rank, world, model=None):
        from picochat.engine import SamplingParams

        problems = self.problems(step, micro, rank, world)
        prompts = [render_prompt(self.tokenizer, p.prompt) for _, p in problems for _ in range(self.r.group)]
        params = SamplingParams(temperature=self.r.temperature, max_tokens=self.r.max_tokens, logprobs=0,
                                seed=(self.seed * 7919 + step) * 104729 + micro * 31 + rank)
        answers = self.engine(model).generate_batch(prompts, params)
        rewards = torch.tensor([judged(task, problem, answers[i * self.r.group + j])
                                for i, (task, problem) in enumerate(problems) for j in range(self.r.group)])
        return self._tensors(prompts, answers, rewards)

    def _tensors(self, prompts, answers, rewards: torch.Tensor) -> dict[str, torch.Tensor]:
        """Prompt + answer ids right-padded, the sampled-token mask and the sampler's log-probs
        (both aligned with the ids), per-row advantages and what the step logs."""
        rows = [p + a.ids for p, a in zip(prompts, answers)]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), self.tokenizer.pad_id, dtype=torch.long)
        sampled = torch.zeros((len(rows), T))
        old = torch.zeros((len(rows), T))
        for i, (p, a) in enumerate(zip(prompts, answers)):
            ids[i, :len(rows[i])] = torch.tensor(rows[i])
            sampled[i, len(p):len(rows[i])] = torch.tensor(a.mask, dtype=torch.float32)
            old[i, len(p):len(rows[i])] = torch.tensor([lp if lp is not None else 0.0 for lp in a.logprobs])
        groups = rewards.view(-1, self.r.group)
        advantages = groups - groups.mean(-1, keepdim=True)
        if self.r.advantage == "group":
            advantages = advantages / (groups.std(-1, keepdim=True) + EPS)
        elif self.r.advantage == "filter":
            advantages = (groups >= 1).float()
        self.batches += 1
        self.silent_batches += not rewards.any()
        out = {"input_ids": ids, "sampled": sampled, "old_logprobs": old, "advantages": advantages.flatten(),
               "reward": rewards, "answer_tokens": sampled.sum(-1),
               "thinking_tokens": torch.tensor([float(thinking_tokens(a.ids, a.mask, *self.think)) for a in answers]),
               "signal": (groups.std(-1) > 0).float().repeat_interleave(self.r.group)}
        if self.reference is not None:
            with torch.no_grad(), self._autocast(ids.device):
                out["ref_logprobs"] = token_logprobs(self.reference, ids, at=sampled)
        return out

    def _autocast(self, device):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, self.dtype)

    # -- the loss ----------------------------------------------------------------------------------
    def loss(self, model, batch):
        """The clipped surrogate over the sampled answer tokens only: the output head runs only
        at their positions (the model's `at` mask), which is most of the work at a long prompt."""
        targets, mask = batch["input_ids"][:, 1:], batch["sampled"][:, 1:].bool()
        rows = mask.nonzero()[:, 0]                                   # each answer token's row
        logp = model(batch["input_ids"][:, :-1], at=mask).float().log_softmax(-1)     # (N, V)
        new = logp.gather(-1, targets[mask][:, None])[:, 0]
        ratio = torch.exp(new - batch["old_logprobs"][:, 1:][mask])
        adv = batch["advantages"][rows]
        lo, hi = 1 - self.r.clip, 1 + self.r.clip
        per_token = -torch.minimum(ratio * adv, ratio.clamp(lo, hi) * adv)
        kl = torch.zeros_like(new)
        if "ref_logprobs" in batch:
            log_ratio = batch["ref_logprobs"][:, 1:][mask] - new
            kl = torch.exp(log_ratio) - log_ratio - 1                # k3: unbiased, never negative
            per_token = per_token + self.r.kl * kl
        loss = self._normalise(per_token, rows, len(mask))
        with torch.no_grad():
            n = max(1, len(new))
            metrics = {"reward": batch["reward"].mean(), "accuracy": (batch["reward"] >= 1).float().mean(),
                       "answer_tokens": batch["answer_tokens"].mean(),
                       "thinking_tokens": batch["thinking_tokens"].mean(), "signal": batch["signal"].mean(),
                       "kl": kl.sum() / n, "clip_fraction": ((ratio < lo) | (ratio > hi)).float().sum() / n,
                       "entropy": -(logp.exp() * logp).sum() / n}
        return loss, metrics

    def _normalise(self, per_token: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
        if self.r.loss_norm == "sequence":
            sums = per_token.new_zeros(n_rows).index_add(0, rows, per_token)
            counts = per_token.new_zeros(n_rows).index_add(0, rows, torch.ones_like(per_token))
            return (sums / counts.clamp(min=1)).mean()
        if self.r.loss_norm == "token":
            return per_token.sum() / max(1, len(per_token))
        return per_token.sum() / (n_rows * self.r.max_tokens)

    # -- held-out accuracy -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model, rank: int, world: int) -> dict[str, float]:
        """Greedy answers to each task's held-out problems (the same ones every time)."""
        from picochat.engine import SamplingParams

        engine = self.engine(model)
        params = SamplingParams(temperature=0.0, max_tokens=self.r.max_tokens)
        out = {}
        for task in self.tasks:
            problems = [p for p in task.problems(random.Random(self.seed + 17), self.r.eval_problems, split="eval")
                        if self.fits(p)]
            if not problems:
                continue
            answers = engine.generate_batch([render_prompt(self.tokenizer, p.prompt) for p in problems], params)
            right = [judged(task, p, a, "check") for p, a in zip(problems, answers)]
            out[f"heldout_{task.name}_accuracy"] = sum(right) / max(1, len(right))
            out[f"heldout_{task.name}_n"] = len(right)
        return out


def rl_config(preset: Preset) -> TrainConfig:
    """The preset's RL recipe, or one derived from its SFT recipe: a quarter of its steps, AdamW at a
    tenth of its rate (at a twentieth, cpu-tiny's held-out accuracy did not move in 30 steps), four
    problems per micro-batch, two micro-batches per step."""
    sft = sft_config(preset)
    return preset.rl or override(sft, max_steps=max(10, sft.max_steps // 4), batch_size=4, grad_accum=2,
                                 lr=sft.lr / 10, optimizer="adamw", weight_decay=0.0, warmup_steps=2,
                                 eval_every=0, ckpt_every=10, grad_clip=1.0)


def rl(run: RunDir, preset: Preset, stage: str = "sft", tasks=DEFAULT_TASKS, rollouts: Rollouts = Rollouts(),
       max_steps: int | None = None, resume: bool = False, progress: bool = True, **train_overrides) -> dict:
    started = time.time()
    start = run.require_model(stage)
    refuse_overwrite(run, "rl", resume)
    chosen = rl_tasks(tasks)
    tokenizer = Tokenizer.load(start)
    policy = load_pretrained(start)
    reference = load_pretrained(start).requires_grad_(False) if rollouts.kl > 0 else None
    cfg = override(rl_config(preset), max_steps=max_steps, **train_overrides)
    objective = GRPOObjective(chosen, tokenizer, reference, rollouts, cfg.batch_size, cfg.seed,
                              policy.config.max_seq_len)
    before = objective.evaluate(policy.eval(), 0, 1)
    policy.train()
    print("held-out accuracy before RL: " + ", ".join(
        f"{t.name} {before.get(f'heldout_{t.name}_accuracy', float('nan')):.3f}" for t in chosen), flush=True)

    def describe(trainer) -> str:
        per_step = cfg.batch_size * cfg.grad_accum * trainer.world
        return (f"rl (GRPO, {rollouts.loss_norm} loss, {rollouts.advantage} advantages, kl {rollouts.kl}): "
                f"{policy.num_params() / 1e6:.2f}M parameters from {start.name}; "
                f"tasks {', '.join(t.name for t in chosen)}; "
                f"{cfg.max_steps} steps x {per_step} problems x {rollouts.group} answers on {on(trainer)}")

    metrics = train_stage(run, "rl", policy, objective, cfg, tokenizer, resume=resume, progress=progress,
                          describe=describe, started=started,
                          record={"preset": preset.name, "from": start.name, "tasks": [t.name for t in chosen],
                                  "rollouts": vars(rollouts), "before": before})
    if objective.silent_batches:
        print(f"warning: {objective.silent_batches} of {objective.batches} rollout batches earned no reward at all: "
              "nothing to reinforce there. A starting model that never answers a task right cannot learn it "
              "by RL; teach it first (SFT) or pick tasks it sometimes gets right.", file=sys.stderr)
    return metrics
