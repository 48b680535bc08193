"""The factuality recipe's labeled data: the model's own answers where right, "I don't know"
where wrong (picochat.tasks.factuality).

    picochat factuality --run R [--stage mid] [--limit 400]

asks runs/R/<stage> what the dictionary words of its training documents mean (the task's train
split), checks each answer against the entry, and writes

    runs/R/factuality/probe.json           per question: answer, right or not, abstained,
                                           confidence; the answered-accuracy / answer-rate curve
    runs/R/factuality/conversations.jsonl  the labeled conversations, one {"messages"} per line

SFT's default mixture reads the conversations (a "jsonl" source) when the file is there.
"""

from __future__ import annotations

import json
import random
import time

from picochat.chat import render_prompt
from picochat.engine import SamplingParams, load_engine
from picochat.rundir import RunDir, atomic_write_json, atomic_write_text
from picochat.tasks.base import TaskUnavailable
from picochat.tasks.factuality import Factuality, confidence, label, tradeoff
from picochat.tasks.unknowable import abstains

FOLDER = "factuality"


def probe(engine, task: Factuality, split: str, limit: int, seed: int) -> tuple[list, list, list[dict]]:
    """Greedy answers to `limit` of the split's questions: (problems, answers, rows)."""
    problems = [p for p in task.problems(random.Random(seed), limit, split=split)
                if len(render_prompt(engine.tokenizer, p.prompt)) + 16 <= engine.context]
    params = SamplingParams(temperature=0.0, max_tokens=48, logprobs=0)
    answers = []
    for start in range(0, len(problems), 32):
        batch = problems[start:start + 32]
        answers += engine.generate_batch([render_prompt(engine.tokenizer, p.prompt) for p in batch], params)
    rows = [{"question": p.prompt[-1]["content"], "answer": a.text.strip(), "correct": task.check(p, a),
             "abstained": abstains(a.text), "confidence": confidence(a)} for p, a in zip(problems, answers)]
    return problems, answers, rows


def summary(rows: list[dict]) -> dict:
    n = max(1, len(rows))
    return {"questions": len(rows), "accuracy": sum(r["correct"] for r in rows) / n,
            "abstained": sum(r["abstained"] for r in rows) / n, "curve": tradeoff(rows)}


def label_run(run: RunDir, stage: str = "mid", limit: int = 400, seed: int = 0) -> dict:
    """Probe the stage's model and write the labeled conversations; returns the probe's summary."""
    started = time.time()
    folder = run.path / FOLDER
    try:
        task = Factuality.from_run(run)
    except TaskUnavailable as e:            # a corpus without a dictionary: nothing to probe, nothing to label
        result = {"stage": stage, "skipped": str(e), "questions": 0, "accuracy": None, "abstained": None,
                  "kept_answers": 0}
        atomic_write_text(folder / "conversations.jsonl", "")
        atomic_write_json(folder / "probe.json", result)
        print(f"factuality: skipped ({e})")
        return result
    engine = load_engine(run.require_model(stage), dtype="fp32")
    problems, answers, rows = probe(engine, task, "train", limit, seed)
    rng = random.Random(seed)
    labeled = [label(p, a, rng) for p, a in zip(problems, answers)]
    atomic_write_text(folder / "conversations.jsonl",
                      "".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in labeled))
    result = {"stage": stage, **summary(rows), "kept_answers": sum(r["correct"] for r in rows),
              "seconds": round(time.time() - started, 1), "rows": rows}
    atomic_write_json(folder / "probe.json", result)
    print(f"factuality: {stage} model right on {result['kept_answers']} of {len(rows)} dictionary questions "
          f"(abstained on {100 * result['abstained']:.0f}%); labeled {len(labeled)} conversations -> "
          f"{folder / 'conversations.jsonl'}")
    return result
