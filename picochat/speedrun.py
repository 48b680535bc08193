"""The whole chain on one preset, each stage skipped when already done, so a killed speedrun
picks up where it stopped (pretraining resumes from its newest checkpoint).

    picochat speedrun --run runs/demo --preset cpu-tiny

data build -> tokenizer train -> data tokenize -> pretrain -> sample -> sft -> chat samples
"""

from __future__ import annotations

import time

from picochat.config import get_preset
from picochat.rundir import RunDir

SAMPLE_PROMPTS = ["The meaning of life is", "In the beginning", "Python is a programming language that"]
CHAT_PROMPTS = ["Who are you?", "How many r's are in strawberry?", "What is the capital of France?"]


def speedrun(run: RunDir, preset_name: str, source: str | None = None, workers: int = 2) -> None:
    from picochat.data.build import build_corpus
    from picochat.data.shards import tokenize_corpus
    from picochat.sample import sample
    from picochat.tokenizer import train_run_tokenizer
    from picochat.train.pretrain import pretrain
    from picochat.train.sft import sft

    preset = get_preset(preset_name)
    stages = run.read_meta().get("stages", {})
    started = time.time()

    if stages.get("data", {}).get("status") != "done":
        banner("data: build the clean corpus")
        kwargs = {"workers": workers} if source is None else {"source": source, "workers": workers}
        build_corpus(run, **kwargs)
    if not (run.tokenizer / "tokenizer.json").exists():
        banner(f"tokenizer: train a {preset.vocab_size}-token byte-level BPE")
        train_run_tokenizer(run, preset.vocab_size)
    if not (run.tokens / "index.json").exists():
        banner("data: tokenize into train/val shards")
        tokenize_corpus(run)
    if not (run.model("base") / "config.json").exists():
        banner(f"pretrain: {preset.name}")
        pretrain(run, preset, resume=True)
    banner("sample from the base model")
    for prompt in SAMPLE_PROMPTS:
        sample(run, "base", prompt, temperature=0.8, top_k=50, top_p=0.95, max_tokens=60, seed=0)
        print()
    if not (run.model("sft") / "config.json").exists():
        banner(f"sft: fine-tune {preset.name} on conversations")
        sft(run, preset, resume=True)
    banner("chat with the fine-tuned model")
    for prompt in CHAT_PROMPTS:
        print(f"> {prompt}")
        sample(run, "sft", prompt, temperature=0.7, top_k=50, top_p=0.95, max_tokens=80, seed=0)
        print()
    run.record_stage("speedrun", status="done", preset=preset.name, seconds=round(time.time() - started, 1))
    print(f"speedrun done in {(time.time() - started) / 60:.1f} min; everything is in {run.path}")


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)
