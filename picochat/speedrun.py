"""The main job: the whole chain on one preset, from documents to a report card.

    picochat speedrun --run runs/demo --preset cpu-tiny

data build -> tokenizer train -> data tokenize -> pretrain -> sample base -> midtrain
-> factuality labels -> sft -> sample sft -> eval base -> eval mid -> eval sft
-> comparisons (verifier, rules, hhh_alignment) -> reward model -> dpo -> eval dpo
-> compare dpo with sft (blind, held-out) -> rl (GRPO from sft) -> eval rl -> report

Each stage is skipped when its artifacts are complete, so a killed speedrun picks up where it
stopped: pretraining and SFT resume from their newest checkpoint, the data build from its
finished tasks, and an eval from the tasks already in runs/R/evals/<stage>.json. Each stage's
wall time goes into run.json, which the report card turns into time and cost per stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from picochat.config import Preset, TrainConfig, get_preset
from picochat.rundir import RunDir, read_json


class Stage(NamedTuple):
    name: str                         # its entry in run.json
    title: str
    done: Callable[[], bool]          # artifacts complete: skip
    work: Callable[[], dict | None]   # run it; returns what to record beside its time
    records_itself: bool = False      # the stage writes its own run.json entry (with its seconds)


def speedrun(run: RunDir, preset_name: str, source: str | None = None, workers: int = 2,
             mixture: str | None = None, eval_limit: int | None = None, mid_mixture: str | None = None) -> None:
    started = time.time()
    before = run.read_meta().get("stages", {}).get("speedrun") or {}
    timings = dict(before.get("timings") or {})
    preset = get_preset(preset_name)
    scale = before.get("step_scale") or step_scale(preset)
    if scale < 1:
        preset = scaled(preset, scale)
        print(f"speedrun: a training step here takes longer than on the machine {preset.name}'s steps "
              f"were sized for: every training stage runs {scale:.0%} of its steps "
              f"(pretrain {preset.train.max_steps}, sft {preset.sft.max_steps}), except mid-training, which keeps "
              f"{preset.mid.max_steps} steps to see the conversations its skills need and drops web text to "
              f"{preset.mid_text_fraction:.0%} of its {preset.mid.batch_size}-row batches",
              flush=True)
    record = {"preset": preset.name, "step_scale": scale, "mid_text_fraction": preset.mid_text_fraction}
    for stage in plan(run, preset, source, workers, mixture, eval_limit, mid_mixture, scale):
        if stage.done():
            print(f"=== {stage.title}: already done, skipped ===", flush=True)
            continue
        banner(stage.title)
        t0 = time.time()
        info = stage.work() or {}
        seconds = round(time.time() - t0, 1)
        if not stage.records_itself:
            run.record_stage(stage.name, status="done", seconds=seconds, **info)
        timings[stage.name] = seconds
        run.record_stage("speedrun", status="running", timings=timings, **record)
    total = round(time.time() - started, 1)
    run.record_stage("speedrun", status="done", seconds=total, timings=timings, **record)
    print(f"\nspeedrun done in {total / 60:.1f} min; everything is in {run.path}")
    print(f"report card:  {run.report / 'report.md'}")
    print(f"chat:         picochat chat --run {run.path}")
    print(f"serve:        picochat serve --run {run.path}   (OpenAI API at http://127.0.0.1:8000/v1, "
          "web UI at http://127.0.0.1:8000/)")


MIN_STEP_SCALE = 0.1


def step_scale(preset: Preset) -> float:
    """The fraction of the preset's steps this machine does in the time they were sized for: the
    preset's `sized_for_step_seconds` over a pretraining step timed here, between MIN_STEP_SCALE
    and 1. (A resumed speedrun keeps the scale it started with, recorded in run.json.)"""
    from picochat.train.pretrain import seconds_per_step

    if not preset.sized_for_step_seconds:
        return 1.0
    return round(min(1.0, max(MIN_STEP_SCALE, preset.sized_for_step_seconds / seconds_per_step(preset))), 3)


def scaled(preset: Preset, factor: float) -> Preset:
    """The recipe for a machine `factor` times as fast as the one its steps were sized for.

    Mid-training first gives up web-text rows, down to a quarter of its conversation rows per
    batch (`fewer_text_rows`); then every training stage runs `factor` of its steps (at least 10),
    except that mid-training keeps enough steps to see MIN_MID_CONVERSATION_ROWS conversation rows
    (or all of its own, if it has fewer)."""
    from picochat.train.dpo import dpo_config
    from picochat.train.midtrain import mid_config
    from picochat.train.reward import reward_config
    from picochat.train.rl import rl_config
    from picochat.train.sft import sft_config

    def fewer(cfg: TrainConfig, factor: float = factor) -> TrainConfig:
        steps = max(10, round(cfg.max_steps * min(1.0, factor)))
        return replace(cfg, max_steps=steps, warmup_steps=min(cfg.warmup_steps, max(1, steps // 4)),
                       ckpt_every=min(cfg.ckpt_every, steps) if cfg.ckpt_every else 0)
    mid = mid_config(preset)
    rows, text_fraction = fewer_text_rows(mid.batch_size, preset.mid_text_fraction, factor)
    conversation_rows = mid.max_steps * (rows - round(rows * text_fraction))
    enough = MIN_MID_CONVERSATION_ROWS / conversation_rows
    mid = fewer(replace(mid, batch_size=rows), max(factor * mid.batch_size / rows, enough))
    return replace(preset, train=fewer(preset.train), mid=mid, mid_text_fraction=text_fraction,
                   sft=fewer(sft_config(preset)), reward=fewer(reward_config(preset)),
                   dpo=fewer(dpo_config(preset)), rl=fewer(rl_config(preset)))


MIN_TEXT_PER_CONVERSATION_ROW = 0.25
# Below about this many conversation rows a cpu-tiny model has not yet learned to copy the user's
# numbers into its calculator call: from the 78-step base of a 2-core fp32 machine's speedrun,
# 501 steps x 8 conversation rows (4,008) called the calculator with the user's operands in no
# answer, 980 x 8 (7,840) in 97.5% (from the bases of two other speedruns there, 81% and 7.5%:
# the skill appears abruptly and not at the same step every run; docs/ARCHITECTURE.md, "Mid-training").
# Those rows held 3.9 conversations each; first-fit packing (sft.pack_first_fit) puts 4.4 in a
# row, so 7,000 rows show as many conversations. So a slow machine's speedrun spends the time
# these take, rather than train a chat model with no skills; its other stages still shrink with
# the step scale.
MIN_MID_CONVERSATION_ROWS = 7_000


def fewer_text_rows(batch_size: int, text_fraction: float, factor: float) -> tuple[int, float]:
    """(rows, web-text share) of a mid-training batch that costs `factor` of `batch_size` rows, or
    as near as keeping every conversation row and a quarter as many text rows allows.

    Mid-training's skills come from the conversations it sees, not from its steps: from one
    cpu-tiny base at equal compute, 800 steps of 6 conversation + 2 text rows called the calculator
    with the user's operands in 75% of answers, 800 steps of 4 + 4 in 5%, and 400 steps of 8 + 8 in
    none (docs/ARCHITECTURE.md, "Mid-training"). The text rows only hold document modelling in
    place, so a slower machine drops them first."""
    text = max(1, round(batch_size * text_fraction))
    chat = batch_size - text
    fewest = chat + min(text, max(1, round(chat * MIN_TEXT_PER_CONVERSATION_ROW)))
    rows = min(batch_size, max(fewest, round(batch_size * factor)))
    return rows, (rows - chat) / rows


def plan(run: RunDir, preset: Preset, source: str | None, workers: int, mixture: str | None,
         eval_limit: int | None, mid_mixture: str | None = None, scale: float = 1.0) -> list[Stage]:
    from picochat.data.build import build_corpus
    from picochat.data.corpus import train_run_tokenizer
    from picochat.data.shards import tokenize_corpus
    from picochat.evals.preference import compare_stages, comparison_path
    from picochat.prefs.sources import SOURCES, collect
    from picochat.report import write_report
    from picochat.sample import samples_fresh, store_samples
    from picochat.sft_data.factuality import label_run
    from picochat.train.midtrain import midtrain
    from picochat.train.dpo import dpo
    from picochat.train.pretrain import pretrain
    from picochat.train.reward import reward
    from picochat.train.rl import rl
    from picochat.train.sft import sft

    def data_done() -> bool:
        return stage_done(run, "data")

    def build() -> None:
        kwargs = {"workers": workers} if source is None else {"source": source, "workers": workers}
        build_corpus(run, **kwargs)

    def tokenizer() -> None:
        train_run_tokenizer(run, preset.vocab_size)

    def tokenize() -> dict:
        return {"tokens": tokenize_corpus(run)["tokens"]}

    def train_base() -> None:
        pretrain(run, preset, resume=True)

    def train_mid() -> None:
        midtrain(run, preset, mixture=mid_mixture, resume=True)

    def factuality_labels() -> dict:
        probe = label_run(run, "mid")
        return {k: probe[k] for k in ("questions", "accuracy", "abstained", "kept_answers")}

    def train_sft() -> None:
        sft(run, preset, mixture=mixture, resume=True)

    def comparisons() -> dict:
        return {"collected": collect(run, list(SOURCES), stage="sft", scale=scale, limit=eval_limit)}

    def train_reward() -> None:
        reward(run, preset, resume=True)

    def train_dpo() -> None:
        dpo(run, preset, resume=True)

    def train_rl() -> None:
        rl(run, preset, stage="sft", resume=True)

    def compare() -> dict:
        result = compare_stages(run, "dpo", "sft", per_task=eval_limit or 40)
        return {t: {"win_rate": e["checker"]["win_rate"], "ci95": e["checker"]["ci95"]}
                for t, e in result["temperatures"].items()}

    def samples(stage: str) -> Callable[[], dict]:
        return lambda: {"samples": len(store_samples(run, stage))}

    def evaluate(stage: str) -> Callable[[], dict]:
        return lambda: run_eval_stage(run, stage, eval_limit)

    def model_done(stage: str) -> Callable[[], bool]:
        return lambda: (run.model(stage) / "config.json").exists()

    return [
        Stage("data", "data: build the clean corpus", data_done, build, records_itself=True),
        Stage("tokenizer", f"tokenizer: train a {preset.vocab_size}-token byte-level BPE",
              lambda: (run.tokenizer / "tokenizer.json").exists(), tokenizer, records_itself=True),
        Stage("tokenize", "data: tokenize into train/val shards", lambda: (run.tokens / "index.json").exists(),
              tokenize),
        Stage("base", f"pretrain: {preset.name}", model_done("base"), train_base, records_itself=True),
        Stage("sample", "sample from the base model", lambda: samples_fresh(run, "base"), samples("base")),
        Stage("mid", f"midtrain: {preset.name} on web text mixed with conversations", model_done("mid"),
              train_mid, records_itself=True),
        Stage("factuality", "factuality: probe the mid-trained model, label right or I don't know",
              lambda: (run.path / "factuality" / "probe.json").exists(),
              factuality_labels),
        Stage("sft", f"sft: fine-tune {preset.name} on conversations", model_done("sft"), train_sft,
              records_itself=True),
        Stage("sample_sft", "chat with the fine-tuned model", lambda: samples_fresh(run, "sft"), samples("sft")),
        Stage("eval_base", "eval: the base model on the core suite", lambda: evals_done(run, "base"),
              evaluate("base")),
        Stage("eval_mid", "eval: the mid-trained model (bits per byte, skills, probes)", lambda: evals_done(run, "mid"),
              evaluate("mid")),
        Stage("eval_sft", "eval: the chat model on the chat suite", lambda: evals_done(run, "sft"),
              evaluate("sft")),
        Stage("prefs", "prefs: comparisons from the verifier, the labeling rules and hhh_alignment",
              lambda: stage_done(run, "prefs"), comparisons),
        Stage("reward", "reward: a reward model on the comparisons", model_done("reward"), train_reward,
              records_itself=True),
        Stage("dpo", "dpo: the chat model tuned toward the preferred answers", model_done("dpo"), train_dpo,
              records_itself=True),
        Stage("eval_dpo", "eval: the preference-tuned model on the chat suite", lambda: evals_done(run, "dpo"),
              evaluate("dpo")),
        Stage("compare", "compare: dpo against sft on held-out problems, judged blind",
              lambda: comparison_path(run, "dpo", "sft").exists() and stage_done(run, "compare"), compare),
        Stage("rl", "rl: GRPO on the checkable tasks, from the chat model", model_done("rl"), train_rl,
              records_itself=True),
        Stage("eval_rl", "eval: the RL-tuned model on the chat suite", lambda: evals_done(run, "rl"),
              evaluate("rl")),
        # always rewritten: it is cheap and should show the latest of everything
        Stage("report", "report card", lambda: False, lambda: {"path": str(write_report(run))}),
    ]


def stage_done(run: RunDir, name: str) -> bool:
    return run.read_meta().get("stages", {}).get(name, {}).get("status") == "done"


# --- evals --------------------------------------------------------------------------------------
def evals_done(run: RunDir, stage: str) -> bool:
    """The stage's evals file holds every task of its suite, scored on the current weights (an
    interrupted eval keeps the tasks it finished, so it is not done yet)."""
    from picochat.evals import default_suite, model_fingerprint, suite_tasks

    results = read_json(run.evals(stage))
    if not results or not isinstance(results.get("tasks"), dict):
        return False
    if results.get("model_fingerprint") != model_fingerprint(run.model(stage)):
        return False          # scores of weights retrained since: run_evals starts a new file
    return set(suite_tasks(default_suite(stage))) <= set(results["tasks"])


def run_eval_stage(run: RunDir, stage: str, limit: int | None) -> dict:
    from picochat.evals import default_suite, run_evals

    suite = default_suite(stage)
    results = run_evals(run, stage, tasks=suite, limit=limit)
    agg = results.get("aggregate") or {}
    return {"suite": suite, "tasks": len(results.get("tasks", {})),
            **({agg["name"]: agg.get("value")} if agg.get("name") else {})}


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)
