"""Mid-training: batches mix web-text windows and packed conversations, `picochat midtrain`
writes runs/R/mid (resuming exactly), and SFT starts from it."""

import json
import shutil

import pytest
import torch

from picochat.cli import main
from picochat.data.shards import TokenShards
from picochat.sft_data.mixture import build_mixture, parse_mixture, read_rows
from picochat.tokenizer import Tokenizer
from picochat.train import midtrain as mid_module
from picochat.train.loss import IGNORE
from picochat.train.midtrain import MixedObjective
from picochat.train.pretrain import NextTokenObjective
from picochat.train.sft import ChatObjective, render_rows

MIXTURE = {"name": "tinymid", "seed": 2, "decontaminate": "none", "val_fraction": 0.05, "sources": [
    {"name": "copying", "generator": "copying", "count": 60},
    {"name": "arithmetic", "generator": "arithmetic", "count": 40},
    {"name": "unknowable", "generator": "unknowable", "count": 20}]}
ARGS = ["--preset", "micro", "--dtype", "fp32", "--max-steps", "8", "--set", "ckpt_every=4",
        "--set", "eval_every=4", "--set", "log_every=1"]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)       # micro models: two threads only wait on each other
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base_run(prepared_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("mid") / "run"
    shutil.copytree(prepared_run, run)
    assert main(["pretrain", "--run", str(run), "--preset", "micro", "--max-steps", "6", "--dtype", "fp32"]) == 0
    return run


def mid_losses(run) -> dict[int, tuple]:
    records = [json.loads(line) for line in (run / "metrics" / "mid.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r["text_loss"], r["chat_loss"]) for r in records if "loss" in r}


def test_batches_hold_text_windows_then_conversations(prepared_run, tmp_path):
    tok = Tokenizer.load(prepared_run / "tokenizer")
    stats = build_mixture(parse_mixture(MIXTURE), tok, 65, tmp_path / "data", progress=False)
    assert stats["train_rows"] > 0
    convs = render_rows(read_rows(tmp_path / "data" / "train.jsonl"), tok, 65, "train")
    text = NextTokenObjective(TokenShards(prepared_run / "data" / "tokens", "train"),
                              TokenShards(prepared_run / "data" / "tokens", "val"), 64, 3, 1, 0, 256,
                              tok.byte_lengths())
    objective = MixedObjective(text, ChatObjective(convs, [], 2, 1, 0, tok.pad_id, pack_tokens=65), tok.pad_id)
    batch = objective.batch(5, 0, 0, 1)
    assert batch["input_ids"].shape == batch["targets"].shape == (5, 64)
    assert (batch["targets"][:3] != IGNORE).all()                     # web text: every token a target
    chat_targets = batch["targets"][3:]
    assert (chat_targets == IGNORE).any() and (chat_targets != IGNORE).any()   # the assistant's tokens only
    assert torch.equal(objective.batch(5, 0, 0, 1)["input_ids"], batch["input_ids"])   # pure in the step


def test_midtrain_writes_the_mid_stage_resumes_exactly_and_sft_starts_there(base_run, tmp_path, monkeypatch,
                                                                             one_thread):
    mixture = tmp_path / "mix.json"
    mixture.write_text(json.dumps(MIXTURE))
    steady, crashed = tmp_path / "steady", tmp_path / "crashed"
    shutil.copytree(base_run, steady)
    shutil.copytree(base_run, crashed)
    args = [*ARGS, "--mixture", str(mixture)]
    assert main(["midtrain", "--run", str(steady), *args]) == 0
    stage = json.loads((steady / "run.json").read_text())["stages"]["mid"]
    assert stage["status"] == "done" and stage["mixture"] == "tinymid" and stage["text_fraction"] == 0.5
    assert {"val_bpb", "val_loss"} <= set(stage["metrics"])           # still models documents; and chats
    losses = mid_losses(steady)
    assert sorted(losses) == list(range(1, 9))

    original = mid_module.MixedObjective.batch

    def crash_at_step_6(self, step, micro, rank, world, model=None):
        if step == 5:
            raise RuntimeError("simulated crash")
        return original(self, step, micro, rank, world, model)

    monkeypatch.setattr(mid_module.MixedObjective, "batch", crash_at_step_6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["midtrain", "--run", str(crashed), *args])
    monkeypatch.setattr(mid_module.MixedObjective, "batch", original)
    assert main(["midtrain", "--run", str(crashed), *args, "--resume"]) == 0
    assert mid_losses(crashed) == losses                              # bit for bit

    assert main(["sft", "--run", str(steady), "--preset", "micro", "--mixture", str(mixture), "--dtype", "fp32",
                 "--max-steps", "2"]) == 0
    assert json.loads((steady / "run.json").read_text())["stages"]["sft"]["from"] == "mid"


def test_midtrain_without_a_base_model_says_what_to_run(fresh_run, capsys):
    assert main(["midtrain", "--run", str(fresh_run), "--preset", "micro"]) == 2
    assert "picochat pretrain" in capsys.readouterr().err
