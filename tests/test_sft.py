"""SFT: generators, mixtures (weights, caps, decontamination, held-out split), the objective's
batches and mask, and `picochat sft` end to end on a micro base model (exact resume included)."""

import json
import random
import re
import shutil

import pytest
import torch

from picochat.chat import render_ids
from picochat.cli import main
from picochat.rundir import PicochatError
from picochat.sft_data import generators
from picochat.sft_data.mixture import build_mixture, in_val, parse_mixture, read_rows
from picochat.tasks import TASKS, identity
from picochat.tokenizer import Tokenizer
from picochat.train import sft as sft_module
from picochat.train.sft import IGNORE, ChatObjective, collate, pack_first_fit

GENERATED = {"name": "gen", "seed": 3, "decontaminate": "none", "val_fraction": 0.05, "sources": [
    {"name": "identity", "generator": "identity", "count": 40},
    {"name": "arithmetic", "generator": "arithmetic", "count": 60, "weight": 2.0},
    {"name": "spelling", "generator": "spelling", "count": 40, "weight": 0.5},
    {"name": "multiturn", "generator": "multiturn", "count": 40}]}


@pytest.fixture(scope="module")
def tok(prepared_run) -> Tokenizer:
    return Tokenizer.load(prepared_run / "tokenizer")


# --- generators ---------------------------------------------------------------------------------
def test_multi_digit_products_call_the_calculator_with_the_right_result():
    convs = TASKS["arithmetic"].conversations(random.Random(0), 400)
    called = direct = 0
    for conv in convs:
        if len(conv) == 4:
            call = conv[1]["tool_calls"][0]["function"]
            assert call["name"] == "calculator" and set(call["arguments"]) == {"expression"}
            a, op, b = re.fullmatch(r"(\d+)([*+/-])(\d+)", call["arguments"]["expression"]).groups()
            exact = {"*": int(a) * int(b), "+": int(a) + int(b), "-": int(a) - int(b), "/": int(a) / int(b)}[op]
            assert float(conv[2]["content"]) == pytest.approx(exact, rel=1e-11)
            assert conv[2]["content"] in conv[3]["content"]
            called += 1
        else:   # answered from memory: single digits only
            a, op, b, r = re.fullmatch(r"(\d) ([*+]) (\d) = (\d+)\.", conv[1]["content"]).groups()
            assert int(r) == (int(a) * int(b) if op == "*" else int(a) + int(b))
            direct += 1
        if len(conv) == 2:
            continue
        q = conv[0]["content"]
        if re.search(r"\d{2,}", q) and ("*" in q or "x" in q or "times" in q or "multipl" in q or "product" in q):
            assert conv[1]["tool_calls"], q   # every multi-digit product goes to the calculator
    assert called > 250 and direct > 20


def test_generated_tool_results_are_what_the_calculator_tool_returns():
    calculator = pytest.importorskip("picochat.tools.calculator")
    for conv in TASKS["arithmetic"].conversations(random.Random(5), 300):
        if len(conv) == 4:
            expression = conv[1]["tool_calls"][0]["function"]["arguments"]["expression"]
            assert conv[2]["content"] == calculator.calculate(expression)


def test_identity_answers_name_picochat_and_the_eval_prompts_are_held_out():
    convs = TASKS["identity"].conversations(random.Random(0), 2000)
    asked = {identity.normalize_prompt(c[-2]["content"]) for c in convs}
    assert all("picochat" in c[-1]["content"].lower() for c in convs)
    held_out = {identity.normalize_prompt(p) for p in identity.IDENTITY_EVAL_PROMPTS[1:]}
    assert len(held_out) == len(identity.IDENTITY_EVAL_PROMPTS) - 1 > 50 and not asked & held_out
    assert identity.normalize_prompt("who are you?") in asked   # the main question is trained
    assert len(asked) > 300                                       # many surface forms


def test_letter_counts_are_right():
    for conv in TASKS["spelling"].conversations(random.Random(1), 300):
        m = re.search(r'The letter "(.)" appears (once|twice|\d+ times) in "(\w+)"', conv[1]["content"])
        if m:
            letter, times, word = m.groups()
            n = {"once": 1, "twice": 2}.get(times) or int(times.split()[0])
            assert word.lower().count(letter) == n
        m = re.search(r'^(\w+) is spelled ([\w-]+)\.$', conv[1]["content"])
        if m:
            assert m.group(2).replace("-", "") == m.group(1)


# --- mixtures ----------------------------------------------------------------------------------
def test_mixture_file_errors_are_clear():
    with pytest.raises(PicochatError, match="unknown generator"):
        parse_mixture({"sources": [{"name": "x", "generator": "nope"}]})
    with pytest.raises(PicochatError, match="exactly one of"):
        parse_mixture({"sources": [{"name": "x", "generator": "identity", "source": "chatterbot"}]})
    with pytest.raises(PicochatError, match="unknown field"):
        parse_mixture({"sources": [{"name": "x", "generator": "identity", "wieght": 2}]})
    with pytest.raises(PicochatError, match="non-empty"):
        parse_mixture({"sources": []})


def test_default_mixture_keeps_sharegpt_off_and_flagged():
    from picochat.sft_data.mixture import load_mixture

    mix = load_mixture("default")
    share = next(s for s in mix.sources if s.source == "sharegpt")
    assert not share.enabled and "UNCLEAR" in share.licence
    assert {s.generator for s in mix.sources if s.generator} == set(generators.GENERATORS)


def test_build_weights_caps_split_and_decontamination(tok, tmp_path):
    # an "evaluation set" holding one of the identity answers: those conversations must go
    contaminated = identity.IDENTITY_ANSWERS["who"][0]
    evalfile = tmp_path / "eval.txt"
    evalfile.write_text(contaminated + "\n")
    mix = parse_mixture({**GENERATED, "decontaminate": str(evalfile)})
    stats = build_mixture(mix, tok, 1000, tmp_path / "data", progress=False)
    train = read_rows(tmp_path / "data" / "train.jsonl")
    val = read_rows(tmp_path / "data" / "val.jsonl")
    s = stats["sources"]
    assert s["identity"]["contaminated"] > 0
    assert not any(contaminated in m["content"] for r in train + val for m in r["messages"])
    assert s["arithmetic"]["rows"] == 2 * s["arithmetic"]["kept"]              # weight 2
    assert s["spelling"]["rows"] == round(0.5 * s["spelling"]["kept"])          # weight 0.5
    for name, st in s.items():
        assert st["kept"] + st["val"] + st["contaminated"] + st["too_long"] + st["invalid"] == st["read"]
        assert sum(r["source"] == name for r in train) == st["rows"]
    assert stats["train_rows"] == len(train) and stats["val_rows"] == len(val) > 0
    # the held-out split is by content: nothing in val is trained on
    keys = {json.dumps(r["messages"], sort_keys=True) for r in train}
    assert not any(json.dumps(r["messages"], sort_keys=True) in keys for r in val)
    assert all(in_val(r["messages"], 0.05) for r in val)
    # a short context drops what cannot fit and keeps the rest whole
    small = build_mixture(parse_mixture(GENERATED), tok, 60, tmp_path / "small", progress=False)
    assert sum(st["too_long"] for st in small["sources"].values()) > 0
    assert all(len(render_ids(tok, r["messages"])) <= 60 for r in read_rows(tmp_path / "small" / "train.jsonl"))


def test_jsonl_source_reads_the_runs_file_skipping_a_torn_line(tok, tmp_path):
    conv = [{"role": "user", "content": "What does the word \"quern\" mean?"},
            {"role": "assistant", "content": "I don't know what \"quern\" means."}]
    (tmp_path / "factuality").mkdir()
    (tmp_path / "factuality" / "conversations.jsonl").write_text(
        json.dumps({"messages": conv}) + "\n" + '{"messages": [{"role": "us')      # cut short by a crash
    mix = parse_mixture({"name": "j", "decontaminate": "none", "val_fraction": 0.0, "sources": [
        {"name": "factuality", "source": "jsonl", "options": {"path": "factuality/conversations.jsonl"}}]})
    stats = build_mixture(mix, tok, 200, tmp_path / "data", progress=False, base=tmp_path)
    assert stats["sources"]["factuality"]["kept"] == 1
    assert read_rows(tmp_path / "data" / "train.jsonl")[0]["messages"] == conv
    with pytest.raises(PicochatError, match="no training conversations"):     # no file yet: no rows
        build_mixture(mix, tok, 200, tmp_path / "none", progress=False, base=tmp_path / "elsewhere")


def test_chatterbot_source_reads_the_package():
    pytest.importorskip("chatterbot_corpus")
    from picochat.sft_data.sources import chatterbot

    convs = list(chatterbot())
    assert len(convs) > 1000
    assert all(c[0]["role"] == "user" and c[-1]["role"] == "assistant" for c in convs)
    # the files claiming another identity are left out
    assert not any("written in Python" in m["content"] for c in convs for m in c)


def test_sharegpt_reader_recovers_whole_objects_from_a_truncated_file(tmp_path):
    from picochat.sft_data.sources import sharegpt

    objs = [{"id": "a", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
            {"id": "b", "conversations": [{"from": "gpt", "value": "stray"}, {"from": "human", "value": "Q?"},
                                          {"from": "gpt", "value": "A."}, {"from": "human", "value": "dangling"}]},
            {"id": "c", "conversations": [{"from": "human", "value": "cut"}, {"from": "gpt", "value": "off"}]}]
    text = json.dumps(objs, indent=2)
    path = tmp_path / "share.json"
    path.write_text(text[: text.rindex('"off"')])  # truncated inside the last object
    convs = list(sharegpt(path))
    assert convs == [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                     [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]]


# --- the objective --------------------------------------------------------------------------------
@pytest.mark.parametrize("pack", [None, 400])
def test_batches_are_pure_and_split_the_global_batch_across_ranks(tok, pack):
    convs = generators.multiturn(random.Random(0), 50) + TASKS["spelling"].conversations(random.Random(0), 50)
    rendered = [render_ids(tok, c) for c in convs]
    obj = ChatObjective(rendered, [], batch_size=3, grad_accum=2, seed=7, pad_id=tok.pad_id,
                        pack_tokens=pack)
    one = [obj.row(k) for k in range(12 * 5)]
    assert sorted(map(id, one[:100])) != sorted(map(id, one[100:]))  # epochs reshuffle
    for step in (0, 5, 40):   # 40 steps x 12 rows crosses several epochs
        whole = [obj.batch(step, micro, 0, 1)["input_ids"] for micro in range(2)]
        split = [obj.batch(step, micro, rank, 2)["input_ids"] for micro in range(2) for rank in range(2)]
        again = [obj.batch(step, micro, rank, 2)["input_ids"] for micro in range(2) for rank in range(2)]
        assert all(torch.equal(a, b) for a, b in zip(split, again))
        rows_2 = {tuple(r[r != tok.pad_id].tolist()) for b in split for r in b}
        first = step * 12    # world 2: 12 rows per step; world 1 takes 6 of the same stream
        assert rows_2 == {tuple(obj.row(first + i).ids[:-1]) for i in range(12)}
        assert {tuple(r[r != tok.pad_id].tolist()) for b in whole for r in b} == \
            {tuple(obj.row(step * 6 + i).ids[:-1]) for i in range(6)}


def test_packing_puts_each_whole_conversation_in_one_row_once_per_epoch(tok):
    convs = generators.multiturn(random.Random(0), 60) + TASKS["arithmetic"].conversations(random.Random(0), 60)
    rendered = [render_ids(tok, c) for c in convs]
    obj = ChatObjective(rendered, [], batch_size=2, grad_accum=1, seed=1, pad_id=tok.pad_id, pack_tokens=600)
    for epoch in range(2):
        rows = obj._epoch_rows(epoch)
        assert sorted(i for row in rows for i in row) == list(range(len(rendered)))
        assert all(sum(len(rendered[i]) for i in row) <= 600 for row in rows)
        assert len(rows) < len(rendered) / 2        # several conversations per row
    k = len(obj._epoch_rows(0)) + 1                  # second row of epoch 1
    row = obj.row(k)
    assert row.ids == [t for i in obj._epoch_rows(1)[1] for t in rendered[i].ids]
    batch = collate([row], tok.pad_id)
    trained = [int(t) for t in batch["targets"][0] if t != IGNORE]
    # every conversation's assistant tokens, none of the next one's <|bos|> or user text
    assert tok.decode(trained) == "".join(
        tok.decode([t for t, m in zip(rendered[i].ids, rendered[i].mask) if m]) for i in obj._epoch_rows(1)[1])
    assert obj.epochs(len(obj._epoch_rows(0)) + len(obj._epoch_rows(1)) // 2) == pytest.approx(1.5, abs=0.05)


def test_first_fit_packing_fills_gaps_from_later_conversations_and_keeps_their_order():
    # closing a row at the first conversation that does not fit: [6], [6, 4], [4]
    assert pack_first_fit([0, 1, 2, 3], [6, 6, 4, 4], capacity=10) == [[0, 2], [1, 3]]
    assert pack_first_fit([0, 1, 2], [10, 3, 7], capacity=10) == [[0], [1, 2]]   # a full row closes
    rng = random.Random(0)
    lengths = [rng.randint(20, 120) for _ in range(3000)]
    rows = pack_first_fit(list(range(3000)), lengths, capacity=256, open_rows=4)
    assert sorted(i for row in rows for i in row) == list(range(3000))
    assert all(sum(lengths[i] for i in row) <= 256 for row in rows)
    assert sum(lengths) / len(rows) > 0.95 * 256
    # each conversation lands within a few rows of where the shuffled order put it
    per_row = 3000 / len(rows)
    assert max(abs(k - i / per_row) for k, row in enumerate(rows) for i in row) < 20


def test_collate_pads_and_trains_only_on_assistant_tokens(tok):
    convs = [TASKS["arithmetic"].conversations(random.Random(2), 1)[0], [{"role": "user", "content": "Hi"},
                                                             {"role": "assistant", "content": "Hello!"}]]
    rows = [render_ids(tok, c) for c in convs]
    batch = collate(rows, tok.pad_id)
    T = max(len(r) for r in rows) - 1
    assert batch["input_ids"].shape == batch["targets"].shape == (2, T)
    for b, r in enumerate(rows):
        targets = batch["targets"][b]
        trained = [int(t) for t in targets if t != IGNORE]
        assert tok.decode(trained) == tok.decode([i for i, m in zip(r.ids, r.mask) if m])
        assert (batch["input_ids"][b, len(r) - 1:] == tok.pad_id).all()
        assert (targets[len(r) - 1:] == IGNORE).all()
    assert tok.decode([int(t) for t in batch["targets"][1] if t != IGNORE]) == "Hello!<|end|>"


# --- picochat sft, end to end ---------------------------------------------------------------------
@pytest.fixture
def one_thread():
    """Micro models train ~10x faster on one thread when the 2 cores are shared (measured 75 vs
    785 ms/step): two OpenMP threads wait on each other at every small op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sft_losses(run) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics" / "sft.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.fixture(scope="module")
def base_run(prepared_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("sft") / "run"
    shutil.copytree(prepared_run, run)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread
    try:
        assert main(["pretrain", "--run", str(run), "--preset", "micro", "--max-steps", "20",
                     "--dtype", "fp32"]) == 0
    finally:
        torch.set_num_threads(before)
    return run


def test_sft_makes_a_chat_model_directory_and_resumes_exactly(base_run, tmp_path, monkeypatch, one_thread):
    mixture = tmp_path / "mix.json"
    mixture.write_text(json.dumps(GENERATED))
    steady, crashed = tmp_path / "steady", tmp_path / "crashed"
    shutil.copytree(base_run, steady)
    shutil.copytree(base_run, crashed)
    args = ["--preset", "micro", "--mixture", str(mixture), "--dtype", "fp32", "--max-steps", "12",
            "--set", "ckpt_every=4", "--set", "eval_every=6"]
    assert main(["sft", "--run", str(steady), *args]) == 0

    sft_dir = steady / "sft"
    config = json.loads((sft_dir / "tokenizer_config.json").read_text())
    assert "<|tool_call|>" in config["chat_template"] and config["eos_token"] == "<|end|>"
    assert json.loads((sft_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    stage = json.loads((steady / "run.json").read_text())["stages"]["sft"]
    assert stage["status"] == "done" and stage["steps"] == 12 and stage["mixture"] == "gen"
    assert "val_loss" in stage["metrics"]
    losses = sft_losses(steady)
    assert sorted(losses) == list(range(1, 13))
    # the sft model is not the base model
    from safetensors.torch import load_file
    a, b = load_file(base_run / "base" / "model.safetensors"), load_file(sft_dir / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)

    original = sft_module.ChatObjective.batch

    def crash_at_step_7(self, step, micro, rank, world, model=None):
        if step == 6:
            raise RuntimeError("simulated crash")
        return original(self, step, micro, rank, world, model)

    monkeypatch.setattr(sft_module.ChatObjective, "batch", crash_at_step_7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["sft", "--run", str(crashed), *args])
    assert not (crashed / "sft" / "config.json").exists()
    monkeypatch.setattr(sft_module.ChatObjective, "batch", original)
    assert main(["sft", "--run", str(crashed), *args]) == 2      # checkpoints there: needs --resume
    assert main(["sft", "--run", str(crashed), *args, "--resume"]) == 0
    assert sft_losses(crashed) == losses                            # bit for bit


def test_sft_without_a_base_model_says_what_to_run(fresh_run, capsys):
    assert main(["sft", "--run", str(fresh_run), "--preset", "micro"]) == 2
    assert "picochat pretrain" in capsys.readouterr().err


def test_sft_learns_the_identity(base_run, tmp_path, one_thread):
    """Enough steps on identity conversations alone: the micro model answers with its name."""
    from picochat.chat import render_prompt
    from picochat.engine import SamplingParams, generate
    from picochat.model import load_pretrained

    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    mixture = tmp_path / "identity.json"
    mixture.write_text(json.dumps({"decontaminate": "none", "sources": [
        {"name": "identity", "generator": "identity", "count": 600}]}))
    # no --preset: the recipe of the preset the base model was trained with (micro)
    assert main(["sft", "--run", str(run), "--mixture", str(mixture), "--dtype", "fp32",
                 "--max-steps", "200", "--set", "lr=3e-3", "--set", "batch_size=8", "--set", "eval_every=0",
                 "--set", "ckpt_every=0", "--set", "log_every=50"]) == 0
    assert json.loads((run / "run.json").read_text())["stages"]["sft"]["preset"] == "micro"
    model = load_pretrained(run / "sft").eval()
    tok = Tokenizer.load(run / "sft")
    prompt = render_prompt(tok, [{"role": "user", "content": "What's your name?"}])
    out = [t for (t,) in generate(model, [prompt], SamplingParams(temperature=0, max_tokens=30),
                                  stop_ids={tok.end_id}) if t is not None]
    assert "picochat" in tok.decode(out).lower()
