"""Evaluations: benchmarks and probes of a run's models, written to runs/R/evals/<stage>.json.

    picochat eval --run R [--stage base|sft|...] [--tasks LIST|core|chat|all] [--limit N] [--seed N]

Task families, one file each: bpb.py (bits per byte on held-out text), multiple_choice.py
(BIG-bench tasks scored by log-likelihood), generative.py (reasoning-gym, HumanEval and picochat's own tasks: answers
checked by a checker; code runs in picochat/tools/sandbox.py), probes.py (picochat's own:
dictionary knowledge, the reversal curse, letters vs tokens), heldout.py (language modelling on
held-out documents: continuation, word order); scoring.py turns outcomes into accuracy, a
bootstrap 95% interval, chance and centered accuracy, and the stage's aggregate.

Suites: "core" for base models (aggregate CORE: mean centered accuracy of its multiple-choice
tasks), "chat" for chat stages (aggregate ChatCORE: its multiple-choice and generative tasks),
"mid" for the mid-trained model (bits per byte, the skills and the probes: what mid-training
changed, in a minute), "all". Default limits keep each suite to about a minute for a cpu-tiny model on 2 cores.

The results file is rewritten (atomically) after every task, merged with the tasks already in
it, so evals can be added one at a time and an interrupted eval keeps what it finished. A task
whose stored result has the same settings (model weights, examples, seed, shots) is not run
again; a task that cannot run here (a package or data set missing) is recorded as skipped, with
the reason.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from picochat import bigbench
from picochat.evals import bpb, generative, heldout, multiple_choice, preference, probes
from picochat.evals.scoring import aggregate, summarize
from picochat.evals.subject import Subject, TaskUnavailable
from picochat.rundir import PicochatError, RunDir, atomic_write_json
from picochat.tasks import TASKS as TASK_TYPES
from picochat.tasks.identity import IDENTITY_EVAL_PROMPTS

VERSION = 1            # part of every task's settings: bump when scoring changes, to rerun stored tasks


@dataclass(frozen=True)
class Task:
    name: str
    family: str                 # bpb | multiple_choice | generative | probe
    metric: str                 # accuracy | bpb | pass@1
    limit: int                  # default number of examples
    run: Callable[..., dict]    # (subject, run, limit, seed) -> outcomes, chance, examples, extras
    about: str = ""
    options: dict = field(default_factory=dict)


# The BIG-bench multiple-choice tasks, by name: (subtasks used, what it asks). The data build
# and the SFT mixture decontaminate against the same list (picochat.bigbench).
BIGBENCH = bigbench.EVALUATED
MC_LIMIT = 400


# picochat's own skills are asked 200 times (a few seconds each): at 40 a 95% interval spans about
# 20 points, too wide to say whether a model clears a floor such as "95% of products".
def _registry() -> dict[str, Task]:
    tasks = [Task("bpb", "bpb", "bpb", 128, bpb.bits_per_byte,
                  "bits per byte on the run's validation documents (limit: windows of the context)")]
    for name, (subtasks, about) in BIGBENCH.items():
        tasks.append(Task(name, "multiple_choice", "accuracy", MC_LIMIT,
                          partial(multiple_choice.run_bigbench, task=name, subtasks=subtasks,
                                  all_tasks=tuple(BIGBENCH)), about, {"shots": 3}))
    tasks += [
        Task("dictionary", "probe", "accuracy", 200, probes.dictionary,
             "an entry from the training text: its definition among 4"),
        Task("reversal", "probe", "accuracy", 200, probes.reversal,
             "the same entries backwards: the word for a definition, among 4"),
        Task("spelling", "probe", "accuracy", 200, probes.spelling,
             "spell a single-token word: right spelling among 4"),
        Task("letter_count", "probe", "accuracy", 200, probes.letter_count,
             "how often a letter occurs in a word (0-3, balanced)"),
        Task("continuation", "probe", "accuracy", 200, heldout.continuation,
             "40 held-out words: their own next 12 among 4 spans (HellaSwag-style)"),
        Task("word_order", "probe", "accuracy", 300, heldout.word_order,
             "a held-out sentence or it with two neighbouring words swapped (BLiMP-style)"),
        Task("gsm_symbolic", "generative", "pass@1", 40,
             partial(generative.reasoning_gym, task=TASK_TYPES["gsm_symbolic"]),
             "grade-school math word problems (reasoning-gym's GSM8K templates)"),
        Task("basic_arithmetic", "generative", "pass@1", 40,
             partial(generative.reasoning_gym, task=TASK_TYPES["basic_arithmetic"]),
             "two-term arithmetic, up to 2 digits (reasoning-gym)"),
        Task("humaneval", "generative", "pass@1", 10, generative.humaneval,
             "write a Python function; run against its tests in the sandbox"),
        Task("identity", "skill", "accuracy", len(IDENTITY_EVAL_PROMPTS),
             partial(generative.own_task, task=TASK_TYPES["identity"]),
             f"who it is, asked in {len(IDENTITY_EVAL_PROMPTS)} held-out ways: the answer names picochat"),
        Task("calculator", "skill", "accuracy", 200, partial(generative.own_task, task=TASK_TYPES["arithmetic"]),
             "fresh 3-5 x 3-4 digit products, held-out phrasings: the answer states the product"),
        Task("copying", "skill", "accuracy", 200, partial(generative.own_task, task=TASK_TYPES["copying"]),
             "copy a number, name, quote or looked-up value from the context (held-out phrasings)"),
        Task("unknowable", "skill", "accuracy", 200, partial(generative.own_task, task=TASK_TYPES["unknowable"]),
             "live data, private facts, the future: the answer says I don't know"),
        Task("factuality", "skill", "accuracy", 100, generative.factuality,
             "what held-out dictionary words of the corpus mean; abstentions and the answer-rate curve"),
        Task("hhh_heldout", "skill", "accuracy", 100, preference.hhh_heldout,
             "BIG-bench hhh_alignment, the third never trained on: the better answer more likely"),
    ]
    return {t.name: t for t in tasks}


TASKS = _registry()
PROBES = [n for n, t in TASKS.items() if t.family == "probe"]
MC = list(BIGBENCH)
GENERATIVE = [n for n, t in TASKS.items() if t.family == "generative"]
SKILLS = [n for n, t in TASKS.items() if t.family == "skill"]     # picochat's own tasks: not in ChatCORE
SUITES = {
    "core": ["bpb", *MC, *PROBES],
    "chat": ["bpb", *MC, *GENERATIVE, *SKILLS, *PROBES],
    "mid": ["bpb", *SKILLS, *PROBES],       # a mid-trained model: still a language model? which skills yet?
    "all": list(TASKS),
}


def suite_tasks(suite: str) -> list[str]:
    """The task names of a suite (core, chat or all)."""
    if suite not in SUITES:
        raise PicochatError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    return list(SUITES[suite])


def default_suite(stage: str) -> str:
    return {"base": "core", "mid": "mid"}.get(stage, "chat")


def resolve_tasks(spec: str | None, stage: str) -> list[str]:
    """A suite name or comma-separated task names -> task names (None: the stage's suite)."""
    if spec is None or not spec.strip():
        return suite_tasks(default_suite(stage))
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part in SUITES:
            names += SUITES[part]
        elif part in TASKS:
            names.append(part)
        else:
            raise PicochatError(f"unknown task or suite {part!r}; suites: {', '.join(SUITES)}; tasks: "
                                f"{', '.join(TASKS)}")
    return list(dict.fromkeys(names))


def stage_aggregate(stage: str, tasks: dict[str, dict]) -> dict:
    """CORE (base: the core suite's multiple-choice tasks) or ChatCORE (chat stages: the chat
    suite's multiple-choice and generative tasks), over those present."""
    if stage == "base":
        return aggregate(tasks, "CORE", [n for n in SUITES["core"] if TASKS[n].family == "multiple_choice"])
    return aggregate(tasks, "ChatCORE", [n for n in SUITES["chat"]
                                         if TASKS[n].family in ("multiple_choice", "generative")])


def model_fingerprint(folder: Path) -> str:
    """Changes when the weights or config change (sizes and modification times)."""
    files = sorted(folder.glob("*.safetensors")) + [folder / "config.json"]
    stamp = "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.exists())
    return hashlib.sha1(stamp.encode()).hexdigest()[:16]


# --- running --------------------------------------------------------------------------------------
def task_options(task: Task, shots: int | None, scoring: str | None) -> dict:
    """The task's keyword options with the run's overrides (few-shot count, scoring rule)."""
    options = dict(task.options)
    if shots is not None and "shots" in options:
        options["shots"] = shots
    if scoring is not None and "normalize" in inspect.signature(task.run).parameters:
        options["normalize"] = scoring   # tasks that choose between answers by a scoring rule
    return options


def run_task(task: Task, subject: Subject, run: RunDir, limit: int, seed: int, options: dict) -> dict:
    """Run one task and put its outcomes into the results schema."""
    started = time.perf_counter()
    raw = task.run(subject, run, limit, seed, **options)
    seconds = round(time.perf_counter() - started, 2)
    if task.family == "bpb":
        entry = {"n": raw["n"], "value": round(raw["value"], 4), "ci95": None, "chance": None, "centered": None}
    else:
        entry = summarize(raw["outcomes"], raw["chance"], seed=seed)
        if set(raw["outcomes"]) <= {0.0, 1.0}:     # which problems it got right, to compare stages on
            entry["right"] = "".join("1" if o else "0" for o in raw["outcomes"])
    extras = {k: v for k, v in raw.items() if k not in ("outcomes", "chance", "examples", "value", "n")}
    return {"family": task.family, "metric": task.metric, **entry, "seconds": seconds,
            "examples": raw.get("examples", []), **extras}


def skipped_entry(task: Task, reason: str) -> dict:
    return {"family": task.family, "metric": task.metric, "n": 0, "value": None, "ci95": None,
            "chance": None, "centered": None, "seconds": 0.0, "examples": [], "skipped": reason}


def read_results(path: Path, fingerprint: str) -> dict:
    """The stored results, or a fresh file; results of other weights are dropped."""
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PicochatError(f"{path} is unreadable ({e}); delete it and run the evals again") from e
    if not isinstance(stored, dict) or not isinstance(stored.get("tasks"), dict):
        raise PicochatError(f"{path} is not a picochat evals file; delete it and run the evals again")
    if stored.get("model_fingerprint") != fingerprint:
        print(f"the model changed since {path} was written: starting a new results file")
        return {}
    return stored


def fmt_row(name: str, t: dict) -> str:
    if t.get("skipped"):
        return f"{name:20s} {t['family']:15s} skipped: {t['skipped']}"
    ci = t.get("ci95")
    ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"
    chance = "-" if t.get("chance") is None else f"{t['chance']:.3f}"
    cen = "-" if t.get("centered") is None else f"{t['centered']:+.3f}"
    return (f"{name:20s} {t['family']:15s} {t['metric']:8s} {t['n']:5d} {t['value']:7.3f} {ci_text:16s} "
            f"{chance:>6s} {cen:>8s} {t['seconds']:7.1f}")


HEADER = (f"{'task':20s} {'family':15s} {'metric':8s} {'n':>5s} {'value':>7s} {'95% CI':16s} "
          f"{'chance':>6s} {'centered':>8s} {'seconds':>7s}")


def run_evals(run: RunDir, stage: str = "base", tasks: str | None = None, limit: int | None = None,
              seed: int = 0, shots: int | None = None, scoring: str | None = None, device: str = "auto",
              dtype: str = "auto") -> dict:
    """Evaluate run.model(stage) on a suite or task list; write runs/R/evals/<stage>.json.

    tasks: None (the stage's suite: core for base, chat for later stages), a suite name, or
    comma-separated task names. limit: examples per task instead of each task's default.
    shots: few-shot examples for the multiple-choice tasks (default 3). scoring: how choices are
    compared, mean (default) | sum | pmi (see picochat/evals/multiple_choice.py)."""
    from picochat.hardware import pick_device

    folder = run.require_model(stage)
    if dtype not in ("auto", "fp32", "bf16"):
        raise PicochatError(f"--dtype {dtype} is for decoding (sample, chat, serve); evals score the "
                            "whole model: use auto, fp32 or bf16")
    names = resolve_tasks(tasks, stage)
    if limit is not None and limit < 1:
        raise PicochatError(f"--limit must be at least 1, not {limit}")
    if shots is not None and shots < 0:
        raise PicochatError(f"--shots must be 0 or more, not {shots}")
    if scoring is not None and scoring not in multiple_choice.SCORING:
        raise PicochatError(f"--scoring must be one of {', '.join(multiple_choice.SCORING)}, not {scoring!r}")
    path = run.evals(stage)
    fingerprint = model_fingerprint(folder)
    results = read_results(path, fingerprint)
    stored: dict[str, dict] = results.get("tasks", {})
    subject = Subject.load(folder, chat=stage != "base", dtype=dtype, device=str(pick_device(device)))
    print(f"evaluating {folder} ({'chat template' if subject.chat else 'plain prompts'}, "
          f"{str(subject.dtype).removeprefix('torch.')}) on {len(names)} tasks")
    print(HEADER)
    for name in names:
        task = TASKS[name]
        n = limit or task.limit
        options = task_options(task, shots, scoring)
        settings = {"version": VERSION, "limit": n, "seed": seed, **options}
        old = stored.get(name)
        if old and old.get("settings") == settings and not old.get("skipped"):
            print(fmt_row(name, old) + "  (stored)")
            continue
        try:
            entry = run_task(task, subject, run, n, seed, options)
        except TaskUnavailable as e:
            entry = skipped_entry(task, str(e))
        entry["settings"] = settings
        stored[name] = entry
        print(fmt_row(name, entry), flush=True)
        results = write_results(path, run, stage, folder, fingerprint, stored, subject)
    results = write_results(path, run, stage, folder, fingerprint, stored, subject)
    agg = results["aggregate"]
    value = "-" if agg["value"] is None else f"{agg['value']:+.4f}"
    print(f"{agg['name']} {value} (mean centered accuracy over {len(agg['tasks'])} tasks); "
          f"{results['seconds']:.1f} s of evaluation -> {path}")
    return results


def write_results(path: Path, run: RunDir, stage: str, folder: Path, fingerprint: str,
                  tasks: dict[str, dict], subject: Subject) -> dict:
    ordered = {n: tasks[n] for n in list(TASKS) + sorted(set(tasks) - set(TASKS)) if n in tasks}
    results = {"stage": stage, "model": str(folder), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "seconds": round(sum(float(t.get("seconds") or 0) for t in ordered.values()), 1),
               "tasks": ordered, "aggregate": stage_aggregate(stage, ordered),
               "model_fingerprint": fingerprint, "dtype": str(subject.dtype).removeprefix("torch.")}
    atomic_write_json(path, results)
    return results
