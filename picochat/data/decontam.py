"""Decontamination: find the evaluation sets' word n-grams in training documents.

The evaluation texts come from BIG-bench's task.json files, read straight from the `bigbench`
sdist in the cache (see shared/OFFLINE_DATA.md), or from a file you name: .txt (one text per
line), .jsonl / .json (every string value). Texts are lower-cased and split into words; every
`n`-word window (13 by default, as in GPT-3's decontamination) goes into a set, and a training
document sharing any window with it is dropped. Evaluation items shorter than `n` words are
too short to match this way and are counted as skipped.
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
from pathlib import Path
from typing import Container, Iterable, Iterator

from picochat.paths import SOURCES_CACHE
from picochat.rundir import PicochatError

WORD = re.compile(r"\w+")
# the BIG-bench tasks picochat evaluates on (shared/OFFLINE_DATA.md): decontaminate against these
BIGBENCH_TASKS = ("social_iqa", "strategyqa", "elementary_math_qa", "arithmetic", "misconceptions",
                  "general_knowledge", "hhh_alignment", "logical_deduction", "date_understanding",
                  "causal_judgment", "sports_understanding", "navigate", "snarks", "hyperbaton")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterator[str]:
    w = words(text)
    for i in range(len(w) - n + 1):
        yield " ".join(w[i:i + n])


def doc_ngram_hashes(text: str, n: int) -> Iterator[str]:
    """The document's n-grams, as the strings stored in the set (name kept for the block)."""
    return ngrams(text, n)


BIGBENCH_SPEC = "bigbench==1.0.0"
BIGBENCH_HINT = f"pip download --no-deps {BIGBENCH_SPEC} -d {SOURCES_CACHE}"


def bigbench_tarball() -> Path | None:
    found = sorted(SOURCES_CACHE.glob("bigbench-*.tar.gz"))
    return found[-1] if found else None


def bigbench_task_files(path: Path, wanted: Container[str]) -> Iterator[tuple[str, str, dict]]:
    """(task, folder, task.json) for every task.json of the wanted tasks in the BIG-bench sdist,
    subtasks included (folder "task" or "task/subtask"), in one pass over the tarball."""
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                parts = m.name.split("/")
                # <sdist>/bigbench/benchmark_tasks/<task>/[<subtask>/]task.json
                if not (m.isfile() and parts[-1] == "task.json" and "benchmark_tasks" in parts):
                    continue
                at = parts.index("benchmark_tasks")
                if parts[at + 1] in wanted:
                    yield parts[at + 1], "/".join(parts[at + 1:-1]), json.loads(tar.extractfile(m).read())
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as e:
        raise PicochatError(f"{path} is unreadable or truncated ({e}); delete it and fetch it "
                            f"again with: {BIGBENCH_HINT}") from e


def _strings(obj) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("target_scores",):
                yield from (s for s in v if isinstance(s, str))
            elif k not in ("canary", "keywords", "metrics", "preferred_score", "name", "description"):
                yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def bigbench_texts(tasks: Iterable[str] = BIGBENCH_TASKS) -> Iterator[str]:
    path = bigbench_tarball()
    if path is None:
        return
    for _, _, data in bigbench_task_files(path, set(tasks)):
        yield from _strings(data.get("examples", []))


def file_texts(path: Path) -> Iterator[str]:
    if not path.exists():
        raise PicochatError(f"decontamination file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        if ".jsonl" in path.suffixes:
            for line in f:
                if line.strip():
                    yield from _strings(json.loads(line))
        elif ".json" in path.suffixes:
            yield from _strings(json.load(f))
        else:
            yield from (line for line in f if line.strip())


def eval_texts(spec: str) -> tuple[str, Iterator[str]]:
    """("what", texts) for a spec: "auto" (BIG-bench if cached, else nothing), "bigbench",
    "none", or a file path."""
    if spec == "none":
        return "none", iter(())
    if spec in ("auto", "bigbench"):
        if bigbench_tarball() is None:
            if spec == "bigbench":
                raise PicochatError(f"BIG-bench is not in the cache; install it with: pip download --no-deps "
                                    f"bigbench==1.0.0 -d {SOURCES_CACHE}")
            return "none (BIG-bench sdist not cached)", iter(())
        return f"BIG-bench tasks: {', '.join(BIGBENCH_TASKS)}", bigbench_texts()
    return str(spec), file_texts(Path(spec).expanduser())


def build_ngram_file(spec: str, out: Path, n: int = 13) -> dict:
    """Collect the n-grams of the evaluation texts into `out` (gzip, one per line)."""
    what, texts = eval_texts(spec)
    grams: set[str] = set()
    items = short = 0
    for t in texts:
        items += 1
        w = words(t)
        if len(w) < n:
            short += 1
            continue
        grams.update(" ".join(w[i:i + n]) for i in range(len(w) - n + 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for g in sorted(grams):
            f.write(g + "\n")
    tmp.replace(out)
    return {"eval_sets": what, "items": items, "items_shorter_than_n": short, "ngrams": len(grams), "n": n}


_LOADED: dict = {}


def load_hashes(path: str) -> set[str]:
    """The n-gram set of a file, cached per process (forked workers inherit the parent's)."""
    p = Path(path)
    key = (str(p), p.stat().st_mtime_ns)
    if key not in _LOADED:
        with gzip.open(p, "rt", encoding="utf-8") as f:
            _LOADED[key] = set(f.read().splitlines())
    return _LOADED[key]
