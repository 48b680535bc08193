"""The reward model and DPO on a tiny chat model: each learns the rule pairs well enough to rank
held-out ones it never trained on, the reward model's directory scores the same in transformers,
and a run with no comparisons gets a clear error instead of a training on nothing."""

from __future__ import annotations

import pytest
import torch
from serve_model import make_chat_run

from picochat.config import get_preset
from picochat.prefs import sources
from picochat.prefs.store import Store
from picochat.rundir import PicochatError, RunDir
from picochat.train.dpo import dpo
from picochat.train.reward import RewardScorer, reward

PRESET = get_preset("micro")


@pytest.fixture(scope="module")
def chat_run(prepared_run, tmp_path_factory):
    run = RunDir(make_chat_run(prepared_run, tmp_path_factory.mktemp("prefs") / "run"))
    return run


def test_no_comparisons_is_a_clear_error(chat_run):
    with pytest.raises(PicochatError, match="no comparisons to train on"):
        reward(chat_run, PRESET, max_steps=2, progress=False)
    assert not chat_run.checkpoints("reward").exists()


@pytest.fixture(scope="module")
def with_pairs(chat_run):
    store = Store(chat_run.prefs)
    sources.rule_pairs(store, "train", per_rule=24, seed=0)
    sources.rule_pairs(store, "heldout", per_rule=8, seed=0)
    return chat_run


def test_reward_model_ranks_held_out_pairs_and_transformers_agrees(with_pairs):
    metrics = reward(with_pairs, PRESET, max_steps=60, progress=False, lr=3e-3, batch_size=8, warmup_steps=5)
    assert metrics["heldout_pairs"] == 32
    assert metrics["heldout_accuracy"] >= 0.8, metrics
    folder = with_pairs.model("reward")
    scorer = RewardScorer(folder)
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    store = Store(with_pairs.prefs)
    for c in store.comparisons("heldout")[:6]:
        ours = scorer(c.pair.messages, [c.chosen, c.rejected])
        from picochat.chat import render_ids

        ids = [render_ids(scorer.tokenizer, c.pair.messages + a).ids for a in (c.chosen, c.rejected)]
        T = max(map(len, ids))
        batch = torch.tensor([i + [scorer.tokenizer.pad_id] * (T - len(i)) for i in ids])
        with torch.no_grad():
            theirs = hf(input_ids=batch).logits[:, 0].tolist()
        assert ours == pytest.approx(theirs, abs=1e-4)


def test_dpo_ranks_held_out_pairs_it_never_saw(with_pairs):
    metrics = dpo(with_pairs, PRESET, beta=0.1, max_steps=40, progress=False, lr=1e-3, batch_size=8, warmup_steps=4)
    assert metrics["heldout_accuracy"] >= 0.75, metrics
    assert metrics["heldout_margin"] > 0
    from picochat.engine import load_engine

    assert load_engine(with_pairs.model("dpo")).context == 1024


def test_best_of_n_prints_the_candidate_the_reward_model_ranks_first(with_pairs):
    import io
    import re

    from picochat.sample import sample

    if not (with_pairs.model("reward") / "config.json").exists():
        reward(with_pairs, PRESET, max_steps=10, progress=False, resume=True)
    out = io.StringIO()
    best = sample(with_pairs, "sft", "Who are you?", out=out, best_of=4, temperature=1.5, max_tokens=24, seed=3)
    lines = out.getvalue().splitlines()
    scores = [float(m.group(1)) for line in lines if (m := re.match(r"\[([-+]\d+\.\d+)\]", line))]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert out.getvalue().endswith(f"best of 4: {best}\n")
