"""The reward model: the chat model with a scalar head, trained on comparisons.

    picochat reward --run R [--max-steps N] [--resume]

starts from runs/R/sft (its body; the language-model head is dropped), adds `score` (one
number per position, read at the last token of prompt + answer, as Hugging Face's
LlamaForSequenceClassification reads it), and trains on the store's "train" comparisons
(picochat.prefs) with the Bradley-Terry loss: -log sigmoid(r(chosen) - r(rejected)). It
measures pair accuracy on the "heldout" comparisons, per source, and writes runs/R/reward/: a
Hugging Face LlamaForSequenceClassification directory (num_labels 1) that transformers loads
and scores the same, plus the tokenizer. Best-of-N sampling (`--best-of N`) ranks answers with it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from picochat.chat import normalize, render_ids
from picochat.config import Preset, TrainConfig, override
from picochat.model import Llama, ModelConfig, load_pretrained, save_pretrained
from picochat.prefs.store import Store
from picochat.rundir import PicochatError, RunDir
from picochat.tokenizer import Tokenizer
from picochat.train.preference import PairStream, by_source, collate_pairs, render_pairs
from picochat.train.sft import sft_config
from picochat.train.stage import on, refuse_overwrite, train_stage


class RewardModel(Llama):
    """A Llama body and a scalar head; `state_dict()` matches LlamaForSequenceClassification."""

    def __init__(self, config: ModelConfig, pad_id: int):
        super().__init__(config)
        del self.lm_head
        self.score = nn.Linear(config.dim, 1, bias=False)
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded ids -> (B,) rewards, each read at its row's last non-pad token."""
        hidden = super().forward(input_ids, head=False)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = ((input_ids != self.pad_id) * positions).argmax(-1)
        return self.score(hidden[torch.arange(len(input_ids), device=input_ids.device), last]).squeeze(-1).float()

    @classmethod
    def from_chat_model(cls, folder: Path, pad_id: int) -> "RewardModel":
        chat = load_pretrained(folder)
        model = cls(chat.config, pad_id)
        state = {k: v for k, v in chat.state_dict().items() if not k.startswith("lm_head")}
        model.load_state_dict({**state, "score.weight": torch.zeros(1, chat.config.dim)})
        return model


def save_reward(model: RewardModel, folder: Path, tokenizer) -> None:
    """A LlamaForSequenceClassification directory: the weights, the tokenizer, then config.json."""
    save_pretrained(model, folder, tokenizer, architecture={
        "architectures": ["LlamaForSequenceClassification"], "num_labels": 1,
        "id2label": {"0": "reward"}, "label2id": {"reward": 0}})


def load_reward(folder: Path, device: str | torch.device = "cpu") -> tuple[RewardModel, Tokenizer]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        hf = json.loads((folder / "config.json").read_text())
        weights = load_file(folder / "model.safetensors")
    except (OSError, ValueError, SafetensorError) as e:
        raise PicochatError(f"no reward model at {folder} ({e}); train one with `picochat reward`") from e
    if "LlamaForSequenceClassification" not in hf.get("architectures", []):
        raise PicochatError(f"{folder} is not a reward model (architectures {hf.get('architectures')})")
    tokenizer = Tokenizer.load(folder)
    model = RewardModel(ModelConfig.from_hf(hf), tokenizer.pad_id)
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.to(device).eval(), tokenizer


class RewardScorer:
    """Scores answers to conversations with a trained reward model (best-of-N, evals)."""

    def __init__(self, folder: Path, device: str | torch.device = "cpu"):
        self.model, self.tokenizer = load_reward(folder, device)
        self.device = next(self.model.parameters()).device

    @torch.inference_mode()
    def __call__(self, messages: list[dict], answers: list[list[dict]]) -> list[float]:
        context = self.model.config.max_seq_len
        rows = [render_ids(self.tokenizer, normalize(messages + a)).ids[-context:] for a in answers]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), self.tokenizer.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
        return self.model(ids.to(self.device)).tolist()


# --- the objective ----------------------------------------------------------------------------------
class RewardObjective:
    """Bradley-Terry on the train pairs; pair accuracy and margins on the held-out ones."""

    def __init__(self, train, heldout, batch_size: int, grad_accum: int, seed: int, pad_id: int):
        self.stream = PairStream(train, batch_size, grad_accum, seed)
        self.heldout, self.batch_size, self.pad_id = heldout, batch_size, pad_id
        self.tokens_per_row = self.stream.tokens_per_row

    def batch(self, step, micro, rank, world, model=None):
        return collate_pairs([self.stream.pairs[i] for i in self.stream.indices(step, micro, rank, world)],
                             self.pad_id)

    def loss(self, model, batch):
        rewards = model(batch["input_ids"])
        margin = rewards[:len(rewards) // 2] - rewards[len(rewards) // 2:]
        return -F.logsigmoid(margin).mean(), {"accuracy": (margin > 0).float().mean(), "margin": margin.mean()}

    @torch.no_grad()
    def evaluate(self, model, rank: int, world: int) -> dict[str, float]:
        """Held-out pair accuracy and mean margin, overall and per source (one process's view:
        the held-out set is small)."""
        if not self.heldout:
            return {}
        device = next(model.parameters()).device
        margins = []
        for i in range(0, len(self.heldout), self.batch_size):
            batch = collate_pairs(self.heldout[i:i + self.batch_size], self.pad_id)
            rewards = model(batch["input_ids"].to(device)).float()
            margins += (rewards[:len(rewards) // 2] - rewards[len(rewards) // 2:]).tolist()
        out = {"heldout_pairs": len(margins), "heldout_accuracy": sum(m > 0 for m in margins) / len(margins),
               "heldout_margin": sum(margins) / len(margins)}
        for source, rows in by_source(self.heldout).items():
            out[f"heldout_{source}_pairs"] = len(rows)
            out[f"heldout_{source}_accuracy"] = sum(margins[i] > 0 for i in rows) / len(rows)
        return out


# --- the stage --------------------------------------------------------------------------------------
def reward_config(preset: Preset) -> TrainConfig:
    """The preset's reward-model recipe, or one derived from its SFT recipe."""
    return preset.reward or override(sft_config(preset), max_steps=max(20, sft_config(preset).max_steps // 2))


def preference_data(run: RunDir, tokenizer, max_tokens: int, command: str):
    """The store's train and held-out comparisons as rendered pairs; fails clearly when there
    is nothing to train on."""
    store = Store(run.prefs)
    contents = store.read()
    if contents.skipped_lines:
        print(f"{command}: skipped {contents.skipped_lines} unreadable line(s) of {store.path}")
    train, too_long = render_pairs(tokenizer, store.comparisons("train"), max_tokens)
    heldout, heldout_long = render_pairs(tokenizer, store.comparisons("heldout"), max_tokens)
    if not train:
        raise PicochatError(f"no comparisons to train on in {store.path}" + (
            f" ({too_long} do not fit the {max_tokens}-token context)" if too_long else "")
            + f"; collect some with `picochat prefs --run {run.path} --collect verifier,rules,hhh`, "
              f"label pairs with `picochat label --run {run.path}`, or send feedback to the server")
    return train, heldout, {"train_pairs": len(train), "heldout_pairs": len(heldout),
                            "too_long": too_long + heldout_long,
                            "sources": {s: len(rows) for s, rows in by_source(train).items()}}


def reward(run: RunDir, preset: Preset, max_steps: int | None = None, resume: bool = False,
           progress: bool = True, **train_overrides) -> dict:
    started = time.time()
    start = run.require_model("sft")
    refuse_overwrite(run, "reward", resume)
    tokenizer = Tokenizer.load(start)
    model = RewardModel.from_chat_model(start, tokenizer.pad_id)
    cfg = override(reward_config(preset), max_steps=max_steps, **train_overrides)
    train, heldout, data = preference_data(run, tokenizer, model.config.max_seq_len, "reward")
    objective = RewardObjective(train, heldout, cfg.batch_size, cfg.grad_accum, cfg.seed, tokenizer.pad_id)

    def describe(trainer) -> str:
        return (f"reward: {model.num_params() / 1e6:.2f}M parameters from {start.name}, {len(train):,} train / "
                f"{len(heldout):,} held-out comparisons {data['sources']}; {cfg.max_steps} steps x "
                f"{cfg.batch_size * cfg.grad_accum * trainer.world} pairs = "
                f"{objective.stream.epochs(cfg.max_steps, trainer.world):.1f} epochs on {on(trainer)}")

    return train_stage(run, "reward", model, objective, cfg, tokenizer, resume=resume, progress=progress,
                       describe=describe, record={"preset": preset.name, "from": start.name, "data": data},
                       started=started, save=save_reward)
