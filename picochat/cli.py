"""picochat: build your own ChatGPT-style assistant, end to end.

    picochat presets
    picochat data sources | build | report | tokenize   --run R [--source S] [--langs en] [--workers N]
    picochat tokenizer train --run R [--vocab-size N]
    picochat tokenizer show --run R "some text"
    picochat pretrain --run R --preset cpu-tiny [--max-steps N] [--resume]
    picochat midtrain --run R [--preset P] [--mixture FILE] [--resume]
    picochat factuality --run R [--stage mid] [--limit N]   (probe; "I don't know" labels for SFT)
    picochat sft --run R [--preset P] [--mixture FILE] [--resume]
    picochat prefs --run R [--collect verifier,rules,hhh] [--judge URL --judge-model M]   (comparisons)
    picochat label --run R [--stage sft] [--port N] [--labeler NAME]   (the labeling page)
    picochat reward --run R [--resume]                 (reward model on the comparisons: runs/R/reward)
    picochat dpo --run R [--beta B] [--loss dpo|ipo] [--resume]   (preference tuning: runs/R/dpo)
    picochat compare --run R [--new dpo] [--old sft]   (blind win rates on held-out problems)
    picochat rl --run R [--stage sft] [--tasks unknowable,identity,arithmetic,copying] [--group 8] [--resume]   (GRPO: runs/R/rl)
    picochat speedrun --run R --preset cpu-tiny      (all of the above, resumable)
    picochat sample --run R [--stage base] --prompt TEXT [SAMPLING] [--best-of N] [--dtype D] [--device D]
    picochat chat --run R [--stage sft] [--system TEXT] [SAMPLING] [--dtype D] [--device D]
    picochat serve --run R [--stage sft] [--host H] [--port N] [--api-key KEY] [--max-concurrency N]
                   [--dtype D] [--device D]
    picochat eval --run R [--stage base|sft] [--tasks LIST|core|chat|all] [--limit N] [--shots K]
                  [--scoring mean|sum|pmi] [--dtype D] [--device D]
        SAMPLING: [--temperature T] [--top-k K] [--top-p P] [--max-tokens N] [--seed N]
        --dtype auto|fp32|bf16|int8, --device auto|cpu|cuda|cuda:N|mps (auto: as training picks)
    picochat report --run R
    picochat export --run R [--stage S] --format gguf|hf|twofiles --out DIR [--dtype f32|f16|bf16|q8_0]
    picochat import PATH --run R [--stage S]          (a Llama-family HF directory or GGUF file)

Each subcommand parses its flags and calls one function; the work lives in the modules.
Under torchrun, `torchrun --standalone --nproc_per_node=N -m picochat.cli -- pretrain ...` trains
with DDP.
"""

from __future__ import annotations

import argparse
import sys

from picochat.rundir import PicochatError, RunDir


# --- subcommands ------------------------------------------------------------------------------
def cmd_presets(args) -> None:
    from picochat.config import PRESETS

    for p in PRESETS.values():
        m, t = p.model, p.train
        print(f"{p.name:10s} {p.description}")
        print(f"{'':10s} model {m.n_layers}L x {m.dim}d, {m.n_heads} heads ({m.n_kv_heads} kv), "
              f"context {m.max_seq_len}, vocab {p.vocab_size}; train {t.max_steps} steps x "
              f"{t.batch_size * t.grad_accum} x {t.seq_len} tokens, lr {t.lr}, {t.schedule}")


def cmd_data_sources(args) -> None:
    from picochat.data.sources import all_sources

    for src in all_sources():
        state = "installed" if src.available() else "missing"
        print(f"{src.name:16s} {state:9s} install: {src.install_hint}")
    print("also: local:PATH (.html .htm .txt .md .eml .jsonl .parquet, optionally .gz), "
          "warc:PATH (WARC/WET), hf:NAME (Hugging Face dataset, FineWeb schema, or a local Parquet path)")


def cmd_data_build(args) -> None:
    from picochat.data.build import BuildConfig, build_corpus
    from picochat.data.report import step_table

    run = RunDir(args.run)
    cfg = BuildConfig(langs=[x for x in args.langs.split(",") if x and x != "all"], workers=args.workers,
                      tasks=args.tasks, extractor=args.extractor, blocklists=args.blocklist or [],
                      decontaminate=args.decontaminate, limit=args.limit)
    stats = build_corpus(run, args.source, cfg)
    print(step_table(stats))
    print(f"{stats['documents_out']:,} documents ({stats['bytes_out'] / 1e6:.1f} MB) of "
          f"{stats['documents_in']:,} ({stats['bytes_in'] / 1e6:.1f} MB) from {stats['source']} in "
          f"{stats['seconds']} s ({stats['mb_per_s']} MB/s) -> {run.clean}; report: {run.data / 'report.md'}")


def cmd_data_report(args) -> None:
    from picochat.data.report import load_stats, step_table, write_report

    run = RunDir(args.run, create=False)
    path = write_report(run)
    print(step_table(load_stats(run)))
    print(f"report: {path}")


def cmd_data_tokenize(args) -> None:
    from picochat.data.shards import tokenize_corpus

    run = RunDir(args.run, create=False)
    index = tokenize_corpus(run)
    print(f"{index['tokens']['train']:,} train / {index['tokens']['val']:,} val tokens -> {run.tokens}")


def cmd_tokenizer_train(args) -> None:
    from picochat.data.corpus import train_run_tokenizer

    run = RunDir(args.run, create=False)
    tokenizer, seconds = train_run_tokenizer(run, args.vocab_size, args.max_chars)
    print(f"trained a {tokenizer.vocab_size}-token tokenizer in {seconds:.1f} s -> {run.tokenizer}")


def cmd_tokenizer_show(args) -> None:
    from picochat.tokenizer_show import show

    show(RunDir(args.run, create=False), args.text)


def training_settings(config, args) -> dict:
    """TrainConfig overrides from the flags `add_training_flags` defines."""
    from picochat.config import parse_settings

    settings = parse_settings(config, args.set)
    settings.update({k: v for k, v in (("dtype", args.dtype), ("device", args.device)) if v})
    if args.compile:
        settings["compile"] = True
    return settings


def cmd_pretrain(args) -> None:
    from picochat.config import get_preset
    from picochat.train.pretrain import pretrain

    preset = get_preset(args.preset)
    run = RunDir(args.run, create=False)
    pretrain(run, preset, max_steps=args.max_steps, resume=args.resume,
             **training_settings(preset.train, args))


def base_preset(run: RunDir, name: str | None):
    """The named preset, or by default the one the base model was trained with."""
    from picochat.config import get_preset

    return get_preset(name or run.read_meta().get("stages", {}).get("base", {}).get("preset") or "cpu-tiny")


def cmd_midtrain(args) -> None:
    from picochat.train.midtrain import mid_config, midtrain

    run = RunDir(args.run, create=False)
    preset = base_preset(run, args.preset)
    midtrain(run, preset, mixture=args.mixture, max_steps=args.max_steps, resume=args.resume,
             **training_settings(mid_config(preset), args))


def cmd_factuality(args) -> None:
    from picochat.sft_data.factuality import label_run

    label_run(RunDir(args.run, create=False), stage=args.stage, limit=args.limit, seed=args.seed)


def cmd_sft(args) -> None:
    from picochat.train.sft import sft, sft_config

    run = RunDir(args.run, create=False)
    preset = base_preset(run, args.preset)
    sft(run, preset, mixture=args.mixture, max_steps=args.max_steps, resume=args.resume,
        pack=not args.no_pack, **training_settings(sft_config(preset), args))


def cmd_prefs(args) -> None:
    from picochat.prefs.sources import collect, judge_pairs
    from picochat.prefs.store import Store, summary

    run = RunDir(args.run, create=False)
    if args.collect:
        collect(run, [s for s in args.collect.split(",") if s], stage=args.stage, seed=args.seed)
    if args.judge:
        judge_pairs(Store(run.prefs), args.judge, args.judge_model, limit=args.limit, api_key=args.api_key)
    store = Store(run.prefs)
    contents = store.read()
    print(f"{store.path}: {len(contents.pairs):,} pairs, {len(contents.labels):,} labels"
          + (f", {contents.skipped_lines} unreadable line(s) skipped" if contents.skipped_lines else ""))
    print(f"{'source':14s} {'pairs':>6s} {'a':>5s} {'b':>5s} {'tie':>5s} {'bad':>5s} {'train':>6s} {'heldout':>7s} "
          f"{'written':>7s}  agreement   labelers")
    for source, e in sorted(summary(contents).items()):
        if "up" in e:
            print(f"{source:14s} {e['pairs']:6d}   pairs from {e['up']} up and {e['down']} down ratings")
            continue
        if "labels" not in e:
            print(f"{source:14s} {e['pairs']:6d}   waiting for a label (picochat label)")
            continue
        n = e["labels"]
        agree = e["agreement"]
        agreed = f"{agree['agreed']}/{agree['pairs_compared']}" if agree["pairs_compared"] else "-"
        print(f"{source:14s} {e['pairs']:6d} {n['a']:5d} {n['b']:5d} {n['tie']:5d} {n['both_bad']:5d} "
              f"{e['train']:6d} {e['heldout']:7d} {e['written']:7d}  {agreed:10s} {', '.join(e['labelers'])[:40]}")


def cmd_label(args) -> None:
    from picochat.prefs.page import serve_label_page

    serve_label_page(RunDir(args.run, create=False), args.stage, host=args.host, port=args.port,
                     labeler=args.labeler, dtype=args.dtype, device=inference_device(args.device))


def cmd_reward(args) -> None:
    from picochat.train.reward import reward, reward_config

    run = RunDir(args.run, create=False)
    preset = base_preset(run, args.preset)
    reward(run, preset, max_steps=args.max_steps, resume=args.resume, **training_settings(reward_config(preset), args))


def cmd_dpo(args) -> None:
    from picochat.train.dpo import dpo, dpo_config

    run = RunDir(args.run, create=False)
    preset = base_preset(run, args.preset)
    dpo(run, preset, beta=args.beta, loss=args.loss, max_steps=args.max_steps, resume=args.resume,
        **training_settings(dpo_config(preset), args))


def cmd_rl(args) -> None:
    from picochat.train.rl import Rollouts, rl, rl_config

    run = RunDir(args.run, create=False)
    preset = base_preset(run, args.preset)
    rollouts = Rollouts(group=args.group, max_tokens=args.max_tokens, temperature=args.temperature, kl=args.kl,
                        loss_norm=args.loss_norm, advantage=args.advantage)
    rl(run, preset, stage=args.stage, tasks=args.tasks, rollouts=rollouts, max_steps=args.max_steps,
       resume=args.resume, **training_settings(rl_config(preset), args))


def cmd_compare(args) -> None:
    from picochat.evals.preference import compare_stages, comparison_path

    run = RunDir(args.run, create=False)
    compare_stages(run, new=args.new, old=args.old, per_task=args.per_task)
    print(f"-> {comparison_path(run, args.new, args.old)}")


def cmd_speedrun(args) -> None:
    from picochat.speedrun import speedrun

    speedrun(RunDir(args.run), args.preset, source=args.source, workers=args.workers)


def cmd_sample(args) -> None:
    from picochat.sample import sample

    sample(RunDir(args.run, create=False), args.stage, args.prompt, dtype=args.dtype,
           device=inference_device(args.device), best_of=args.best_of, **sampling_settings(args))


def cmd_serve(args) -> None:
    from picochat.serve.app import serve

    serve(RunDir(args.run, create=False), args.stage, host=args.host, port=args.port, dtype=args.dtype,
          device=inference_device(args.device), api_key=args.api_key, max_concurrency=args.max_concurrency,
          max_queue=args.max_queue, max_body=args.max_body)


def cmd_chat(args) -> None:
    from picochat.chat_cli import chat

    chat(RunDir(args.run, create=False), args.stage, system=args.system, dtype=args.dtype,
         device=inference_device(args.device), **sampling_settings(args))


def cmd_eval(args) -> None:
    from picochat.evals import run_evals

    run_evals(RunDir(args.run, create=False), args.stage, tasks=args.tasks, limit=args.limit, seed=args.seed,
              shots=args.shots, scoring=args.scoring, dtype=args.dtype, device=inference_device(args.device))


def cmd_report(args) -> None:
    from picochat.report import write_report

    print(f"report: {write_report(RunDir(args.run, create=False), price_per_hour=args.price_per_hour)}")


def cmd_export(args) -> None:
    from picochat.export import export_model

    export_model(RunDir(args.run, create=False), args.stage, args.format, args.out, dtype=args.dtype)


def cmd_import(args) -> None:
    from picochat.export.importer import import_model

    import_model(args.path, args.run, args.stage)


# --- generation flags (sample, chat, serve, eval) ---------------------------------------------
class DataclassDefault:
    """A flag's default that is a field of a dataclass (SamplingParams, ServeConfig), looked up
    when its command runs or its --help prints: those modules import torch and FastAPI, which
    every other command (`picochat presets`) should not wait for. `main` swaps in the value."""

    def __init__(self, module: str, owner: str, field: str):
        self.module, self.owner, self.field = module, owner, field

    def value(self):
        import importlib

        return getattr(getattr(importlib.import_module(self.module), self.owner), self.field)

    def __str__(self) -> str:   # what "%(default)s" shows in --help
        return str(self.value())


def sampling_default(field: str) -> DataclassDefault:
    return DataclassDefault("picochat.engine", "SamplingParams", field)


def serve_default(field: str) -> DataclassDefault:
    return DataclassDefault("picochat.serve.app", "ServeConfig", field)


SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "max_tokens", "seed")


def add_generation_flags(p: argparse.ArgumentParser, sampling: bool) -> None:
    """The flags of every command that runs a model: sample, chat, serve and eval. `sampling`
    adds the SamplingParams flags (the server takes those per request, evals fix their own)."""
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                   help="weights for decoding (auto: bf16 where the hardware has it, else fp32; int8: "
                        "weight-only, fastest on CPU; evals take auto, fp32 or bf16) (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (as training: cuda, else mps, else cpu) | cpu | "
                                                    "cuda | cuda:N | mps (default: %(default)s)")
    if not sampling:
        return
    p.add_argument("--temperature", type=float, default=sampling_default("temperature"),
                   help="0: greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=sampling_default("top_k"), help="0: off (default: %(default)s)")
    p.add_argument("--top-p", type=float, default=sampling_default("top_p"), help="1: off (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=sampling_default("max_tokens"),
                   help="longest output (default: %(default)s)")
    p.add_argument("--seed", type=int, default=sampling_default("seed"),
                   help="the same output for the same seed (default: %(default)s)")


def sampling_settings(args) -> dict:
    """SamplingParams keywords from the flags `add_generation_flags` defines."""
    return {name: getattr(args, name) for name in SAMPLING_FLAGS}


def inference_device(requested: str) -> str:
    """--device resolved as training resolves it (picochat.hardware.pick_device), and checked
    here, so a device this machine lacks is one clear error instead of a torch traceback."""
    import torch

    from picochat.hardware import pick_device

    try:
        device = pick_device(requested)
    except RuntimeError as e:
        raise PicochatError(f"--device {requested!r} is not a device ({e}); use auto, cpu, cuda, cuda:N or mps") from e
    present = {"cpu": 1, "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
               "mps": int(torch.backends.mps.is_available())}.get(device.type, 0)
    if (device.index or 0) >= present:
        raise PicochatError(f"--device {requested}: this machine has no such device (picochat runs on cpu, "
                            f"cuda or mps); use auto or cpu")
    return str(device)


def resolve_defaults(args: argparse.Namespace) -> None:
    for name, value in vars(args).items():
        if isinstance(value, DataclassDefault):
            setattr(args, name, value.value())


# --- argument parsing -------------------------------------------------------------------------
def add_training_flags(p: argparse.ArgumentParser) -> None:
    """Flags of every stage that runs on the trainer (see `training_settings`)."""
    p.add_argument("--max-steps", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", help="auto | cpu | cuda | mps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training setting, e.g. --set batch_size=8 --set lr=5e-4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picochat", description="Build your own ChatGPT-style assistant.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_run(p):
        p.add_argument("--run", required=True, help="run directory (e.g. runs/demo)")
        return p

    sub.add_parser("presets", help="list the presets").set_defaults(func=cmd_presets)

    data = sub.add_parser("data", help="documents -> clean corpus -> token shards")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("sources", help="list sources and how to install them").set_defaults(func=cmd_data_sources)
    p = with_run(data_sub.add_parser("build", help="clean a source into documents (URL filter, extraction, "
                                                   "language, quality, PII, dedup, decontamination)"))
    p.add_argument("--source", default="offline-web",
                   help="offline-web (default) | one of its parts | local:PATH | warc:PATH | hf:NAME")
    p.add_argument("--langs", default="en", help="comma-separated language codes to keep, or 'all'")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes")
    p.add_argument("--tasks", type=int, default=0, help="shards of work (default 2 x workers); fixed per build")
    p.add_argument("--extractor", default="resiliparse", choices=["resiliparse", "trafilatura"])
    p.add_argument("--blocklist", action="append", help="extra URL blocklist file (repeatable)")
    p.add_argument("--decontaminate", default="auto",
                   help="auto (BIG-bench if cached) | bigbench | none | FILE of evaluation texts")
    p.add_argument("--limit", type=int, default=-1, help="at most N documents per task (quick looks)")
    p.set_defaults(func=cmd_data_build)
    with_run(data_sub.add_parser("report", help="what each cleaning step kept and removed, with examples")
             ).set_defaults(func=cmd_data_report)
    with_run(data_sub.add_parser("tokenize", help="clean documents -> train/val token shards")
             ).set_defaults(func=cmd_data_tokenize)

    tok = sub.add_parser("tokenizer", help="train or inspect the tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True)
    p = with_run(tok_sub.add_parser("train", help="train byte-level BPE on the run's train documents"))
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--max-chars", type=int, default=2_000_000_000, help="training text budget")
    p.set_defaults(func=cmd_tokenizer_train)
    p = with_run(tok_sub.add_parser("show", help="show how text becomes tokens"))
    p.add_argument("text", nargs="?", default="Hello world! How does text become tokens?")
    p.set_defaults(func=cmd_tokenizer_show)

    p = with_run(sub.add_parser("pretrain", help="train the base model by next-token prediction"))
    p.add_argument("--preset", default="cpu-tiny")
    add_training_flags(p)
    p.set_defaults(func=cmd_pretrain)

    p = with_run(sub.add_parser("midtrain", help="continue the base model on web text mixed with "
                                "conversations: copying, tool calls, the chat format (runs/R/mid)"))
    p.add_argument("--preset", help="recipe to use (default: the preset the base model was trained with)")
    p.add_argument("--mixture", help="mixture file, or a name in mixtures/ (default: mid)")
    add_training_flags(p)
    p.set_defaults(func=cmd_midtrain)

    p = with_run(sub.add_parser("factuality", help="ask a model what its corpus's words mean; label its "
                                "answers right or \"I don't know\" for SFT (runs/R/factuality)"))
    p.add_argument("--stage", default="mid")
    p.add_argument("--limit", type=int, default=400, help="questions to ask")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_factuality)

    p = with_run(sub.add_parser("sft", help="fine-tune the mid-trained (or base) model on conversations "
                                "(runs/R/sft)"))
    p.add_argument("--preset", help="recipe to use (default: the preset the base model was trained with)")
    p.add_argument("--mixture", help="mixture file, or a name in mixtures/ (default: default)")
    p.add_argument("--no-pack", action="store_true", help="one conversation per row (default: pack "
                   "whole conversations into each row)")
    add_training_flags(p)
    p.set_defaults(func=cmd_sft)

    p = with_run(sub.add_parser("prefs", help="the comparisons collected (runs/R/prefs), per source; "
                                "collect automatic ones, or have a judge label them"))
    p.add_argument("--collect", help="comma-separated automatic sources: verifier, rules, hhh")
    p.add_argument("--stage", default="sft", help="the model whose answers the verifier compares")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", metavar="URL", help="an OpenAI-compatible endpoint (e.g. http://127.0.0.1:8080/v1) "
                   "that labels the pairs it has not labeled")
    p.add_argument("--judge-model", default="judge", help="the model name to ask for (default: %(default)s)")
    p.add_argument("--api-key", help="the judge's API key, if it needs one")
    p.add_argument("--limit", type=int, help="at most N pairs for the judge")
    p.set_defaults(func=cmd_prefs)

    p = with_run(sub.add_parser("label", help="the labeling page: compare two answers in the browser"))
    p.add_argument("--stage", default="sft", help="the model whose answers are compared")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--labeler", help="your name on each label (the page asks when not given)")
    add_generation_flags(p, sampling=False)
    p.set_defaults(func=cmd_label)

    p = with_run(sub.add_parser("reward", help="train a reward model on the comparisons (runs/R/reward)"))
    p.add_argument("--preset", help="recipe to use (default: the preset the base model was trained with)")
    add_training_flags(p)
    p.set_defaults(func=cmd_reward)

    p = with_run(sub.add_parser("dpo", help="tune the chat model toward the preferred answers (runs/R/dpo)"))
    p.add_argument("--preset", help="recipe to use (default: the preset the base model was trained with)")
    p.add_argument("--beta", type=float, default=0.1, help="how far from the SFT model it may move "
                   "(smaller: further) (default: %(default)s)")
    p.add_argument("--loss", default="dpo", choices=["dpo", "ipo", "rpo"],
                   help="dpo; ipo (a fixed target margin); rpo (dpo + the chosen answers' likelihood) "
                        "(default: %(default)s)")
    add_training_flags(p)
    p.set_defaults(func=cmd_dpo)

    p = with_run(sub.add_parser("rl", help="reinforce the answers a checker accepts: GRPO on verifiable "
                                "tasks (runs/R/rl)"))
    p.add_argument("--preset", help="recipe to use (default: the preset the base model was trained with)")
    p.add_argument("--stage", default="sft", help="the model to start from (default: %(default)s)")
    p.add_argument("--tasks", default="unknowable,identity,arithmetic,copying",
                   help="comma-separated picochat tasks with a checker and a held-out split (default: %(default)s)")
    p.add_argument("--group", type=int, default=8, help="answers sampled per problem (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per answer (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: %(default)s)")
    p.add_argument("--kl", type=float, default=0.1, help="KL penalty toward the starting model; 0: none "
                   "(default: %(default)s)")
    p.add_argument("--loss-norm", default="token", choices=["sequence", "token", "constant"],
                   help="how answer tokens are averaged: per answer (GRPO), per token (DAPO), or by a constant "
                        "(Dr. GRPO) (default: %(default)s)")
    p.add_argument("--advantage", default="group", choices=["group", "centered", "filter"],
                   help="reward minus the group mean, divided by its std (group) or not (centered); filter: "
                        "fine-tune on the accepted answers only (expert iteration) (default: %(default)s)")
    add_training_flags(p)
    p.set_defaults(func=cmd_rl)

    p = with_run(sub.add_parser("compare", help="two stages answer the same held-out problems; win rates "
                                "judged by the task checkers and the reward model"))
    p.add_argument("--new", default="dpo")
    p.add_argument("--old", default="sft")
    p.add_argument("--per-task", type=int, default=40, help="held-out problems per task (default: %(default)s)")
    p.set_defaults(func=cmd_compare)

    p = with_run(sub.add_parser("speedrun", help="the whole chain, skipping stages already done"))
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--source", help="corpus source (default: the data build default)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_speedrun)

    p = with_run(sub.add_parser("sample", help="generate text from a trained model"))
    p.add_argument("--stage", default="base")
    p.add_argument("--prompt", default="")
    p.add_argument("--best-of", type=int, default=1, metavar="N",
                   help="chat stages: sample N answers, print the one the reward model scores highest")
    add_generation_flags(p, sampling=True)
    p.set_defaults(func=cmd_sample)

    p = with_run(sub.add_parser("chat", help="talk to a chat model (streaming, tools, /help)"))
    p.add_argument("--stage", default="sft")
    p.add_argument("--system", help="system prompt")
    add_generation_flags(p, sampling=True)
    p.set_defaults(func=cmd_chat)

    p = with_run(sub.add_parser("serve", help="OpenAI-compatible API (/v1) and web chat UI (/)"))
    p.add_argument("--stage", default="sft")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=serve_default("api_key"),
                   help="require 'Authorization: Bearer KEY' on /v1 (default: open)")
    p.add_argument("--max-concurrency", type=int, default=serve_default("max_concurrency"),
                   help="requests generated together (batch rows) (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=serve_default("max_queue"),
                   help="requests waiting for a row; beyond: 429 (default: %(default)s)")
    p.add_argument("--max-body", type=int, default=serve_default("max_body"),
                   help="largest request body in bytes, 413 beyond (default: %(default)s)")
    add_generation_flags(p, sampling=False)
    p.set_defaults(func=cmd_serve)

    p = with_run(sub.add_parser("eval", help="benchmarks and probes; results in runs/R/evals/"))
    p.add_argument("--stage", default="base")
    p.add_argument("--tasks", help="comma-separated task names, or a suite: core | chat | all "
                   "(default: core for base, chat for later stages)")
    p.add_argument("--limit", type=int, help="N examples per task instead of each task's default")
    p.add_argument("--shots", type=int, help="few-shot examples for multiple-choice tasks (default 3)")
    p.add_argument("--scoring", choices=["mean", "sum", "pmi"],
                   help="how choices are compared: mean log-prob per token (default), sum, or pmi")
    p.add_argument("--seed", type=int, default=0)
    add_generation_flags(p, sampling=False)
    p.set_defaults(func=cmd_eval)

    p = with_run(sub.add_parser("report", help="the report card: runs/R/report/report.md with plots"))
    p.add_argument("--price-per-hour", type=float, help="dollars per hour of this machine, for the cost "
                   "column (default: on-demand cloud price of the same CPUs or GPUs)")
    p.set_defaults(func=cmd_report)

    p = with_run(sub.add_parser("export", help="write a model as GGUF, a Hugging Face directory, or model.gguf + run.py"))
    p.add_argument("--stage", default="sft")
    p.add_argument("--format", required=True, choices=["gguf", "hf", "twofiles"])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16", "q8_0"], help="GGUF tensor type")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="bring a Llama-family model (HF directory or GGUF file) into a run")
    p.add_argument("path")
    p.add_argument("--run", required=True)
    p.add_argument("--stage", default="base", help="where it lands: runs/R/<stage>/")
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        resolve_defaults(args)
        args.func(args)
    except PicochatError as e:
        print(f"picochat: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npicochat: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
