"""The speedrun on a micro preset (every stage once, skipped when done, times recorded) and the
report card made from its run: sections, numbers, plots, and runs with parts missing."""

import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from picochat.cli import main
from picochat.config import get_preset
from picochat.model import load_pretrained
from picochat.report import (centered_interval, eval_examples, fmt_count, read_metrics, skills_section, still_right,
                             write_report)
from picochat.rundir import RunDir
from picochat.sample import CHAT_PROMPTS, SAMPLE_PROMPTS
from picochat.speedrun import (MIN_MID_CONVERSATION_ROWS, MIN_STEP_SCALE, fewer_text_rows, scaled, speedrun,
                               step_scale)
from picochat.train.pretrain import seconds_per_step

MIXTURE = {"name": "tiny", "seed": 0, "decontaminate": "none", "val_fraction": 0.1, "sources": [
    {"name": "identity", "generator": "identity", "count": 30},
    {"name": "arithmetic", "generator": "arithmetic", "count": 30}]}
SECTIONS = ["## Hardware and code", "## Stages: time and cost", "## Model", "## Training", "## Evaluations",
            "## Skills", "## Samples", "## Data"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def speedrun_run(prepared_run, tmp_path_factory):
    """The micro speedrun from clean documents: tokenizer, shards, pretrain, samples, sft, evals
    (when picochat.evals is installed), report. The fixture's documents were put in place
    directly, so the data stage is marked done."""
    root = tmp_path_factory.mktemp("speedrun")
    run = root / "run"
    shutil.copytree(prepared_run, run, ignore=shutil.ignore_patterns("tokenizer", "tokens"))
    RunDir(run).record_stage("data", status="done", source="test")
    (root / "mix.json").write_text(json.dumps(MIXTURE))
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # micro models: one thread is faster on shared cores
    try:
        speedrun(RunDir(run), "micro", mixture=str(root / "mix.json"), eval_limit=4, mid_mixture=str(root / "mix.json"))
    finally:
        torch.set_num_threads(before)
    return run


def png_ok(path: Path) -> bool:
    from matplotlib.image import imread

    data = path.read_bytes()
    if not data.startswith(PNG):
        return False
    pixels = imread(path)
    return pixels.shape[0] >= 100 and pixels.shape[1] >= 100


def images(report: Path) -> list[Path]:
    return [report.parent / name for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())]


# --- speedrun -----------------------------------------------------------------------------------
def test_a_slower_machine_trains_every_stage_for_fewer_steps():
    tiny = get_preset("cpu-tiny")
    half = scaled(tiny, 0.5)
    assert (half.train.max_steps, half.sft.max_steps) == \
        (round(tiny.train.max_steps / 2), round(tiny.sft.max_steps / 2))
    assert half.train.lr == tiny.train.lr and half.model == tiny.model     # only the steps change
    slowest = scaled(tiny, 1e-6)
    assert slowest.sft.max_steps == 10 and slowest.sft.warmup_steps <= 10 // 4     # at least 10 steps
    whole = scaled(tiny, 1.0)
    assert (whole.train, whole.mid, whole.mid_text_fraction) == (tiny.train, tiny.mid, tiny.mid_text_fraction)


def test_a_slower_machine_midtrains_on_fewer_text_rows_before_fewer_steps():
    tiny = get_preset("cpu-tiny")
    full_rows = tiny.mid.batch_size
    conversations = full_rows - round(full_rows * tiny.mid_text_fraction)
    for factor in (0.9, 0.5, 0.2):
        mid = scaled(tiny, factor)
        rows = mid.mid.batch_size
        assert rows - round(rows * mid.mid_text_fraction) == conversations       # every conversation row kept
        seen = mid.mid.max_steps * conversations
        assert seen >= MIN_MID_CONVERSATION_ROWS                                  # enough for the skills
        equal_compute = factor * tiny.mid.max_steps * full_rows
        assert mid.mid.max_steps * rows == pytest.approx(equal_compute, rel=0.1) or \
            seen == pytest.approx(MIN_MID_CONVERSATION_ROWS, rel=0.01)            # no more than either needs
    assert scaled(tiny, 0.2).train.max_steps == round(0.2 * tiny.train.max_steps)  # the rest still shrink
    few = replace(tiny, mid=replace(tiny.mid, max_steps=100))                     # fewer than the floor
    assert scaled(few, 0.2).mid.max_steps == 100                                  # keeps its own, no more
    slight = scaled(tiny, 0.9)
    assert slight.mid.max_steps == tiny.mid.max_steps and slight.mid.batch_size < full_rows   # text goes first
    assert fewer_text_rows(16, 0.5, 0.1) == (10, 0.2)                  # a quarter as many text rows, no fewer
    assert fewer_text_rows(16, 0.5, 1.0) == (16, 0.5)
    micro = get_preset("micro")
    assert step_scale(replace(micro, sized_for_step_seconds=0.0)) == 1.0     # not sized to a machine
    assert step_scale(replace(micro, sized_for_step_seconds=1e9)) == 1.0     # any machine is faster
    assert step_scale(replace(micro, sized_for_step_seconds=1e-9)) == MIN_STEP_SCALE
    assert seconds_per_step(micro) > 0


def test_speedrun_runs_every_stage_and_records_its_time(speedrun_run, capsys):
    meta = json.loads((speedrun_run / "run.json").read_text())
    stages = meta["stages"]
    for name in ("tokenizer", "tokenize", "base", "sample", "mid", "factuality", "sft", "sample_sft", "report"):
        assert stages[name]["status"] == "done", name
        assert stages[name]["seconds"] >= 0, name
    timings = stages["speedrun"]["timings"]
    assert {"tokenizer", "tokenize", "base", "sample", "mid", "factuality", "sft", "sample_sft", "report"} <= set(timings)
    assert stages["sft"]["from"] == "mid"
    assert stages["factuality"]["questions"] == 0       # the test corpus has no dictionary: nothing to label
    assert "data" not in timings                          # marked done before: skipped
    assert stages["tokenize"]["tokens"]["train"] > 0
    assert stages["base"]["steps"] == 20 and stages["sft"]["mixture"] == "tiny"
    assert stages["speedrun"]["step_scale"] == 1.0       # micro is not sized to a machine: full steps
    # the preference stages: comparisons collected, a reward model and DPO trained on them, a comparison
    for name in ("prefs", "reward", "dpo", "eval_dpo", "compare"):
        assert stages[name]["status"] == "done", name
    # micro's 64-token context fits a few training pairs and no held-out ones
    assert stages["reward"]["data"]["train_pairs"] > 0 and "accuracy" in stages["reward"]["metrics"]
    assert stages["dpo"]["from"] == "sft" and (speedrun_run / "dpo" / "config.json").exists()
    compared = json.loads((speedrun_run / "evals" / "compare-dpo-sft.json").read_text())
    assert set(compared["temperatures"]) == {"0.0", "1.0"}
    assert all(e["checker"]["n"] == compared["problems"] for e in compared["temperatures"].values())
    # RL from sft, measured on held-out problems before and after, with its curves in the report
    for name in ("rl", "eval_rl"):
        assert stages[name]["status"] == "done", name
    assert stages["rl"]["from"] == "sft" and set(stages["rl"]["tasks"]) == {"unknowable", "identity", "arithmetic", "copying"}
    assert all("heldout_copying_accuracy" in stages["rl"][k] for k in ("before", "metrics"))
    report = (speedrun_run / "report" / "report.md").read_text()
    assert "## RL: verifiable rewards" in report and "| copying |" in report and "(rl.png)" in report
    base = json.loads((speedrun_run / "samples" / "base.json").read_text())
    chat = json.loads((speedrun_run / "samples" / "sft.json").read_text())
    assert [s["prompt"] for s in base["samples"]] == SAMPLE_PROMPTS
    assert [s["prompt"] for s in chat["samples"]] == CHAT_PROMPTS
    assert all(s["output"] for s in base["samples"])      # 60 tokens at temperature 0.6: never empty
    assert (speedrun_run / "report" / "report.md").exists()

    # a second speedrun finds everything done: no stage but the report runs again
    weights = speedrun_run / "base" / "model.safetensors"
    mtime, samples_before = weights.stat().st_mtime_ns, base
    speedrun(RunDir(speedrun_run), "micro")
    out = capsys.readouterr().out
    for title in ("tokenizer", "pretrain", "sample from the base model", "sft", "chat with the fine-tuned"):
        assert re.search(rf"=== {title}.*: already done, skipped ===", out), title
    assert weights.stat().st_mtime_ns == mtime
    assert json.loads((speedrun_run / "samples" / "base.json").read_text()) == samples_before
    assert "picochat chat --run" in out and "picochat serve --run" in out and "report.md" in out
    after = json.loads((speedrun_run / "run.json").read_text())["stages"]
    assert after["speedrun"]["timings"]["base"] == timings["base"]   # the first run's time is kept


def test_speedrun_redoes_samples_of_a_retrained_model(speedrun_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(speedrun_run, run)
    stored = run / "samples" / "sft.json"
    weights = run / "sft" / "model.safetensors"
    os.utime(stored, (0, 0))                              # the model is newer than its samples
    speedrun(RunDir(run), "micro")
    out = capsys.readouterr().out
    assert "=== chat with the fine-tuned model ===" in out
    assert stored.stat().st_mtime >= weights.stat().st_mtime


# --- the report card ----------------------------------------------------------------------------
def test_report_has_every_section_with_the_runs_numbers(speedrun_run):
    path = write_report(RunDir(speedrun_run), price_per_hour=3600.0)   # $1 per second: cost = time
    text = path.read_text()
    assert path == speedrun_run / "report" / "report.md"
    assert [s for s in SECTIONS if s not in text] == []
    assert "could not be built" not in text
    stages = json.loads((speedrun_run / "run.json").read_text())["stages"]
    seconds = stages["base"]["seconds"]
    assert re.search(rf"\| pretrain \| done \| [^|]+ \| \${seconds:.2f} \|", text)
    model = load_pretrained(speedrun_run / "base")
    assert f"{model.num_params():,}" in text and f"{model.num_params(embeddings=False):,}" in text
    assert fmt_count(model.flops_per_token(64)) in text                  # micro trains at 64 tokens
    assert f"{fmt_count(20 * 4 * 64)} (20 steps)" in text                # 20 steps x 4 rows x 64 tokens
    val_bpb = stages["base"]["metrics"]["val_bpb"]
    assert f"val_bpb {val_bpb:.4f} (step 20)" in text
    stored = json.loads((speedrun_run / "samples" / "sft.json").read_text())["samples"]
    assert all(f"user: {s['prompt']}\nassistant: {s['output']}" in text for s in stored)
    assert "stored by the speedrun" in text
    assert "_not run_ (no data/stats.json" in text                       # documents placed directly
    names = [p.name for p in images(path)]
    assert {"loss.png", "lr.png", "throughput.png"} <= set(names)
    assert all(png_ok(p) for p in images(path))


def test_eval_table_across_stages_with_aggregates_and_plot(speedrun_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(speedrun_run, run)

    def task(value, chance, family="multiple_choice", n=40):
        return {"family": family, "metric": "accuracy", "n": n, "value": value, "ci95": [value - 0.1, value + 0.1],
                "chance": chance, "centered": (value - chance) / (1 - chance), "seconds": 2.5,
                "examples": [{"prompt": "Q: 2+2?", "answer": "4", "target": "4", "correct": True}]}

    base = {"stage": "base", "model": str(run / "base"), "updated": "2026-11-22T10:00:00", "seconds": 5.0,
            "tasks": {"arc_easy": task(0.40, 0.25), "hellaswag": task(0.30, 0.25)},
            "aggregate": {"name": "CORE", "value": 0.1333, "tasks": ["arc_easy", "hellaswag"]}}
    sft = {"stage": "sft", "model": str(run / "sft"), "updated": "2026-11-22T10:05:00", "seconds": 7.5,
           "tasks": {"arc_easy": task(0.45, 0.25), "arithmetic": task(0.2, 0.0, "generative")},
           "aggregate": {"name": "ChatCORE", "value": 0.2333, "tasks": ["arc_easy", "arithmetic"]}}
    meta = json.loads((run / "run.json").read_text())
    for stage in ("eval_base", "eval_mid", "eval_sft"):   # as if evaluated with `picochat eval`, not the speedrun
        meta["stages"].pop(stage, None)
    meta["stages"].pop("rl", None)                        # its per-task table would share the rows' names
    (run / "run.json").write_text(json.dumps(meta))
    (run / "evals").mkdir(exist_ok=True)
    for other in ("mid", "dpo", "rl"):                         # two stages evaluated: base and sft
        (run / "evals" / f"{other}.json").unlink(missing_ok=True)
    (run / "evals" / "base.json").write_text(json.dumps(base))
    (run / "evals" / "sft.json").write_text(json.dumps(sft))
    text = write_report(RunDir(run)).read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}
    assert rows["arc_easy"] == ["multiple_choice", "accuracy", "0.250", "0.400 [0.300, 0.500] (n=40)", "0.200",
                                "0.450 [0.350, 0.550] (n=40)", "0.267"]
    assert rows["hellaswag"][-2:] == ["-", "-"]                       # not in the chat suite
    assert rows["arithmetic"][3:5] == ["-", "-"] and rows["arithmetic"][-1] == "0.200"
    assert rows["**CORE**"][-3] == "**0.1333**" and rows["**ChatCORE**"][-1] == "**0.2333**"
    assert re.search(r"\| eval base \| done \| 5\.0 s \|", text)    # the tasks' own seconds add up
    assert "base CORE **0.1333**" in text and "sft ChatCORE **0.2333**" in text
    assert png_ok(run / "report" / "evals.png") and "(evals.png)" in text
    low, high = centered_interval(base["tasks"]["arc_easy"])     # [0.3, 0.5] around 0.4, chance 0.25
    assert low == pytest.approx(0.2 - 0.05 / 0.75) and high == pytest.approx(0.25 / 0.75 - 0.2)


def test_report_of_a_base_only_run_says_what_did_not_run(speedrun_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(speedrun_run, run, ignore=shutil.ignore_patterns("sft", "sft.jsonl", "samples", "evals",
                                                                       "tokens", "report", "reward", "dpo", "prefs",
                                                                       "reward.jsonl", "dpo.jsonl", "rl", "rl.jsonl"))
    meta = json.loads((run / "run.json").read_text())
    for stage in ("sft", "sample", "sample_sft", "eval_base", "eval_sft", "report", "tokenize", "prefs", "reward",
                  "dpo", "eval_dpo", "compare", "rl", "eval_rl"):
        meta["stages"].pop(stage, None)
    (run / "run.json").write_text(json.dumps(meta))
    text = write_report(RunDir(run)).read_text()
    assert "could not be built" not in text
    assert re.search(r"\| sft \| not run \|", text) and re.search(r"\| eval base \| not run \|", text)
    assert "## Evaluations\n\n_not run_" in text and "Token shards: _not run_" in text
    assert "### base" in text and "### sft" not in text
    assert "generated for this report" in text        # no stored samples: made at seed 0
    assert all(png_ok(p) for p in images(run / "report" / "report.md"))

    empty = RunDir(tmp_path / "empty")
    text = write_report(empty).read_text()
    assert [s for s in SECTIONS if s not in text] == [] and "could not be built" not in text
    assert text.count("_not run_") >= 5 and not list((empty.report).glob("*.png"))


def test_skills_say_how_many_right_answers_each_stage_kept(tmp_path):
    settings = {"version": 1, "limit": 4, "seed": 0}

    def calculator(right, **changed):
        return {"tasks": {"calculator": {"value": right.count("1") / 4, "ci95": [0, 1], "n": 4, "right": right,
                                         "settings": {**settings, **changed}}}}
    evals = {"mid": calculator("1101"), "sft": calculator("1011"), "rl": calculator("1111", limit=5)}
    text = skills_section(RunDir(tmp_path / "run"), evals)
    row = next(line for line in text.splitlines() if line.startswith("| calculator: still right"))
    assert [c.strip() for c in row.split("|")[2:-1]] == ["-", "2/3 0.667 [0.208, 0.939]", "-"]   # rl: other problems
    assert still_right({"right": "0000", "settings": settings}, {"right": "1111", "settings": settings}) is None
    assert still_right(evals["mid"]["tasks"]["calculator"], None) is None


def test_resumed_metrics_keep_the_last_record_of_each_step(tmp_path):
    first = [{"step": s, "loss": 10.0 - s, "lr": 0.1, "tokens_per_s": 100.0, "mfu": 0.1} for s in (1, 2, 3, 4)]
    second = [{"step": s, "loss": 5.0 - s, "lr": 0.2, "tokens_per_s": 200.0, "mfu": 0.2} for s in (3, 4, 5)]
    lines = [json.dumps(r) for r in first] + [json.dumps({"step": 4, "val_bpb": 3.0}), '{"step": 5, "lo']
    lines += [json.dumps(r) for r in second] + [json.dumps({"step": 4, "val_bpb": 2.5})]
    path = tmp_path / "pretrain.jsonl"
    path.write_text("\n".join(lines) + "\n")
    m = read_metrics(path)
    assert [r["step"] for r in m.train] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in m.train] == [9.0, 8.0, 2.0, 1.0, 0.0]
    assert m.evals == [{"step": 4, "val_bpb": 2.5}]
    assert (m.dropped, m.unreadable) == (3, 1)

    run = RunDir(tmp_path / "run")
    run.metrics.mkdir()
    shutil.copy(path, run.metrics / "pretrain.jsonl")
    text = write_report(run).read_text()
    assert "| base | 5 | 5 | 0.0000 | val_bpb 2.5000 (step 4) | 200 | 20.0% |" in text
    assert "3 records of resumed steps replaced" in text and "1 unreadable lines skipped" in text


def test_report_cli_errors(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path / "nothing")]) == 2
    assert "no run at" in capsys.readouterr().err
    RunDir(tmp_path / "run")
    assert main(["report", "--run", str(tmp_path / "run"), "--price-per-hour", "-1"]) == 2
    assert "--price-per-hour" in capsys.readouterr().err


def test_speedrun_evaluates_both_stages_and_the_report_shows_it(speedrun_run):
    evals = pytest.importorskip("picochat.evals")
    stages = json.loads((speedrun_run / "run.json").read_text())["stages"]
    text = (speedrun_run / "report" / "report.md").read_text()
    for stage, suite, aggregate in (("base", "core", "CORE"), ("mid", "mid", "ChatCORE"), ("sft", "chat", "ChatCORE")):
        results = json.loads((speedrun_run / "evals" / f"{stage}.json").read_text())
        assert set(evals.suite_tasks(suite)) <= set(results["tasks"])
        assert stages[f"eval_{stage}"]["status"] == "done" and stages[f"eval_{stage}"]["suite"] == suite
        assert results["aggregate"]["name"] == aggregate and f"| **{aggregate}** |" in text
        table = text.split("## Evaluations")[1].split("\n## ")[0]
        for name, task in results["tasks"].items():
            row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
            if task.get("skipped"):
                assert "skipped" in row
            elif task["family"] != "bpb":
                assert f"{task['value']:.3f}" in row and f"(n={task['n']})" in row


def test_scored_examples_show_a_wrong_answer_where_a_stage_gave_one():
    def task(*examples):
        return {"examples": [{"prompt": f"q{i}", "answer": f"a{i}", "target": "t", "correct": ok}
                             for i, ok in examples]}
    text = eval_examples({"sft": {"tasks": {"calculator": task((0, True), (1, False)), "identity": task((2, True))}}})
    assert "**sft / calculator** (wrong)" in text and "prompt: q1" in text and "prompt: q0" in text
    assert "**sft / identity** (correct)" in text and "(wrong)" not in text.split("identity")[1]
